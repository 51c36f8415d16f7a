//! Backward passes of the layers over tensors of any rank (`Op::Strided`, `Op::MatMul`)
//! and of the channel softmax; their forward passes are the executors' CPU twins.

use super::buffers;
use super::tape::Tensor;
use crate::error::{Error, Result};
use crate::network::{Layer, Op};
use crate::params::{MatmulStridedParams, SoftmaxParams, StridedCopyParams};
use crate::plan::{in_layer, matmul_params, strided_params};

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

/// Forward pass of `Reshape`, `Strided`, `Constant` and `MatMul` (`other`: the second
/// input of a `MatMul`) on the executors' CPU twins.
pub(crate) fn tensor_forward(layer: &Layer, x: &Tensor, other: Option<&Tensor>) -> Result<Tensor> {
    let [b, ch, h, w] = x.shape;
    let missing = || Error::InvalidArgument(format!("layer '{}' (matmul) needs two inputs", layer.name));
    Ok(match &layer.op {
        Op::Reshape { shape: [c, oh, ow] } => {
            if c * oh * ow != ch * h * w {
                return Err(Error::InvalidArgument(format!(
                    "layer '{}' views {ch}x{h}x{w} as {c}x{oh}x{ow}",
                    layer.name
                )));
            }
            Tensor { shape: [b, *c, *oh, *ow], data: x.data.clone() }
        }
        Op::Strided(v) => {
            let image = ch * h * w;
            in_layer(layer, v.validate(image))?;
            let params = in_layer(layer, strided_params(v, b, image))?;
            let mut y = buffers::scratch(b * v.dims.iter().product::<usize>());
            crate::cpu::strided_copy(&params, &x.data, &mut y);
            let [c, oh, ow] = v.shape;
            Tensor { shape: [b, c, oh, ow], data: y }
        }
        Op::Constant { shape: [c, oh, ow], values } => {
            let mut y = Vec::with_capacity(b * values.len());
            for _ in 0..b {
                y.extend_from_slice(values);
            }
            if values.len() != c * oh * ow {
                return Err(Error::InvalidArgument(format!(
                    "layer '{}': {} values for a {c}x{oh}x{ow} constant",
                    layer.name,
                    values.len()
                )));
            }
            Tensor { shape: [b, *c, *oh, *ow], data: y }
        }
        Op::MatMul(mm) => {
            let other = other.ok_or_else(missing)?;
            let (a_len, b_len) = (ch * h * w, other.data.len() / b.max(1));
            in_layer(layer, mm.validate(a_len, b_len))?;
            let params = in_layer(layer, matmul_params(mm, b, a_len, b_len))?;
            let mut y = buffers::scratch(b * mm.out_len());
            crate::cpu::matmul_strided(&params, &x.data, &other.data, &mut y);
            let [c, oh, ow] = mm.shape;
            Tensor { shape: [b, c, oh, ow], data: y }
        }
        _ => return Err(Error::InvalidArgument(format!("layer '{}' is not a tensor layer", layer.name))),
    })
}

/// Backward pass of `Strided`, `Constant` and `MatMul`: the gradient of the first input
/// and, for a `MatMul`, of the second.
pub(crate) fn tensor_backward(
    layer: &Layer,
    x: &Tensor,
    other: Option<&Tensor>,
    dy: &[f32],
) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
    let [b, ch, h, w] = x.shape;
    let image = ch * h * w;
    Ok(match &layer.op {
        Op::Strided(v) => {
            let params = in_layer(layer, strided_params(v, b, image))?;
            (strided_backward(&params, dy, image), None)
        }
        // Constant values: no gradient reaches the input, which only set the batch.
        Op::Constant { .. } => (buffers::zeroed(x.data.len()), None),
        Op::MatMul(mm) => {
            let other = other.ok_or_else(|| {
                Error::InvalidArgument(format!("layer '{}' (matmul) needs two inputs", layer.name))
            })?;
            let b_len = other.data.len() / b.max(1);
            let params = in_layer(layer, matmul_params(mm, b, image, b_len))?;
            let (da, db) = matmul_backward(&params, &x.data, &other.data, dy);
            (da, Some(db))
        }
        _ => return Err(Error::InvalidArgument(format!("layer '{}' is not a tensor layer", layer.name))),
    })
}
