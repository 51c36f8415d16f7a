//! Folding of integer tensors computed from the batch index. torch.export writes some
//! copies (`as_strided`) as a Gather from the whole flattened batch with indices
//! `n · stride + offset`, built from `Range(0, N)`; such a tensor is kept as its offsets
//! for one image plus the stride ([`Constant::batch_stride`]), so the Gather can be
//! recognised as a per-image operation.

// Axes are integers read from the model; they are range-checked where used.
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, clippy::cast_sign_loss)]

use super::fold::{axis, bad, broadcast, broadcast_index, known_ints};
use super::proto::NodeProto;
use super::tensor::Constant;
use crate::error::Result;

fn unsupported(node: &NodeProto) -> crate::error::Error {
    bad(node, "computes with the batch index in a way that is not supported (only n·k + offsets)")
}

/// Evaluates `node` when one of its inputs is batch-indexed.
pub(super) fn fold(node: &NodeProto, inputs: &[Option<&Constant>], opset: i64) -> Result<Constant> {
    let input = |k: usize| -> Result<&Constant> {
        inputs.get(k).copied().flatten().ok_or_else(|| bad(node, format!("input {k} is missing")))
    };
    let x = input(0)?;
    match node.op_type.as_str() {
        "Identity" => Ok(x.clone()),
        "Cast" if x.batch_stride.is_some() => {
            let to = node.attribute.iter().find(|a| a.name == "to").map_or(1, |a| a.i);
            if matches!(to, 6 | 7) {
                Ok(x.clone())
            } else {
                Err(unsupported(node))
            }
        }
        "Unsqueeze" if x.batch_stride.is_some() => {
            let axes = if opset < 13 {
                super::fold::attr_ints(node, "axes").unwrap_or_default()
            } else {
                known_ints(node, input(1)?, "axes")?
            };
            let rank = x.dims.len() + axes.len();
            let mut axes: Vec<usize> = axes.iter().map(|&a| axis(node, a, rank)).collect::<Result<_>>()?;
            axes.sort_unstable();
            if axes.first() == Some(&0) {
                return Err(unsupported(node));
            }
            let mut dims = x.dims.clone();
            for a in axes {
                dims.insert(a.min(dims.len()), 1);
            }
            Ok(Constant { dims, ..x.clone() })
        }
        op @ ("Add" | "Sub" | "Mul") if inputs.len() == 2 => {
            let (a, b) = (input(0)?, input(1)?);
            let (t, c, t_first) = match (a.batch_stride, b.batch_stride) {
                (Some(_), None) => (a, b, true),
                (None, Some(_)) => (b, a, false),
                _ => return Err(unsupported(node)),
            };
            let stride = t.batch_stride.unwrap_or(0);
            let k = known_ints(node, c, "operand")?;
            if op == "Mul" {
                let [k] = k[..] else { return Err(unsupported(node)) };
                let ints = t.ints.iter().map(|v| v * k).collect();
                return Ok(Constant {
                    batch_stride: Some(stride * k),
                    ..Constant::from_ints(t.dims.clone(), ints)
                });
            }
            // The constant may not add a batch axis of its own (rank above the template's,
            // or a first axis other than 1).
            if c.dims.len() > t.dims.len() || (c.dims.len() == t.dims.len() && c.dims.first() != Some(&1)) {
                return Err(unsupported(node));
            }
            let dims = broadcast(node, &t.dims, &c.dims)?;
            let (it, ic) = (broadcast_index(&t.dims, &dims), broadcast_index(&c.dims, &dims));
            let (sign_t, sign_c) = match (op, t_first) {
                ("Add", _) => (1, 1),
                ("Sub", true) => (1, -1),
                _ => (-1, 1),
            };
            let ints = it.iter().zip(&ic).map(|(&i, &j)| sign_t * t.ints[i] + sign_c * k[j]).collect();
            Ok(Constant { batch_stride: Some(sign_t * stride), ..Constant::from_ints(dims, ints) })
        }
        _ => Err(unsupported(node)),
    }
}
