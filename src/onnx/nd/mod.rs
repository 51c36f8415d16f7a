//! Activations of any rank (sequence models: ViT's tokens, attention's heads), whose
//! batch axis may sit anywhere or be merged with other axes, as exporters write
//! `nn.MultiheadAttention`.
//!
//! An [`Nd`] describes the ONNX tensor as *atoms*: each ONNX axis is a product of atoms,
//! one of which (somewhere) is the batch. Memory always holds the batch outermost and each
//! image as one block, row-major over the non-batch atoms in `phys` order. Transposes,
//! squeezes and most reshapes only regroup or reorder atoms (no layer); an operator that
//! needs a given memory order (a matrix product, a softmax, a normalisation over an axis)
//! gets it from one `Strided` copy. A value whose atoms come back to `[N, C, H, W]` or
//! `[N, F]` order becomes an ordinary [`Shape`] again.

use std::collections::HashMap;

mod einsum;
mod layout;
mod ops;

use super::import::{bad, Shape};
use super::proto::NodeProto;
use super::tensor::{batch_factor, batch_times, symbolic, Constant};
use crate::error::Result;

/// Atoms, their logical grouping into ONNX axes, and their memory order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Nd {
    /// Size of each atom, by id (the batch atom's is 1).
    size: Vec<usize>,
    /// Atom ids in logical (row-major) order.
    order: Vec<usize>,
    /// Atoms per ONNX axis, in order.
    groups: Vec<usize>,
    /// The batch atom.
    batch: usize,
    /// The non-batch atoms, outermost first in memory.
    phys: Vec<usize>,
}

/// An [`Nd`] activation: the layer holding it and the `[C, H, W]` view that layer declares.
#[derive(Clone, Debug)]
pub(super) struct NdValue {
    pub layer: String,
    pub nd: Nd,
    pub view: [usize; 3],
}

impl NdValue {
    /// The value with its ONNX axes permuted (`perm[i]` is the old axis of new axis `i`):
    /// only the grouping changes, memory stays.
    #[track_caller]
    pub(super) fn permuted(&self, perm: &[usize]) -> NdValue {
        let groups = self.nd.axes();
        assert_eq!(perm.len(), groups.len(), "a permutation of every axis");
        let mut nd = self.nd.clone();
        nd.order = perm.iter().flat_map(|&a| groups[a].iter().copied()).collect();
        nd.groups = perm.iter().map(|&a| groups[a].len()).collect();
        NdValue { nd, ..self.clone() }
    }
}

impl Nd {
    /// ONNX axes of static `dims` with the batch as axis 0 (an ordinary tensor), memory in
    /// logical order.
    fn plain(dims: &[usize]) -> Nd {
        let mut size = vec![1];
        size.extend_from_slice(dims);
        Nd {
            order: (0..size.len()).collect(),
            groups: vec![1; size.len()],
            batch: 0,
            phys: (1..size.len()).collect(),
            size,
        }
    }

    /// The description of an ordinary activation.
    pub(super) fn from_shape(s: &Shape) -> Option<Nd> {
        if s.merged {
            return None;
        }
        let mut nd = Nd::plain(&s.dims());
        match (s.split, s.channels_last) {
            // [N, H, W, C] over NCHW memory: C's atom is outermost.
            (None, true) => nd.phys = vec![3, 1, 2],
            // [N, per, G, H, W] over memory [G, per, H, W].
            (Some((_, _, true)), _) => nd.phys = vec![2, 1, 3, 4],
            _ => {}
        }
        Some(nd)
    }

    fn axes(&self) -> Vec<&[usize]> {
        let mut at = 0;
        self.groups
            .iter()
            .map(|&n| {
                let g = &self.order[at..at + n];
                at += n;
                g
            })
            .collect()
    }

    fn rank(&self) -> usize {
        self.groups.len()
    }

    /// The ONNX axis holding the batch.
    fn batch_axis(&self) -> usize {
        self.axes().iter().position(|g| g.contains(&self.batch)).unwrap_or(0)
    }

    /// Static size of axis `a` (the batch counted as 1).
    fn axis_len(&self, a: usize) -> usize {
        self.axes()[a].iter().map(|&i| self.size[i]).product()
    }

    /// ONNX dims, the batch axis symbolic (`k · N`).
    pub(super) fn dims(&self) -> Vec<i64> {
        let b = self.batch_axis();
        (0..self.rank())
            .map(|a| {
                let n = self.axis_len(a) as i64;
                if a == b {
                    batch_times(n)
                } else {
                    n
                }
            })
            .collect()
    }

    /// Elements per image.
    pub(super) fn image_len(&self) -> usize {
        self.phys.iter().map(|&i| self.size[i]).product()
    }

    /// Memory stride of each atom (0 for the batch).
    fn strides(&self) -> Vec<usize> {
        let mut st = vec![0; self.size.len()];
        let mut s = 1;
        for &i in self.phys.iter().rev() {
            st[i] = s;
            s *= self.size[i];
        }
        st
    }

    fn new_atom(&mut self, size: usize) -> usize {
        self.size.push(size);
        self.size.len() - 1
    }

    /// `[(size, stride)]` of `atoms` (in that order) with size-1 atoms dropped and
    /// neighbours that are contiguous in memory merged.
    fn runs(&self, atoms: &[usize]) -> Vec<(usize, usize)> {
        let st = self.strides();
        let mut out: Vec<(usize, usize)> = Vec::new();
        for &a in atoms {
            let (n, s) = (self.size[a], st[a]);
            if n == 1 || a == self.batch {
                continue;
            }
            match out.last_mut() {
                Some(last) if last.1 == n * s => *last = (last.0 * n, s),
                _ => out.push((n, s)),
            }
        }
        out
    }

    /// The non-batch atoms in logical order.
    fn logical_atoms(&self) -> Vec<usize> {
        self.order.iter().copied().filter(|&a| a != self.batch).collect()
    }

    /// Two descriptions address every element alike (same ONNX dims, same batch place,
    /// same memory position of each element).
    fn same_layout(&self, other: &Nd) -> bool {
        if self.dims() != other.dims() {
            return false;
        }
        let b = self.batch_axis();
        let split = |nd: &Nd| {
            let g = nd.axes()[b].to_vec();
            let at = g.iter().position(|&a| a == nd.batch).unwrap_or(0);
            let outer: usize = g[..at].iter().map(|&a| nd.size[a]).product();
            outer
        };
        split(self) == split(other) && self.runs(&self.logical_atoms()) == other.runs(&other.logical_atoms())
    }

    /// An ordinary [`Shape`] when the atoms are `[N, C, H, W]`, `[N, F]` or the
    /// channels-last view, with memory to match.
    pub(super) fn as_shape(&self) -> Option<Shape> {
        let axes = self.axes();
        let first = axes.first()?;
        if !first.contains(&self.batch) || first.iter().any(|&a| a != self.batch && self.size[a] != 1) {
            return None;
        }
        let logical = self.runs(&self.logical_atoms());
        let contiguous = logical.len() <= 1;
        let dims: Vec<usize> = (1..self.rank()).map(|a| self.axis_len(a)).collect();
        match dims[..] {
            [f] if contiguous => Some(Shape::flat(f)),
            [c, h, w] if contiguous => Some(Shape::map(c, h, w)),
            [h, w, c] => {
                let mut cl: Vec<usize> = axes[3].to_vec();
                cl.extend_from_slice(axes[1]);
                cl.extend_from_slice(axes[2]);
                (self.runs(&cl).len() <= 1).then(|| Shape { channels_last: true, ..Shape::map(c, h, w) })
            }
            _ => None,
        }
    }

    /// Replaces the atoms of ONNX axis `axis` by one new atom of `size`, outermost in
    /// memory when `outermost`, else innermost; returns it.
    fn replace_axis(&mut self, axis: usize, size: usize, outermost: bool) -> usize {
        let old = self.axes()[axis].to_vec();
        let fresh = self.new_atom(size);
        let at = self.order.iter().position(|a| old.contains(a)).unwrap_or(0);
        self.order.retain(|a| !old.contains(a));
        self.order.insert(at, fresh);
        self.groups[axis] = 1;
        self.phys.retain(|a| !old.contains(a));
        if outermost {
            self.phys.insert(0, fresh);
        } else {
            self.phys.push(fresh);
        }
        fresh
    }

    /// Splits atom `a` into an outer atom of `outer` and an inner one, in place in the
    /// logical and the memory order; returns `(outer, inner)`.
    fn split_atom(&mut self, a: usize, outer: usize) -> (usize, usize) {
        let inner_size = self.size[a] / outer;
        let (o, i) = (self.new_atom(outer), self.new_atom(inner_size));
        for list in [&mut self.order, &mut self.phys] {
            if let Some(p) = list.iter().position(|&x| x == a) {
                list.splice(p..=p, [o, i]);
            }
        }
        (o, i)
    }

    /// Groups the atoms `seq` (logical order) into axes of `dims`, splitting atoms where an
    /// axis ends inside one; `None` when the boundaries do not nest.
    fn regroup(&mut self, seq: &[usize], dims: &[usize]) -> Option<Vec<Vec<usize>>> {
        let mut queue: std::collections::VecDeque<usize> = seq.iter().copied().collect();
        let mut out = Vec::with_capacity(dims.len());
        for &d in dims {
            let mut group = Vec::new();
            let mut r = d;
            while r > 1 {
                let a = queue.pop_front()?;
                let s = self.size[a];
                if s == 1 || r.is_multiple_of(s) {
                    group.push(a);
                    r /= s;
                } else if s.is_multiple_of(r) {
                    let (o, i) = self.split_atom(a, r);
                    group.push(o);
                    queue.push_front(i);
                    r = 1;
                } else {
                    return None;
                }
            }
            while queue.front().is_some_and(|&a| self.size[a] == 1) && out.len() + 1 < dims.len() {
                group.push(queue.pop_front()?);
            }
            if group.is_empty() {
                let a = self.new_atom(1);
                self.phys.push(a);
                group.push(a);
            }
            out.push(group);
        }
        // Trailing size-1 atoms join the last axis.
        while let Some(a) = queue.pop_front() {
            if self.size[a] != 1 {
                return None;
            }
            out.last_mut()?.push(a);
        }
        Some(out)
    }
}

/// ONNX tensor ops the atom description handles when an activation is not an ordinary
/// shape (or when the ordinary importer refuses an operator).
pub(super) const ND_OPS: [&str; 19] = [
    "Split",
    "Einsum",
    "Expand",
    "Reshape",
    "Transpose",
    "MatMul",
    "Softmax",
    "Gather",
    "Slice",
    "Concat",
    "Squeeze",
    "Unsqueeze",
    "Flatten",
    "LayerNormalization",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceL2",
    "ReduceSumSquare",
];

/// The product of `v`, `None` on overflow (sizes come from the model file).
fn checked_product(v: &[usize]) -> Option<usize> {
    v.iter().try_fold(1usize, |acc, &x| acc.checked_mul(x))
}

/// Whether `(size, stride)` runs are row-major and contiguous.
fn is_row_major(runs: &[(usize, usize)]) -> bool {
    let mut expect = 1;
    for &(n, s) in runs.iter().rev() {
        if s != expect {
            return false;
        }
        expect *= n;
    }
    true
}

/// The common step of an arithmetic progression (1 for a single element).
fn progression(v: &[usize]) -> Option<usize> {
    match v {
        [] => None,
        [_] => Some(1),
        [a, b, ..] if b > a => {
            let d = b - a;
            v.windows(2).all(|w| w[1] == w[0] + d).then_some(d)
        }
        _ => None,
    }
}

/// One image's values of the constant `c` (numpy-broadcast to `like`'s ONNX dims, its
/// batch axis of size 1) in `like`'s memory order.
fn laid_out(node: &NodeProto, c: &Constant, like: &Nd) -> Result<Vec<f32>> {
    let rank = like.rank();
    if c.dims.len() > rank {
        return Err(bad(node, format!("constant of dims {:?} for a rank-{rank} tensor", c.dims)));
    }
    let pad = rank - c.dims.len();
    let b = like.batch_axis();
    let axes = like.axes();
    for (i, &d) in c.dims.iter().enumerate() {
        let a = i + pad;
        if d != 1 && (a == b || d != like.axis_len(a)) {
            return Err(bad(
                node,
                format!("constant of dims {:?} does not broadcast to {}", c.dims, show(&like.dims())),
            ));
        }
    }
    // Constant strides per ONNX axis (0 where broadcast).
    let mut cstride = vec![0usize; rank];
    let mut s = 1;
    for i in (0..c.dims.len()).rev() {
        if c.dims[i] != 1 {
            cstride[i + pad] = s;
        }
        s *= c.dims[i];
    }
    // For each atom: its axis and its place value within the axis coordinate.
    let mut place: HashMap<usize, (usize, usize)> = HashMap::new();
    for (a, g) in axes.iter().enumerate() {
        let mut p = 1;
        for &atom in g.iter().rev() {
            place.insert(atom, (a, p));
            p *= like.size[atom];
        }
    }
    let len = like.image_len();
    let mut out = Vec::with_capacity(len);
    for e in 0..len {
        let mut rest = e;
        let mut coord = vec![0usize; rank];
        for &atom in like.phys.iter().rev() {
            let n = like.size[atom];
            let (a, p) = place[&atom];
            coord[a] += (rest % n) * p;
            rest /= n;
        }
        let at: usize = coord.iter().zip(&cstride).map(|(x, s)| x * s).sum();
        out.push(c.floats[at]);
    }
    Ok(out)
}

/// Dims with the batch shown as `N` (or `kN`).
pub(super) fn show(v: &[i64]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|&d| match batch_factor(d) {
            Some(1) => "N".to_string(),
            Some(k) => format!("{k}N"),
            None if symbolic(d) => "?".to_string(),
            None => d.to_string(),
        })
        .collect();
    format!("[{}]", items.join(", "))
}
