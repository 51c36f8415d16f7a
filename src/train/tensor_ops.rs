//! Backward passes of the layers over tensors of any rank (`Op::Strided`, `Op::MatMul`)
//! and of the channel softmax; their forward passes are the executors' CPU twins.

use super::buffers;
use super::tape::Tensor;
use crate::params::{MatmulStridedParams, SoftmaxParams, StridedCopyParams};
use crate::plan::StepOp;

/// Gradient of `strided_copy` with respect to its input (`in_image` elements per image):
/// each output gradient is added where its value was read (a broadcast sums).
pub(crate) fn strided_backward(p: &StridedCopyParams, dy: &[f32], in_image: usize) -> Vec<f32> {
    let images = p.images as usize;
    let mut dx = vec![0.0f32; images * in_image];
    let axes = p.axes().map(|(d, s)| (d as usize, s as usize));
    let out_image = p.out_image as usize;
    for img in 0..images {
        let dst = &mut dx[img * in_image..(img + 1) * in_image];
        for (i, &g) in dy[img * out_image..(img + 1) * out_image].iter().enumerate() {
            let mut rest = i;
            let mut at = p.offset as usize;
            for &(d, s) in axes.iter().rev() {
                at += (rest % d) * s;
                rest /= d;
            }
            dst[at] += g;
        }
    }
    dx
}

/// Gradients of `matmul_strided` with respect to both operands: `dA = dC Bᵀ`,
/// `dB = Aᵀ dC`, accumulated through the operands' strides (a broadcast operand sums).
pub(crate) fn matmul_backward(
    p: &MatmulStridedParams,
    a: &[f32],
    b: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let u = |v: u32| v as usize;
    let images = u(p.images);
    let mut da = vec![0.0f32; images * u(p.a_image)];
    let mut db = vec![0.0f32; images * u(p.b_image)];
    for img in 0..images {
        let (ai, bi, oi) = (img * u(p.a_image), img * u(p.b_image), img * u(p.out_image));
        for i in 0..u(p.b0) {
            for j in 0..u(p.b1) {
                let a0 = ai + i * u(p.a_b0) + j * u(p.a_b1);
                let b0 = bi + i * u(p.b_b0) + j * u(p.b_b1);
                let o0 = oi + i * u(p.o_b0) + j * u(p.o_b1);
                for r in 0..u(p.m) {
                    for c in 0..u(p.n) {
                        let g = dy[o0 + r * u(p.o_m) + c * u(p.o_n)];
                        if g == 0.0 {
                            continue;
                        }
                        for t in 0..u(p.k) {
                            let (ia, ib) =
                                (a0 + r * u(p.a_m) + t * u(p.a_k), b0 + t * u(p.b_k) + c * u(p.b_n));
                            da[ia] += g * b[ib];
                            db[ib] += g * a[ia];
                        }
                    }
                }
            }
        }
    }
    (da, db)
}

/// Gradient of the channel softmax `y` with respect to its input:
/// `dx_c = y_c (dy_c − Σ_j dy_j y_j)` at each position.
pub(crate) fn softmax_backward(p: &SoftmaxParams, y: &[f32], dy: &[f32]) -> Vec<f32> {
    let (cols, plane) = (p.cols as usize, p.plane.max(1) as usize);
    let mut dx = vec![0.0f32; dy.len()];
    for img in 0..p.rows as usize {
        let base = img * cols * plane;
        for q in 0..plane {
            let at = |c: usize| base + c * plane + q;
            let dot: f32 = (0..cols).map(|c| dy[at(c)] * y[at(c)]).sum();
            for c in 0..cols {
                dx[at(c)] = y[at(c)] * (dy[at(c)] - dot);
            }
        }
    }
    dx
}

/// Backward pass of a layer lowered to one `strided_copy` or `matmul_strided` step (`op`,
/// with the params the forward ran): the gradient of the first input `x` and, for a
/// product, of the second (`other`). None for any other step.
pub(crate) fn tensor_backward(
    op: &StepOp,
    x: &Tensor,
    other: Option<&Tensor>,
    dy: &[f32],
) -> Option<(Vec<f32>, Option<Vec<f32>>)> {
    let [_, ch, h, w] = x.shape;
    Some(match op {
        StepOp::StridedCopy(p) => (strided_backward(p, dy, ch * h * w), None),
        // Constant values: no gradient reaches the input, which only set the batch.
        StepOp::Constant { .. } => (buffers::zeroed(x.data.len()), None),
        StepOp::MatmulStrided(p) => {
            let (da, db) = matmul_backward(p, &x.data, &other?.data, dy);
            (da, Some(db))
        }
        _ => return None,
    })
}
