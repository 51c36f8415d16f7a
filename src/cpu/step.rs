//! One plan step on the CPU: the kernel each [`StepOp`] launches, for the executor and
//! for the training forward, which runs the same lowered steps (`plan::lower_layer`).

use std::sync::Arc;

use super::fast::elementwise::{binary_fast, gather_fast, unary_fast};
use super::fast::matmul_strided::matmul_strided_fast;
use super::fast::pool::pool2d_fast;
use super::{
    add, binary, channel_affine, clip, gather_interp, lrn, matmul_strided, pool2d, reduce_channels, relu,
    resample, select_channels, select_elements, softmax, strided_copy, unary,
};
use crate::interp::InterpMap;
use crate::plan::StepOp;

/// The index table of an optional input map (empty for a dense input).
fn table(map: &Option<Arc<InterpMap>>) -> &[u32] {
    map.as_ref().map_or(&[], |m| m.table())
}

/// Runs `op` on its `n_args` inputs (`arg(k)`, in the step's order, each exactly its
/// tensor's length) into `dst`, over `images` images: the fast kernels when `fast`, else
/// the reference twins. Returns false, touching nothing, for a conv step: convs keep
/// per-layer state (packed weights, a fast kernel) that their caller owns.
pub(crate) fn run_op<'a>(
    op: &StepOp,
    n_args: usize,
    arg: &impl Fn(usize) -> &'a [f32],
    images: usize,
    dst: &mut [f32],
    fast: bool,
) -> bool {
    match op {
        StepOp::Conv { .. } => return false,
        StepOp::Gather { params, map } => {
            let addend = if params.residual == 1 { arg(1) } else { &[] };
            if fast {
                gather_fast(params, arg(0), map.table(), addend, dst);
            } else {
                gather_interp(params, arg(0), map.table(), addend, dst);
            }
        }
        StepOp::Pool { params, in_map } if fast => pool2d_fast(params, arg(0), in_map.as_deref(), dst),
        StepOp::Pool { params, in_map } => pool2d(params, arg(0), table(in_map), dst),
        StepOp::Lrn(p) => lrn(p, arg(0), dst),
        StepOp::Relu(p) => relu(p, arg(0), dst),
        StepOp::Clip(p) => clip(p, arg(0), dst),
        StepOp::Add(p) => add(p, arg(0), arg(1), dst),
        StepOp::Affine { params, scale, shift } => channel_affine(params, arg(0), scale, shift, dst),
        StepOp::Softmax(p) => softmax(p, arg(0), dst),
        StepOp::StridedCopy(p) => strided_copy(p, arg(0), dst),
        StepOp::Constant { params, values } => strided_copy(params, values, dst),
        StepOp::MatmulStrided(p) if fast => matmul_strided_fast(p, arg(0), arg(1), dst),
        StepOp::MatmulStrided(p) => matmul_strided(p, arg(0), arg(1), dst),
        StepOp::Unary(p) if fast => unary_fast(p, arg(0), dst),
        StepOp::Unary(p) => unary(p, arg(0), dst),
        StepOp::Binary(p) if fast => binary_fast(p, arg(0), arg(1), dst),
        StepOp::Binary(p) => binary(p, arg(0), arg(1), dst),
        StepOp::SelectChannels { params, channels } => select_channels(params, arg(0), channels, dst),
        StepOp::ReduceChannels(p) => reduce_channels(p, arg(0), dst),
        StepOp::Resample { params, index, weight } => resample(params, arg(0), index, weight, dst),
        StepOp::SelectElements(p) => select_elements(p, arg(0), arg(1), arg(2), dst),
        StepOp::Concat => concat(n_args, arg, &|k| arg(k).len(), images, &[], dst),
    }
    true
}

/// Channel concatenation: each image of `dst` is the `n` parts' images (`parts(k)`, of
/// `len(k)` values over all images) one after another. Parts flagged in `in_place` are
/// already where they belong: they are neither read nor copied.
pub(crate) fn concat<'a>(
    n: usize,
    parts: &impl Fn(usize) -> &'a [f32],
    len: &impl Fn(usize) -> usize,
    images: usize,
    in_place: &[bool],
    dst: &mut [f32],
) {
    let image = dst.len() / images.max(1);
    let mut offset = 0;
    for k in 0..n {
        let part = len(k) / images.max(1);
        if !in_place.get(k).is_some_and(|&done| done) {
            for (b, src) in parts(k).chunks_exact(part).enumerate() {
                dst[b * image + offset..b * image + offset + part].copy_from_slice(src);
            }
        }
        offset += part;
    }
}
