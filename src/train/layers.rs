//! Forward and backward of the layers other than convolutions, on dense NCHW tensors.
//! Every backward is the exact adjoint of its forward (checked by finite differences in
//! `tests/train_grad.rs`).

use rayon::prelude::*;

use super::buffers;

use crate::network::Lrn;
use crate::params::Pool2dParams;

/// The windows of a pooling step (`params`, as the forward ran it): per output position
/// the window clipped to the input, `(y0, y1, x0, x1)` in input coordinates, and the
/// average's divisor, from the inference kernel's own window arithmetic.
pub(crate) fn pool_windows(params: &Pool2dParams) -> Vec<(usize, usize, usize, usize, f32)> {
    let (pt, pl) = (params.pad_top as usize, params.pad_left as usize);
    crate::cpu::pool2d::pool_windows(params)
        .into_iter()
        .map(|(h0, h1, w0, w1, div)| {
            let (h0, h1, w0, w1) = (h0 as usize, h1 as usize, w0 as usize, w1 as usize);
            (h0 - pt, h1.max(h0) - pt, w0 - pl, w1.max(w0) - pl, div)
        })
        .collect()
}

/// The adjoint of pooling over `windows` (the forward is the inference kernel
/// `pool2d_fast`): an average spreads each gradient over its window; a maximum sends it
/// to the first position of the window holding the output `y` (from the forward input
/// `x`; the first NaN where the output is NaN), the position the maximum came from.
pub(crate) fn pool_backward(
    dy: &[f32],
    planes: usize,
    (h, w): (usize, usize),
    windows: &[(usize, usize, usize, usize, f32)],
    (x, y): (&[f32], &[f32]),
    avg: bool,
) -> Vec<f32> {
    let out_plane = windows.len();
    // Each plane is zeroed by the task that fills it, while it is in cache (not in a
    // serial pass over the whole gradient first).
    let mut dx = buffers::scratch(planes * h * w);
    dx.par_chunks_mut(h * w).enumerate().for_each(|(t, dst)| {
        dst.fill(0.0);
        let g = &dy[t * out_plane..(t + 1) * out_plane];
        let (src, out) = (&x[t * h * w..(t + 1) * h * w], &y[t * out_plane..(t + 1) * out_plane]);
        for (o, &(y0, y1, x0, x1, div)) in windows.iter().enumerate() {
            if avg {
                let share = g[o] / div;
                for yy in y0..y1 {
                    dst[yy * w + x0..yy * w + x1].iter_mut().for_each(|v| *v += share);
                }
                continue;
            }
            let m = out[o];
            'window: for yy in y0..y1 {
                for (xx, &v) in src[yy * w + x0..yy * w + x1].iter().enumerate() {
                    if v == m || (m.is_nan() && v.is_nan()) {
                        dst[yy * w + x0 + xx] += g[o];
                        break 'window;
                    }
                }
            }
        }
    });
    dx
}

/// The scale of LRN across channels (ONNX; the forward is the inference kernel
/// `cpu::lrn`, `y_c = x_c · s_c^(−β)`): `s_c = bias + α/size · Σ_{j∈N(c)} x_j²`, for the
/// backward.
pub(crate) fn lrn_scale(x: &[f32], batch: usize, channels: usize, plane: usize, l: &Lrn) -> Vec<f32> {
    let mut s = buffers::zeroed(x.len());
    let (lo, hi) = ((l.size - 1) / 2, l.size / 2);
    #[allow(clippy::cast_precision_loss)]
    let scale = l.alpha / l.size as f32;
    s.par_chunks_mut(channels * plane).zip(x.par_chunks(channels * plane)).take(batch).for_each(|(s, x)| {
        for c in 0..channels {
            for p in 0..plane {
                let sum: f32 = (c.saturating_sub(lo)..=(c + hi).min(channels - 1))
                    .map(|j| x[j * plane + p].powi(2))
                    .sum();
                s[c * plane + p] = l.bias + scale * sum;
            }
        }
    });
    s
}

/// The adjoint of LRN, from its scale `s` ([`lrn_scale`]):
/// `dx_j = dy_j s_j^(−β) − 2αβ/size · x_j Σ_{c: j∈N(c)} dy_c x_c s_c^(−β−1)`.
pub(crate) fn lrn_backward(
    x: &[f32],
    s: &[f32],
    dy: &[f32],
    channels: usize,
    plane: usize,
    l: &Lrn,
) -> Vec<f32> {
    let (lo, hi) = ((l.size - 1) / 2, l.size / 2);
    #[allow(clippy::cast_precision_loss)]
    let k = 2.0 * l.alpha * l.beta / l.size as f32;
    let mut dx = buffers::zeroed(x.len());
    let n = channels * plane;
    dx.par_chunks_mut(n).enumerate().for_each(|(b, dx)| {
        let (x, s, dy) = (&x[b * n..(b + 1) * n], &s[b * n..(b + 1) * n], &dy[b * n..(b + 1) * n]);
        let t: Vec<f32> = (0..n).map(|i| dy[i] * x[i] * s[i].powf(-l.beta - 1.0)).collect();
        for j in 0..channels {
            // c with j in N(c): c - lo <= j <= c + hi  <=>  j - hi <= c <= j + lo.
            for p in 0..plane {
                let sum: f32 =
                    (j.saturating_sub(hi)..=(j + lo).min(channels - 1)).map(|c| t[c * plane + p]).sum();
                let i = j * plane + p;
                dx[i] = dy[i] * s[i].powf(-l.beta) - k * x[i] * sum;
            }
        }
    });
    dx
}

/// `y[b] = W x[b] + bias`, W `[out, in]`.
pub(crate) fn linear_forward(x: &[f32], batch: usize, w: &[f32], bias: &[f32], out: usize) -> Vec<f32> {
    let inp = x.len() / batch;
    let mut y = vec![0.0f32; batch * out];
    let xv = ndarray::ArrayView2::from_shape((batch, inp), x).expect("linear input");
    let wv = ndarray::ArrayView2::from_shape((out, inp), w).expect("linear weights");
    let mut yv = ndarray::ArrayViewMut2::from_shape((batch, out), &mut y[..]).expect("linear output");
    ndarray::linalg::general_mat_mul(1.0, &xv, &wv.t(), 0.0, &mut yv);
    for row in y.chunks_exact_mut(out) {
        row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
    }
    y
}

/// Linear backward: `(dx, dW, dbias)`.
pub(crate) fn linear_backward(
    x: &[f32],
    dy: &[f32],
    batch: usize,
    w: &[f32],
    out: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let inp = x.len() / batch;
    let xv = ndarray::ArrayView2::from_shape((batch, inp), x).expect("linear input");
    let dyv = ndarray::ArrayView2::from_shape((batch, out), dy).expect("linear grad");
    let wv = ndarray::ArrayView2::from_shape((out, inp), w).expect("linear weights");
    let dx = dyv.dot(&wv).into_raw_vec_and_offset().0;
    let dw = dyv.t().dot(&xv).as_standard_layout().to_owned().into_raw_vec_and_offset().0;
    let db = (0..out).map(|o| (0..batch).map(|b| dy[b * out + o]).sum()).collect();
    (dx, dw, db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    /// Pooling's adjoint by the definition, window by window (f64 sums).
    fn reference(dy: &[f32], p: &Pool2dParams, x: &[f32], avg: bool) -> (Vec<f64>, Vec<f32>) {
        let (h, w, o) = (p.in_h as usize, p.in_w as usize, (p.out_h * p.out_w) as usize);
        let windows = crate::cpu::pool2d::pool_windows(p);
        let (pt, pl) = (p.pad_top as usize, p.pad_left as usize);
        let mut dx = vec![0.0f64; p.planes as usize * h * w];
        let mut y = vec![0.0f32; p.planes as usize * o];
        for t in 0..p.planes as usize {
            for (k, &(h0, h1, w0, w1, div)) in windows.iter().enumerate() {
                let cells: Vec<usize> = (h0 as usize..h1 as usize)
                    .flat_map(|r| (w0 as usize..w1 as usize).map(move |c| (r - pt) * w + c - pl))
                    .collect();
                let src = &x[t * h * w..][..h * w];
                let g = f64::from(dy[t * o + k]);
                if avg {
                    cells.iter().for_each(|&i| dx[t * h * w + i] += g / f64::from(div));
                    continue;
                }
                let m = if cells.iter().any(|&i| src[i].is_nan()) {
                    f32::NAN
                } else {
                    cells.iter().map(|&i| src[i]).fold(f32::NEG_INFINITY, f32::max)
                };
                y[t * o + k] = m;
                if let Some(&i) = cells.iter().find(|&&i| src[i] == m || (m.is_nan() && src[i].is_nan())) {
                    dx[t * h * w + i] += g;
                }
            }
        }
        (dx, y)
    }

    #[test]
    #[allow(clippy::cast_possible_truncation)]
    fn pooling_backward_matches_the_definition() {
        let mut rng = SeededRng::new(7);
        // (planes, h, w, kernel, stride, pads tlbr, ceil: extra output row/column, include pad)
        let cases = [
            (3, 9, 11, [3, 3], [2, 2], [0, 0, 0, 0], 0, false),
            (2, 10, 10, [3, 3], [2, 2], [1, 1, 1, 1], 1, false),
            (2, 7, 12, [2, 3], [1, 3], [0, 1, 1, 2], 0, true),
            (4, 8, 8, [2, 2], [2, 2], [0, 0, 0, 0], 0, false),
            (1, 13, 6, [5, 2], [3, 1], [2, 0, 2, 1], 1, true),
        ];
        for (planes, h, w, [kh, kw], [sh, sw], [pt, pl, pb, pr], extra, include_pad) in cases {
            let (oh, ow) = ((h + pt + pb - kh) / sh + 1 + extra, (w + pl + pr - kw) / sw + 1 + extra);
            let p = Pool2dParams {
                planes,
                in_h: h as u32,
                in_w: w as u32,
                in_plane: (h * w) as u32,
                out_h: oh as u32,
                out_w: ow as u32,
                kernel_h: kh as u32,
                kernel_w: kw as u32,
                stride_h: sh as u32,
                stride_w: sw as u32,
                pad_top: pt as u32,
                pad_left: pl as u32,
                pad_bottom: pb as u32,
                pad_right: pr as u32,
                count_include_pad: u32::from(include_pad),
                ..Pool2dParams::default()
            };
            // Coarse values, so that windows share their maximum (ties), and a NaN.
            let mut x: Vec<f32> =
                rng.vec_f32(planes as usize * h * w, -4.0, 4.0).iter().map(|v| v.round()).collect();
            x[5] = f32::NAN;
            let dy = rng.vec_f32(planes as usize * oh * ow, -1.0, 1.0);
            for avg in [false, true] {
                let (want, y) = reference(&dy, &p, &x, avg);
                let windows = pool_windows(&p);
                let got = pool_backward(&dy, planes as usize, (h, w), &windows, (&x, &y), avg);
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!((f64::from(*a) - b).abs() <= 1e-5, "avg {avg} {p:?}: dx[{i}] = {a}, want {b}");
                }
            }
        }
    }
}
