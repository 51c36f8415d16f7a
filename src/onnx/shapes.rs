//! Shape arithmetic shared by constant folding and lowering: ONNX Reshape targets, Slice
//! ranges, and the value of a Shape node.

// Shapes and indices are small integers read from the model; they are checked before use.
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, clippy::cast_sign_loss)]

use super::fold::{attr_i, bad};
use super::proto::NodeProto;
use super::tensor::{Constant, BATCH};
use crate::error::Result;

/// The output dims of reshaping `dims` to `target` (ONNX rules: 0 copies the input's
/// dimension unless `allowzero`, one −1 is inferred).
pub(super) fn reshape_dims(
    node: &NodeProto,
    dims: &[usize],
    target: &[i64],
    allowzero: bool,
) -> Result<Vec<usize>> {
    let product = |d: &[usize]| d.iter().try_fold(1usize, |a, &v| a.checked_mul(v));
    let too_large = || bad(node, format!("reshape of {dims:?} to {target:?}: the element count overflows"));
    let total = product(dims).ok_or_else(too_large)?;
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => out.push(*dims.get(i).ok_or_else(|| {
                bad(node, format!("0 at position {i} copies a dimension the input does not have"))
            })?),
            t if t >= 0 => out.push(t as usize),
            _ => return Err(bad(node, format!("target shape {target:?} is invalid"))),
        }
    }
    let known = product(&out).ok_or_else(too_large)?;
    if let Some(i) = infer {
        if known == 0 || !total.is_multiple_of(known) {
            return Err(bad(node, format!("cannot reshape {dims:?} to {target:?}")));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(bad(node, format!("cannot reshape {dims:?} ({total} elements) to {target:?}")));
    }
    Ok(out)
}

/// Per axis, the indices a Slice keeps (all of them on axes it does not name).
pub(super) fn slice_ranges(
    node: &NodeProto,
    dims: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: &[usize],
    steps: Option<&[i64]>,
) -> Result<Vec<Vec<usize>>> {
    if starts.len() != axes.len() || ends.len() != axes.len() || steps.is_some_and(|s| s.len() != axes.len())
    {
        return Err(bad(node, "starts, ends, axes and steps must have the same length"));
    }
    let mut ranges: Vec<Vec<usize>> = dims.iter().map(|&d| (0..d).collect()).collect();
    for (k, &a) in axes.iter().enumerate() {
        let n = dims[a] as i64;
        let step = steps.map_or(1, |s| s[k]);
        if step == 0 {
            return Err(bad(node, "a step of 0"));
        }
        let norm = |v: i64| if v < 0 { v + n } else { v };
        let (mut s, mut e) = (norm(starts[k]), norm(ends[k]));
        let mut r = Vec::new();
        if step > 0 {
            s = s.clamp(0, n);
            e = e.clamp(0, n);
            let mut i = s;
            while i < e {
                r.push(i as usize);
                i += step;
            }
        } else {
            s = s.clamp(-1, n - 1);
            e = e.clamp(-1, n - 1);
            let mut i = s;
            while i > e {
                r.push(i as usize);
                i += step;
            }
        }
        ranges[a] = r;
    }
    Ok(ranges)
}

/// The dims of `Shape` of an activation: `[batch, per-image dims...]` with the batch
/// symbolic.
pub(super) fn shape_of_activation(node: &NodeProto, per_image: &[usize]) -> Constant {
    let mut v = vec![BATCH];
    v.extend(per_image.iter().map(|&d| d as i64));
    shape_slice(node, v)
}

/// The output of a Shape node for an activation of ONNX dims `dims` (symbolic where they
/// hold the batch).
pub(super) fn shape_of_dims(node: &NodeProto, dims: Vec<i64>) -> Constant {
    shape_slice(node, dims)
}

/// The output of a Shape node whose input has dims `dims`: the part its `start` and `end`
/// attributes select (opset 15; negative values count from the end, both clamped).
pub(super) fn shape_slice(node: &NodeProto, dims: Vec<i64>) -> Constant {
    let rank = dims.len() as i64;
    let clampi = |x: i64| (if x < 0 { x + rank } else { x }).clamp(0, rank) as usize;
    let start = clampi(attr_i(node, "start").unwrap_or(0));
    let end = clampi(attr_i(node, "end").unwrap_or(rank));
    let v = dims[start..end.max(start)].to_vec();
    Constant::from_ints(vec![v.len()], v)
}
