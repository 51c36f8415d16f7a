//! Constant folding at import: a node whose inputs are all constants is evaluated here, so
//! the shape arithmetic exporters write (Shape → Gather → Unsqueeze → Concat → Reshape,
//! Identity around shared weights, Cast, Range, ...) is gone before lowering. Integer
//! values that depend on the batch size stay symbolic ([`BATCH`], [`UNKNOWN`]).

// Shapes and indices are small integers read from the model; they are checked before use.
#![allow(
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]

use super::proto::NodeProto;
use super::shapes::{reshape_dims, shape_slice, slice_ranges};
use super::tensor::{batch_factor, batch_times, symbolic, Constant, BATCH, UNKNOWN};
use crate::error::{Error, Result};

/// Largest tensor (elements) the importer computes at import time.
const MAX_FOLDED: usize = 1 << 26;

fn check_size(node: &NodeProto, dims: &[usize]) -> Result<()> {
    match dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
        Some(n) if n <= MAX_FOLDED => Ok(()),
        _ => Err(bad(node, format!("a constant of shape {dims:?} is too large to compute at import (more than {MAX_FOLDED} elements)"))),
    }
}

/// Operators folded when all their inputs are constants.
pub(super) const FOLDABLE: [&str; 45] = [
    "Identity",
    "Dropout",
    "Cast",
    "Shape",
    "Size",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Reshape",
    "Flatten",
    "Concat",
    "Slice",
    "Range",
    "ConstantOfShape",
    "Transpose",
    "Expand",
    "ScatterND",
    "GatherND",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Equal",
    "Less",
    "Greater",
    "GreaterOrEqual",
    "LessOrEqual",
    "Mod",
    "Where",
    "Max",
    "Min",
    "Neg",
    "Sqrt",
    "Floor",
    "Ceil",
    "Abs",
    "Reciprocal",
    "Not",
    "Relu",
    "Sigmoid",
    "MatMul",
    "Clip",
    "Exp",
    "Log",
];

pub(super) fn bad(node: &NodeProto, message: impl std::fmt::Display) -> Error {
    let name = if node.name.is_empty() {
        node.output.first().cloned().unwrap_or_default()
    } else {
        node.name.clone()
    };
    Error::Model(format!("'{}' node '{name}': {message}", node.op_type))
}

pub(super) fn attr_i(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

pub(super) fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.ints.clone())
}

/// `axis` (negative counts from the end) as an index below `rank`.
pub(super) fn axis(node: &NodeProto, axis: i64, rank: usize) -> Result<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank as i64 {
        return Err(bad(node, format!("axis {axis} is out of range for rank {rank}")));
    }
    Ok(a as usize)
}

fn strides(dims: &[usize]) -> Vec<usize> {
    let mut s = vec![1; dims.len()];
    for i in (0..dims.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * dims[i + 1];
    }
    s
}

/// Picks elements `index` of `c` into a tensor of `dims`, keeping its type.
fn pick(c: &Constant, dims: Vec<usize>, index: impl Iterator<Item = usize>) -> Constant {
    if c.int {
        Constant::from_ints(dims, index.map(|i| c.ints[i]).collect())
    } else {
        Constant::from_floats(dims, index.map(|i| c.floats[i]).collect())
    }
}

fn with_dims(c: &Constant, dims: Vec<usize>) -> Constant {
    Constant { dims, ..c.clone() }
}

/// The integer values of `c` (a shape, axes, indices), refused if symbolic.
pub(super) fn known_ints(node: &NodeProto, c: &Constant, what: &str) -> Result<Vec<i64>> {
    if c.batch_stride.is_some() {
        return Err(bad(node, format!("{what} depends on the batch index")));
    }
    let v = c.to_ints();
    if v.iter().any(|&x| symbolic(x)) {
        return Err(bad(
            node,
            format!("{what} depends on the batch size, which is only known when a plan is compiled"),
        ));
    }
    Ok(v)
}

/// Numpy broadcasting of two shapes.
pub(super) fn broadcast(node: &NodeProto, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let at = |d: &[usize], i: usize| if i + d.len() >= rank { d[i + d.len() - rank] } else { 1 };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Ok(x),
            (1, y) => Ok(y),
            (x, y) => Err(bad(node, format!("shapes {a:?} and {b:?} do not broadcast ({x} vs {y})"))),
        })
        .collect()
}

/// For each element of the broadcast shape `out`, the index into a tensor of `dims`.
pub(super) fn broadcast_index(dims: &[usize], out: &[usize]) -> Vec<usize> {
    let total: usize = out.iter().product();
    let offset = out.len() - dims.len();
    let own = strides(dims);
    let outs = strides(out);
    (0..total)
        .map(|k| {
            let mut idx = 0;
            for (i, &d) in dims.iter().enumerate() {
                let coord = (k / outs[i + offset]) % out[i + offset];
                if d != 1 {
                    idx += coord * own[i];
                }
            }
            idx
        })
        .collect()
}

fn int_op(op: &str, x: i64, y: i64) -> i64 {
    if symbolic(x) || symbolic(y) {
        // Multiples of the batch size stay multiples through products with positive
        // constants and exact divisions; N is positive, so it equals no constant below 1.
        return match (op, batch_factor(x), batch_factor(y)) {
            ("Mul", Some(k), None) if y > 0 && !symbolic(y) => batch_times(k * y),
            ("Mul", None, Some(k)) if x > 0 && !symbolic(x) => batch_times(k * x),
            ("Div", Some(k), None) if y > 0 && !symbolic(y) && k % y == 0 => batch_times(k / y),
            ("Equal", Some(_), None) if y < 1 && !symbolic(y) => 0,
            ("Equal", None, Some(_)) if x < 1 && !symbolic(x) => 0,
            _ => UNKNOWN,
        };
    }
    match op {
        "Add" => x.wrapping_add(y),
        "Sub" => x.wrapping_sub(y),
        "Mul" => x.wrapping_mul(y),
        "Div" if y != 0 => x.wrapping_div(y),
        "Div" => 0,
        "Pow" => x.checked_pow(u32::try_from(y).unwrap_or(0)).unwrap_or(0),
        "Equal" => i64::from(x == y),
        "Less" => i64::from(x < y),
        "Greater" => i64::from(x > y),
        "GreaterOrEqual" => i64::from(x >= y),
        "LessOrEqual" => i64::from(x <= y),
        "Max" => x.max(y),
        "ModF" if y != 0 => x.wrapping_rem(y),
        "Mod" if y != 0 => {
            let r = x.wrapping_rem(y);
            if r != 0 && (r < 0) != (y < 0) {
                r + y
            } else {
                r
            }
        }
        "Mod" | "ModF" => 0,
        _ => x.min(y),
    }
}

fn float_op(op: &str, x: f32, y: f32) -> f32 {
    match op {
        "Add" => x + y,
        "Sub" => x - y,
        "Mul" => x * y,
        "Div" => x / y,
        "Pow" => x.powf(y),
        "Equal" => f32::from(u8::from(x == y)),
        "Less" => f32::from(u8::from(x < y)),
        "Greater" => f32::from(u8::from(x > y)),
        "GreaterOrEqual" => f32::from(u8::from(x >= y)),
        "LessOrEqual" => f32::from(u8::from(x <= y)),
        "Max" => x.max(y),
        "ModF" => x % y,
        "Mod" => {
            let r = x % y;
            if r != 0.0 && (r < 0.0) != (y < 0.0) {
                r + y
            } else {
                r
            }
        }
        _ => x.min(y),
    }
}

/// Evaluates `node` on constant `inputs` (`None` for an absent optional input).
pub(super) fn fold(node: &NodeProto, inputs: &[Option<&Constant>], opset: i64) -> Result<Constant> {
    let input = |k: usize| -> Result<&Constant> {
        inputs.get(k).copied().flatten().ok_or_else(|| bad(node, format!("input {k} is missing")))
    };
    let x = input(0)?;
    let op = node.op_type.as_str();
    if inputs.iter().flatten().any(|c| c.batch_stride.is_some()) {
        return super::batch_index::fold(node, inputs, opset);
    }
    if inputs.iter().flatten().any(|c| c.len() == 0) && matches!(op, "Range") {
        return Err(bad(node, "an empty operand where a scalar is expected"));
    }
    Ok(match op {
        "Identity" | "Dropout" => x.clone(),
        "Cast" => {
            let to = attr_i(node, "to").unwrap_or(1);
            match to {
                1 | 10 | 11 | 16 => Constant::from_floats(x.dims.clone(), x.floats.clone()),
                9 => Constant::from_ints(
                    x.dims.clone(),
                    if x.int {
                        x.ints.iter().map(|&v| i64::from(v != 0)).collect()
                    } else {
                        x.floats.iter().map(|&v| i64::from(v != 0.0)).collect()
                    },
                ),
                2..=7 | 12 | 13 => Constant::from_ints(
                    x.dims.clone(),
                    if x.int { x.ints.clone() } else { x.floats.iter().map(|&v| v.trunc() as i64).collect() },
                ),
                other => return Err(bad(node, format!("cast to data type {other} is not supported"))),
            }
        }
        "Shape" => shape_slice(node, x.dims.iter().map(|&d| d as i64).collect()),
        "Size" => Constant::from_ints(vec![], vec![x.len() as i64]),
        "Gather" => {
            let idx = input(1)?;
            let ax = axis(node, attr_i(node, "axis").unwrap_or(0), x.dims.len())?;
            let n = x.dims[ax];
            let indices = known_ints(node, idx, "gather indices")?
                .into_iter()
                .map(|i| {
                    let j = if i < 0 { i + n as i64 } else { i };
                    usize::try_from(j)
                        .ok()
                        .filter(|&j| j < n)
                        .ok_or_else(|| bad(node, format!("index {i} out of range for {n}")))
                })
                .collect::<Result<Vec<usize>>>()?;
            let outer: usize = x.dims[..ax].iter().product();
            let inner: usize = x.dims[ax + 1..].iter().product();
            let mut dims = x.dims[..ax].to_vec();
            dims.extend(&idx.dims);
            dims.extend(&x.dims[ax + 1..]);
            let order = (0..outer).flat_map(|o| {
                indices.iter().flat_map(move |&i| (0..inner).map(move |k| (o * n + i) * inner + k))
            });
            pick(x, dims, order.collect::<Vec<_>>().into_iter())
        }
        "Unsqueeze" => {
            let axes = if opset < 13 {
                attr_ints(node, "axes").unwrap_or_default()
            } else {
                known_ints(node, input(1)?, "axes")?
            };
            let rank = x.dims.len() + axes.len();
            let mut axes: Vec<usize> = axes.iter().map(|&a| axis(node, a, rank)).collect::<Result<_>>()?;
            axes.sort_unstable();
            let mut dims = x.dims.clone();
            for a in axes {
                dims.insert(a.min(dims.len()), 1);
            }
            with_dims(x, dims)
        }
        "Squeeze" => {
            let axes = if opset < 13 {
                attr_ints(node, "axes")
            } else {
                inputs.get(1).copied().flatten().map(|c| known_ints(node, c, "axes")).transpose()?
            };
            let dims = match axes {
                None => x.dims.iter().copied().filter(|&d| d != 1).collect(),
                Some(axes) => {
                    let axes: Vec<usize> =
                        axes.iter().map(|&a| axis(node, a, x.dims.len())).collect::<Result<_>>()?;
                    x.dims.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect()
                }
            };
            with_dims(x, dims)
        }
        "Reshape" => {
            let target = known_ints(node, input(1)?, "target shape")?;
            with_dims(x, reshape_dims(node, &x.dims, &target, attr_i(node, "allowzero").unwrap_or(0) != 0)?)
        }
        "Flatten" => {
            let ax = attr_i(node, "axis").unwrap_or(1);
            let a = if ax < 0 { ax + x.dims.len() as i64 } else { ax }.clamp(0, x.dims.len() as i64) as usize;
            with_dims(x, vec![x.dims[..a].iter().product(), x.dims[a..].iter().product()])
        }
        "Concat" => {
            let parts: Vec<&Constant> = (0..inputs.len()).map(input).collect::<Result<_>>()?;
            let rank = x.dims.len();
            if rank == 0 {
                return Err(bad(node, "cannot concatenate scalars"));
            }
            let ax = axis(node, attr_i(node, "axis").unwrap_or(0), rank)?;
            if parts.iter().any(|p| p.dims.len() != rank) {
                return Err(bad(node, "inputs of different ranks"));
            }
            let outer: usize = x.dims[..ax].iter().product();
            let mut dims = x.dims.clone();
            dims[ax] = parts.iter().map(|p| p.dims[ax]).sum();
            let int = parts.iter().all(|p| p.int);
            let (mut fl, mut it) = (Vec::new(), Vec::new());
            for o in 0..outer {
                for p in &parts {
                    let chunk: usize = p.dims[ax..].iter().product();
                    if int {
                        it.extend_from_slice(&p.ints[o * chunk..(o + 1) * chunk]);
                    } else {
                        fl.extend_from_slice(&p.floats[o * chunk..(o + 1) * chunk]);
                    }
                }
            }
            if int {
                Constant::from_ints(dims, it)
            } else {
                Constant::from_floats(dims, fl)
            }
        }
        "Slice" => {
            let rank = x.dims.len();
            let (starts, ends, axes, steps) = if opset < 10 {
                (
                    attr_ints(node, "starts").unwrap_or_default(),
                    attr_ints(node, "ends").unwrap_or_default(),
                    attr_ints(node, "axes"),
                    None,
                )
            } else {
                let opt = |k: usize, what: &str| {
                    inputs.get(k).copied().flatten().map(|c| known_ints(node, c, what)).transpose()
                };
                // Exporters write INT64_MIN (the symbolic batch's encoding) for "from the
                // start": bounds are clamped, never read as sizes.
                (input(1)?.to_ints(), input(2)?.to_ints(), opt(3, "axes")?, opt(4, "steps")?)
            };
            let axes: Vec<usize> = match axes {
                Some(a) => a.iter().map(|&v| axis(node, v, rank)).collect::<Result<_>>()?,
                None => (0..starts.len()).collect(),
            };
            let ranges = slice_ranges(node, &x.dims, &starts, &ends, &axes, steps.as_deref())?;
            let dims: Vec<usize> = ranges.iter().map(Vec::len).collect();
            let st = strides(&x.dims);
            let total: usize = dims.iter().product();
            let os = strides(&dims);
            let order: Vec<usize> = (0..total)
                .map(|k| ranges.iter().enumerate().map(|(i, r)| r[(k / os[i]) % dims[i]] * st[i]).sum())
                .collect();
            pick(x, dims, order.into_iter())
        }
        "Range" => {
            let (s, l, d) = (input(0)?, input(1)?, input(2)?);
            if s.int && l.int && d.int && l.ints[0] == BATCH {
                // 0, 1, ..., N − 1 (times delta): a batch index.
                let (s, d) = (known_ints(node, s, "start")?[0], known_ints(node, d, "delta")?[0]);
                if s != 0 || d == 0 {
                    return Err(bad(
                        node,
                        "a range up to the batch size must start at 0 with a non-zero step",
                    ));
                }
                Constant { batch_stride: Some(d), ..Constant::from_ints(vec![1], vec![0]) }
            } else if s.int && l.int && d.int {
                let (s, l, d) = (
                    known_ints(node, s, "start")?[0],
                    known_ints(node, l, "limit")?[0],
                    known_ints(node, d, "delta")?[0],
                );
                if d == 0 {
                    return Err(bad(node, "delta is 0"));
                }
                let n = ((l - s) as f64 / d as f64).ceil().max(0.0) as usize;
                check_size(node, &[n])?;
                Constant::from_ints(vec![n], (0..n as i64).map(|i| s + i * d).collect())
            } else {
                let (s, l, d) = (s.floats[0], l.floats[0], d.floats[0]);
                let n = ((l - s) / d).ceil().max(0.0) as usize;
                check_size(node, &[n])?;
                Constant::from_floats(vec![n], (0..n).map(|i| s + i as f32 * d).collect())
            }
        }
        "ConstantOfShape" => {
            let dims: Vec<usize> = known_ints(node, x, "shape")?.iter().map(|&d| d.max(0) as usize).collect();
            check_size(node, &dims)?;
            let n: usize = dims.iter().product();
            let value = node.attribute.iter().find(|a| a.name == "value").and_then(|a| a.t.as_ref());
            match value {
                Some(t) => {
                    let v = Constant::from_proto(t, None)?;
                    if v.int {
                        Constant::from_ints(dims, vec![v.ints.first().copied().unwrap_or(0); n])
                    } else {
                        Constant::from_floats(dims, vec![v.floats.first().copied().unwrap_or(0.0); n])
                    }
                }
                None => Constant::from_floats(dims, vec![0.0; n]),
            }
        }
        "Transpose" => {
            let rank = x.dims.len();
            let perm: Vec<usize> = match attr_ints(node, "perm") {
                Some(p) => p.iter().map(|&a| axis(node, a, rank)).collect::<Result<_>>()?,
                None => (0..rank).rev().collect(),
            };
            let mut sorted = perm.clone();
            sorted.sort_unstable();
            if sorted != (0..rank).collect::<Vec<_>>() {
                return Err(bad(node, format!("perm {perm:?} is not a permutation of {rank} axes")));
            }
            let dims: Vec<usize> = perm.iter().map(|&p| x.dims[p]).collect();
            let st = strides(&x.dims);
            let os = strides(&dims);
            let total = x.len();
            let order: Vec<usize> = (0..total)
                .map(|k| perm.iter().enumerate().map(|(i, &p)| ((k / os[i]) % dims[i]) * st[p]).sum())
                .collect();
            pick(x, dims, order.into_iter())
        }
        "ScatterND" => {
            // Swin's shifted-window attention mask, written by slice assignment.
            let (data, idx, upd) = (x, input(1)?, input(2)?);
            let ix = known_ints(node, idx, "indices")?;
            let k = *idx.dims.last().ok_or_else(|| bad(node, "indices of rank 0"))?;
            if k == 0 || k > data.dims.len() {
                return Err(bad(node, format!("index tuples of {k} for data of rank {}", data.dims.len())));
            }
            let st = strides(&data.dims);
            let slice: usize = data.dims[k..].iter().product();
            let reduction = node
                .attribute
                .iter()
                .find(|a| a.name == "reduction")
                .map_or(String::new(), |a| String::from_utf8_lossy(&a.s).into_owned());
            let mut out = data.clone();
            let count = ix.len() / k;
            if upd.len() != count * slice {
                return Err(bad(node, format!("{} updates for {count} slices of {slice}", upd.len())));
            }
            for (t, tuple) in ix.chunks_exact(k).enumerate() {
                let mut at = 0;
                for (a, &i) in tuple.iter().enumerate() {
                    let n = data.dims[a] as i64;
                    let i = if i < 0 { i + n } else { i };
                    if !(0..n).contains(&i) {
                        return Err(bad(node, format!("index {i} out of range for an axis of {n}")));
                    }
                    at += i as usize * st[a];
                }
                for e in 0..slice {
                    let (o, u) = (at + e, t * slice + e);
                    if out.int {
                        let v = upd.to_ints()[u];
                        out.ints[o] = match reduction.as_str() {
                            "add" => out.ints[o] + v,
                            "mul" => out.ints[o] * v,
                            "max" => out.ints[o].max(v),
                            "min" => out.ints[o].min(v),
                            _ => v,
                        };
                        out.floats[o] = out.ints[o] as f32;
                    } else {
                        let v = upd.floats[u];
                        out.floats[o] = match reduction.as_str() {
                            "add" => out.floats[o] + v,
                            "mul" => out.floats[o] * v,
                            "max" => out.floats[o].max(v),
                            "min" => out.floats[o].min(v),
                            _ => v,
                        };
                    }
                }
            }
            out
        }
        "GatherND" => {
            // SwinV2's relative position tables.
            let idx = input(1)?;
            if attr_i(node, "batch_dims").unwrap_or(0) != 0 {
                return Err(bad(node, "batch_dims other than 0 are not supported"));
            }
            let ix = known_ints(node, idx, "indices")?;
            let k = *idx.dims.last().ok_or_else(|| bad(node, "indices of rank 0"))?;
            if k == 0 || k > x.dims.len() {
                return Err(bad(node, format!("index tuples of {k} for data of rank {}", x.dims.len())));
            }
            let st = strides(&x.dims);
            let slice: usize = x.dims[k..].iter().product();
            let mut dims = idx.dims[..idx.dims.len() - 1].to_vec();
            dims.extend_from_slice(&x.dims[k..]);
            check_size(node, &dims)?;
            let mut order = Vec::with_capacity(dims.iter().product());
            for tuple in ix.chunks_exact(k) {
                let mut at = 0;
                for (a, &i) in tuple.iter().enumerate() {
                    let n = x.dims[a] as i64;
                    let i = if i < 0 { i + n } else { i };
                    if !(0..n).contains(&i) {
                        return Err(bad(node, format!("index {i} out of range for an axis of {n}")));
                    }
                    at += i as usize * st[a];
                }
                order.extend(at..at + slice);
            }
            pick(x, dims, order.into_iter())
        }
        "Expand" => {
            // A batch-sized leading axis stays 1: the constant is the same for every image
            // (a class token expanded over the batch), and the layer reading it broadcasts.
            let mut target = input(1)?.clone();
            if target.int
                && target.ints.first() == Some(&BATCH)
                && target.ints[1..].iter().all(|&d| !symbolic(d))
            {
                target.ints[0] = 1;
            }
            let shape: Vec<usize> =
                known_ints(node, &target, "shape")?.iter().map(|&d| d.max(0) as usize).collect();
            let dims = broadcast(node, &x.dims, &shape)?;
            check_size(node, &dims)?;
            let idx = broadcast_index(&x.dims, &dims);
            pick(x, dims, idx.into_iter())
        }
        "Where" => {
            let (c, a, b) = (input(0)?, input(1)?, input(2)?);
            let dims = broadcast(node, &broadcast(node, &c.dims, &a.dims)?, &b.dims)?;
            check_size(node, &dims)?;
            let (ic, ia, ib) = (
                broadcast_index(&c.dims, &dims),
                broadcast_index(&a.dims, &dims),
                broadcast_index(&b.dims, &dims),
            );
            let cond = |k: usize| c.floats[ic[k]] != 0.0;
            if a.int && b.int {
                Constant::from_ints(
                    dims.clone(),
                    (0..ic.len()).map(|k| if cond(k) { a.ints[ia[k]] } else { b.ints[ib[k]] }).collect(),
                )
            } else {
                Constant::from_floats(
                    dims.clone(),
                    (0..ic.len()).map(|k| if cond(k) { a.floats[ia[k]] } else { b.floats[ib[k]] }).collect(),
                )
            }
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" | "Less" | "Greater" | "GreaterOrEqual"
        | "LessOrEqual" | "Max" | "Min" | "Mod" => {
            // Mod's sign follows the divisor (Python's %) unless fmod = 1 (C's fmod).
            let op = if op == "Mod" && attr_i(node, "fmod").unwrap_or(0) != 0 { "ModF" } else { op };
            let mut acc = x.clone();
            for k in 1..inputs.len() {
                let y = input(k)?;
                let dims = broadcast(node, &acc.dims, &y.dims)?;
                check_size(node, &dims)?;
                let (ia, ib) = (broadcast_index(&acc.dims, &dims), broadcast_index(&y.dims, &dims));
                let compare = matches!(op, "Equal" | "Less" | "Greater" | "GreaterOrEqual" | "LessOrEqual");
                acc = if acc.int && y.int {
                    Constant::from_ints(
                        dims,
                        ia.iter().zip(&ib).map(|(&i, &j)| int_op(op, acc.ints[i], y.ints[j])).collect(),
                    )
                } else {
                    let v: Vec<f32> =
                        ia.iter().zip(&ib).map(|(&i, &j)| float_op(op, acc.floats[i], y.floats[j])).collect();
                    if compare {
                        Constant::from_ints(dims, v.iter().map(|&f| f as i64).collect())
                    } else {
                        Constant::from_floats(dims, v)
                    }
                };
            }
            acc
        }
        "Exp" => Constant::from_floats(x.dims.clone(), x.floats.iter().map(|&v| v.exp()).collect()),
        "Log" => Constant::from_floats(x.dims.clone(), x.floats.iter().map(|&v| v.ln()).collect()),
        "Neg" | "Sqrt" | "Floor" | "Ceil" | "Abs" | "Reciprocal" | "Not" => {
            if x.int && matches!(op, "Neg" | "Abs" | "Floor" | "Ceil" | "Not") {
                let f = |v: i64| match op {
                    _ if symbolic(v) => UNKNOWN,
                    "Neg" => -v,
                    "Abs" => v.abs(),
                    "Not" => i64::from(v == 0),
                    _ => v,
                };
                Constant::from_ints(x.dims.clone(), x.ints.iter().map(|&v| f(v)).collect())
            } else {
                let f = |v: f32| match op {
                    "Neg" => -v,
                    "Sqrt" => v.sqrt(),
                    "Floor" => v.floor(),
                    "Ceil" => v.ceil(),
                    "Abs" => v.abs(),
                    _ => 1.0 / v,
                };
                Constant::from_floats(x.dims.clone(), x.floats.iter().map(|&v| f(v)).collect())
            }
        }
        "Clip" => {
            let bound = |k: usize, attr: &str, default: f32| -> f32 {
                if opset < 11 {
                    node.attribute.iter().find(|a| a.name == attr).map_or(default, |a| a.f)
                } else {
                    inputs
                        .get(k)
                        .copied()
                        .flatten()
                        .and_then(|c| c.floats.first().copied())
                        .unwrap_or(default)
                }
            };
            let (lo, hi) = (bound(1, "min", f32::MIN), bound(2, "max", f32::MAX));
            Constant::from_floats(x.dims.clone(), x.floats.iter().map(|&v| v.max(lo).min(hi)).collect())
        }
        "Relu" => Constant::from_floats(
            x.dims.clone(),
            x.floats.iter().map(|&v| if v < 0.0 { 0.0 } else { v }).collect(),
        ),
        "Sigmoid" => Constant::from_floats(
            x.dims.clone(),
            x.floats.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect(),
        ),
        "MatMul" => {
            // Tables computed from constants (SwinV2's continuous position bias).
            let y = input(1)?;
            let (ra, rb) = (x.dims.len(), y.dims.len());
            if ra < 2 || rb < 2 || x.dims[ra - 1] != y.dims[rb - 2] {
                return Err(bad(node, format!("MatMul of constants {:?} and {:?}", x.dims, y.dims)));
            }
            let (m, k, n) = (x.dims[ra - 2], x.dims[ra - 1], y.dims[rb - 1]);
            let lead = broadcast(node, &x.dims[..ra - 2], &y.dims[..rb - 2])?;
            let mut dims = lead.clone();
            dims.extend([m, n]);
            check_size(node, &dims)?;
            let (ia, ib) =
                (broadcast_index(&x.dims[..ra - 2], &lead), broadcast_index(&y.dims[..rb - 2], &lead));
            let mut out = Vec::with_capacity(dims.iter().product());
            for (&a0, &b0) in ia.iter().zip(&ib) {
                for r in 0..m {
                    for c in 0..n {
                        let v: f64 = (0..k)
                            .map(|t| {
                                f64::from(x.floats[(a0 * m + r) * k + t])
                                    * f64::from(y.floats[(b0 * k + t) * n + c])
                            })
                            .sum();
                        out.push(v as f32);
                    }
                }
            }
            Constant::from_floats(dims, out)
        }
        other => return Err(bad(node, format!("cannot fold '{other}'"))),
    })
}
