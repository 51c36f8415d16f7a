//! Atom descriptions held by layers: memory orders, views, broadcasts, reshapes and
//! strided selections (each at most one `Strided` copy).

use std::collections::HashMap;

use super::{checked_product, is_row_major, show, Nd, NdValue};
use crate::error::Result;
use crate::network::{Op, Strided, MAX_STRIDED_RANK};
use crate::onnx::import::{bad, Importer, Shape};
use crate::onnx::proto::NodeProto;
use crate::onnx::tensor::{batch_factor, symbolic};

impl Importer<'_> {
    /// Input `k` as an atom description.
    pub(crate) fn nd_of(&self, node: &NodeProto, k: usize) -> Result<NdValue> {
        let name = node
            .input
            .get(k)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad(node, format!("input {k} is missing")))?;
        if let Some(v) = self.nd.get(name) {
            return Ok(v.clone());
        }
        let (layer, s) = self.value_view(node, k)?;
        let nd = Nd::from_shape(&s).ok_or_else(|| {
            bad(node, format!("input '{name}' (the whole batch as one axis) cannot be used here"))
        })?;
        Ok(NdValue { layer, nd, view: [s.c, s.h, s.w] })
    }

    /// Stores `v` as output `k` of `node`: an ordinary value when its shape allows.
    pub(super) fn nd_set(&mut self, node: &NodeProto, k: usize, v: NdValue) {
        let name = node.output[k].clone();
        if let Some(s) = v.nd.as_shape() {
            let layer = self.nd_view(node, &v, [s.c, s.h, s.w]);
            self.nd.remove(&name);
            self.values.insert(name, (layer, s));
        } else {
            self.values.remove(&name);
            self.nd.insert(name, v);
        }
    }

    /// The layer of `v` under the view `view` (a `Reshape` layer when it differs).
    pub(super) fn nd_view(&mut self, node: &NodeProto, v: &NdValue, view: [usize; 3]) -> String {
        if v.view == view {
            return v.layer.clone();
        }
        self.push_named(node, "view", Op::Reshape { shape: view }, &[&v.layer])
    }

    /// `v` with memory in the order `phys` (a `Strided` copy unless it already is).
    pub(super) fn nd_arrange(&mut self, node: &NodeProto, v: &NdValue, phys: Vec<usize>) -> Result<NdValue> {
        let runs = v.nd.runs(&phys);
        let mut nd = v.nd.clone();
        nd.phys = phys;
        // Already in that order: the runs of the new order are row-major under the old strides.
        if is_row_major(&runs) {
            return Ok(NdValue { layer: v.layer.clone(), nd, view: v.view });
        }
        if runs.len() > MAX_STRIDED_RANK {
            return Err(bad(
                node,
                format!("a copy of {} strided axes (at most {MAX_STRIDED_RANK})", runs.len()),
            ));
        }
        let len = nd.image_len();
        let runs = if runs.is_empty() { vec![(1, 0)] } else { runs };
        let view = Strided {
            dims: runs.iter().map(|r| r.0).collect(),
            strides: runs.iter().map(|r| r.1).collect(),
            offset: 0,
            shape: [len, 1, 1],
        };
        let layer = self.push_named(node, "arrange", Op::Strided(view), &[&v.layer]);
        Ok(NdValue { layer, nd, view: [len, 1, 1] })
    }

    /// `v` with the atoms of `axes` outermost (in logical order), the rest after them in
    /// their memory order; also the elements those axes span.
    pub(super) fn nd_leading(
        &mut self,
        node: &NodeProto,
        v: &NdValue,
        axes: &[usize],
    ) -> Result<(NdValue, usize)> {
        let groups = v.nd.axes();
        let mut first: Vec<usize> = Vec::new();
        for &a in axes {
            if groups[a].contains(&v.nd.batch) {
                return Err(bad(
                    node,
                    format!("axis {a} holds the batch; only per-image axes are supported here"),
                ));
            }
            first.extend_from_slice(groups[a]);
        }
        let mut phys = first.clone();
        phys.extend(v.nd.phys.iter().copied().filter(|a| !first.contains(a)));
        let n: usize = first.iter().map(|&a| v.nd.size[a]).product();
        Ok((self.nd_arrange(node, v, phys)?, n))
    }

    /// The ordinary shape `v` has once its memory is in logical order.
    pub(super) fn nd_plain_shape(&self, node: &NodeProto, v: &NdValue) -> Result<Shape> {
        let mut nd = v.nd.clone();
        nd.phys = nd.logical_atoms();
        nd.as_shape().ok_or_else(|| {
            bad(
                node,
                format!("'{}' on a tensor of dims {} is not supported", node.op_type, show(&v.nd.dims())),
            )
        })
    }

    /// Runs the ordinary importer on `node` with inputs `k` replaced by the layers and
    /// shapes given; returns its output.
    pub(super) fn via_map(
        &mut self,
        node: &NodeProto,
        inputs: &[(usize, String, Shape)],
        nodes: &[NodeProto],
        index: usize,
    ) -> Result<(String, Shape)> {
        let mut fake = node.clone();
        let mut names = Vec::new();
        for (k, layer, shape) in inputs {
            let name = format!("{}#nd{k}", node.input[*k]);
            self.values.insert(name.clone(), (layer.clone(), *shape));
            fake.input[*k] = name.clone();
            names.push(name);
        }
        let r = self.node_ops(&fake, nodes, index);
        for n in names {
            self.values.remove(&n);
        }
        r?;
        self.values.get(&node.output[0]).cloned().ok_or_else(|| bad(node, "produced no value"))
    }

    /// `v` broadcast (numpy rules, the batch axis equal) to `like`'s dims, in `like`'s
    /// memory order: one strided copy with stride 0 along the broadcast axes.
    pub(super) fn nd_broadcast(&mut self, node: &NodeProto, v: &NdValue, like: &Nd) -> Result<NdValue> {
        let (from, to) = (v.nd.dims(), like.dims());
        let fail =
            || bad(node, format!("operands of dims {} and {} do not broadcast", show(&from), show(&to)));
        if from.len() > to.len() {
            return Err(fail());
        }
        let pad = to.len() - from.len();
        if v.nd.batch_axis() + pad != like.batch_axis() || from[v.nd.batch_axis()] != to[like.batch_axis()] {
            return Err(fail());
        }
        for (i, &d) in from.iter().enumerate() {
            if d != 1 && d != to[i + pad] {
                return Err(fail());
            }
        }
        // The operand in logical order: row-major strides per ONNX axis.
        let plain = self.nd_arrange(node, v, v.nd.logical_atoms())?;
        let rank = to.len();
        let mut axis_stride = vec![0usize; rank];
        let mut s = 1;
        for i in (0..from.len()).rev() {
            let n = plain.nd.axis_len(i);
            if n != 1 {
                axis_stride[i + pad] = s;
            }
            s *= n;
        }
        let axes = like.axes();
        let mut place: HashMap<usize, (usize, usize)> = HashMap::new();
        for (a, g) in axes.iter().enumerate() {
            let mut p = 1;
            for &atom in g.iter().rev() {
                if atom != like.batch {
                    place.insert(atom, (a, p));
                    p *= like.size[atom];
                }
            }
        }
        let mut dims = Vec::new();
        let mut strides = Vec::new();
        for &atom in &like.phys {
            let (a, p) = place[&atom];
            if like.size[atom] > 1 {
                dims.push(like.size[atom]);
                strides.push(p * axis_stride[a]);
            }
        }
        if dims.is_empty() {
            dims.push(1);
            strides.push(0);
        }
        if dims.len() > MAX_STRIDED_RANK {
            return Err(bad(node, "too many axes for one broadcast copy"));
        }
        let len = like.image_len();
        let view = Strided { dims, strides, offset: 0, shape: [len, 1, 1] };
        let layer = self.push_named(node, "broadcast", Op::Strided(view), &[&plain.layer]);
        Ok(NdValue { layer, nd: like.clone(), view: [len, 1, 1] })
    }

    /// Reshape of an atom description to `target` (symbolic where it holds the batch).
    pub(super) fn nd_reshape(&mut self, node: &NodeProto, v: &NdValue, target: &[i64]) -> Result<NdValue> {
        let total = v.nd.image_len();
        let fail =
            |why: &str| bad(node, format!("reshape of {} to {}: {why}", show(&v.nd.dims()), show(target)));
        let batch_at: Vec<usize> = (0..target.len()).filter(|&i| batch_factor(target[i]).is_some()).collect();
        let infer: Vec<usize> = (0..target.len()).filter(|&i| target[i] == -1).collect();
        if target.iter().any(|&d| symbolic(d) && batch_factor(d).is_none())
            || batch_at.len() > 1
            || infer.len() > 1
        {
            return Err(fail("the batch size enters it in a way the importer does not follow"));
        }
        let mut dims: Vec<usize> = Vec::with_capacity(target.len());
        for &d in target {
            dims.push(match batch_factor(d) {
                Some(k) => usize::try_from(k).map_err(|_| fail("negative dimension"))?,
                None if d == -1 => 1,
                None if d >= 0 => usize::try_from(d).map_err(|_| fail("dimension too large"))?,
                None => return Err(fail("negative dimension")),
            });
        }
        let batch_axis = match (batch_at.first(), infer.first()) {
            (Some(&b), _) => b,
            (None, Some(&i)) => i,
            (None, None) => {
                return Err(fail(
                    "it does not say which axis holds the batch (export with a dynamic batch axis)",
                ))
            }
        };
        if let Some(&i) = infer.first() {
            let known = checked_product(&dims).ok_or_else(|| fail("the sizes overflow"))?;
            if known == 0 || !total.is_multiple_of(known) {
                return Err(fail("the sizes do not divide"));
            }
            dims[i] = total / known;
        }
        if checked_product(&dims) != Some(total) {
            return Err(fail("the element counts differ"));
        }
        // Atoms before the batch (logically) stay before it.
        let pos = v.nd.order.iter().position(|&a| a == v.nd.batch).unwrap_or(0);
        let pre_len: usize = v.nd.order[..pos].iter().map(|&a| v.nd.size[a]).product();
        let before = checked_product(&dims[..batch_axis]).ok_or_else(|| fail("the sizes overflow"))?;
        if before == 0
            || !pre_len.is_multiple_of(before)
            || !dims[batch_axis].is_multiple_of(pre_len / before)
        {
            return Err(fail("it moves atoms across the batch axis"));
        }
        let a = pre_len / before;
        let b = dims[batch_axis] / a;
        let mut pre_dims = dims[..batch_axis].to_vec();
        pre_dims.push(a);
        let mut post_dims = vec![b];
        post_dims.extend_from_slice(&dims[batch_axis + 1..]);
        type Groups = Vec<Vec<usize>>;
        let attempt = |nd: &mut Nd| -> Option<(Groups, Groups)> {
            let pos = nd.order.iter().position(|&x| x == nd.batch)?;
            let (pre, post) = (nd.order[..pos].to_vec(), nd.order[pos + 1..].to_vec());
            Some((nd.regroup(&pre, &pre_dims)?, nd.regroup(&post, &post_dims)?))
        };
        let mut nd = v.nd.clone();
        let (mut value, regrouped) = match attempt(&mut nd) {
            Some(g) => (NdValue { nd, ..v.clone() }, g),
            None => {
                // Boundaries that do not nest: memory in logical order, then fresh atoms.
                let plain = self.nd_arrange(node, v, v.nd.logical_atoms())?;
                let mut nd = plain.nd.clone();
                let fresh = |nd: &mut Nd, dims: &[usize]| -> Vec<Vec<usize>> {
                    dims.iter().map(|&d| vec![nd.new_atom(d)]).collect()
                };
                let pre = fresh(&mut nd, &pre_dims);
                let post = fresh(&mut nd, &post_dims);
                nd.phys = pre.iter().chain(&post).flatten().copied().collect();
                (NdValue { nd, ..plain }, (pre, post))
            }
        };
        let (pre, post) = regrouped;
        let nd = &mut value.nd;
        let mut order = Vec::new();
        let mut groups = Vec::new();
        for g in &pre[..pre.len() - 1] {
            order.extend_from_slice(g);
            groups.push(g.len());
        }
        let middle: Vec<usize> =
            pre[pre.len() - 1].iter().copied().chain([nd.batch]).chain(post[0].iter().copied()).collect();
        groups.push(middle.len());
        order.extend(middle);
        for g in &post[1..] {
            order.extend_from_slice(g);
            groups.push(g.len());
        }
        nd.order = order;
        nd.groups = groups;
        let listed: Vec<usize> = nd.order.iter().copied().filter(|&x| x != nd.batch).collect();
        nd.phys.retain(|x| listed.contains(x));
        Ok(value)
    }

    /// Elements `start, start + step, …` (`count` of them, or the one `start` with the axis
    /// removed) of per-image axis `axis`.
    pub(super) fn nd_select(
        &mut self,
        node: &NodeProto,
        v: NdValue,
        axis: usize,
        start: usize,
        step: usize,
        count: Option<usize>,
    ) -> Result<NdValue> {
        if v.nd.axes()[axis].contains(&v.nd.batch) {
            return Err(bad(
                node,
                format!("selecting along axis {axis}, which holds the batch, is not supported"),
            ));
        }
        // The axis as one run of memory (a copy first if its atoms are not contiguous).
        let group = v.nd.axes()[axis].to_vec();
        let v = if v.nd.runs(&group).len() > 1 {
            let (w, _) = self.nd_leading(node, &v, &[axis])?;
            w
        } else {
            v
        };
        let group = v.nd.axes()[axis].to_vec();
        let stride = v.nd.runs(&group).first().map_or(0, |r| r.1);
        let st = v.nd.strides();
        let mut nd = v.nd.clone();
        let new = count.map(|c| nd.new_atom(c));
        // Output memory: the old order with the axis replaced by the new atom (or dropped).
        let at = nd.phys.iter().position(|a| group.contains(a)).unwrap_or(nd.phys.len());
        let mut phys: Vec<usize> = nd.phys.iter().copied().filter(|a| !group.contains(a)).collect();
        if let Some(n) = new {
            phys.insert(at.min(phys.len()), n);
        }
        let mut dims = Vec::new();
        let mut strides = Vec::new();
        for &a in &phys {
            if Some(a) == new {
                dims.push(nd.size[a]);
                strides.push(stride * step);
            } else if nd.size[a] > 1 {
                dims.push(nd.size[a]);
                strides.push(st[a]);
            }
        }
        if dims.is_empty() {
            dims.push(1);
            strides.push(0);
        }
        let len: usize = dims.iter().product();
        if dims.len() > MAX_STRIDED_RANK {
            return Err(bad(node, "too many axes for one strided copy"));
        }
        let view = Strided { dims, strides, offset: start * stride, shape: [len, 1, 1] };
        let layer = self.push_named(node, "select", Op::Strided(view), &[&v.layer]);
        let pos = nd.order.iter().position(|a| group.contains(a)).unwrap_or(0);
        nd.order.retain(|a| !group.contains(a));
        match new {
            Some(n) => {
                nd.order.insert(pos, n);
                nd.groups[axis] = 1;
            }
            None => {
                nd.groups.remove(axis);
            }
        }
        nd.phys = phys;
        Ok(NdValue { layer, nd, view: [len, 1, 1] })
    }

    /// The network output `name` as an ordinary value with memory in logical order (an
    /// atom description, or a view such as channels-last `[N, H, W, C]` over NCHW memory,
    /// gets one strided copy).
    pub(crate) fn nd_finish(&mut self, name: &str) -> Result<()> {
        let v = match self.nd.get(name) {
            Some(v) => v.clone(),
            None => {
                let Some((layer, s)) = self.values.get(name).cloned() else { return Ok(()) };
                match Nd::from_shape(&s) {
                    Some(nd) if nd.phys != nd.logical_atoms() => NdValue { layer, nd, view: [s.c, s.h, s.w] },
                    _ => return Ok(()),
                }
            }
        };
        let node = NodeProto {
            name: "output".into(),
            op_type: "Output".into(),
            input: vec![name.into()],
            output: vec![name.into()],
            ..Default::default()
        };
        let shape = self.nd_plain_shape(&node, &v)?;
        let plain = self.nd_arrange(&node, &v, v.nd.logical_atoms())?;
        let layer = self.nd_view(&node, &plain, [shape.c, shape.h, shape.w]);
        self.nd.remove(name);
        self.values.insert(name.to_string(), (layer, shape));
        Ok(())
    }
}
