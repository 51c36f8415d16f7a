//! Convolution forward and backward for training, dense or perforated (METHOD.md §1):
//! the conv is evaluated at the mask positions only (im2col + GEMM per image and group),
//! the dense output is formed through the interpolation map, and gradients flow back
//! through the map's transpose, so every interpolated copy of a value adds to its gradient.

// Tensor indices are bounded by validated geometries and `u32` masks.
#![allow(clippy::cast_possible_truncation)]

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

use crate::geometry::ConvGeometry;
use crate::interp::InterpMap;

/// How a conv's outputs are produced: every position, or a mask and what fills the rest.
#[derive(Clone, Debug)]
pub(crate) enum Sampling {
    /// Every output position.
    Dense,
    /// The mask positions, spread over the full map through the interpolation map.
    Map { positions: Vec<u32>, map: InterpMap },
    /// The stride baseline: the mask positions form the (smaller) output map itself.
    Grid { positions: Vec<u32> },
}

impl Sampling {
    fn positions(&self, g: &ConvGeometry) -> Vec<u32> {
        match self {
            Sampling::Dense => (0..(g.out_h() * g.out_w()) as u32).collect(),
            Sampling::Map { positions, .. } | Sampling::Grid { positions } => positions.clone(),
        }
    }
}

/// Columns `col[r][j]`, r = (channel of the group, ky, kx), j = mask entry, of one image.
fn im2col(g: &ConvGeometry, x: &[f32], group: usize, positions: &[u32], col: &mut [f32]) {
    let (cg, kh, kw) = (g.in_channels_per_group(), g.kernel_h, g.kernel_w);
    let n = positions.len();
    let plane = g.in_h * g.in_w;
    col.par_chunks_mut(n).enumerate().for_each(|(r, row)| {
        let (c, ky, kx) = (group * cg + r / (kh * kw), (r / kw) % kh, r % kw);
        let src = &x[c * plane..(c + 1) * plane];
        for (v, &p) in row.iter_mut().zip(positions) {
            let (y, xo) = (p as usize / g.out_w(), p as usize % g.out_w());
            let yi = (y * g.stride_h + ky * g.dilation_h).wrapping_sub(g.pad_top);
            let xi = (xo * g.stride_w + kx * g.dilation_w).wrapping_sub(g.pad_left);
            *v = if yi < g.in_h && xi < g.in_w { src[yi * g.in_w + xi] } else { 0.0 };
        }
    });
}

/// The adjoint of [`im2col`]: `dx += col2im(dcol)`.
fn col2im_add(g: &ConvGeometry, dcol: &[f32], group: usize, positions: &[u32], dx: &mut [f32]) {
    let (cg, kh, kw) = (g.in_channels_per_group(), g.kernel_h, g.kernel_w);
    let n = positions.len();
    let plane = g.in_h * g.in_w;
    // Channels are disjoint, so channel planes of dx are written in parallel.
    dx[group * cg * plane..(group + 1) * cg * plane].par_chunks_mut(plane).enumerate().for_each(
        |(c, dst)| {
            for k in 0..kh * kw {
                let (ky, kx) = (k / kw, k % kw);
                let row = &dcol[(c * kh * kw + k) * n..(c * kh * kw + k + 1) * n];
                for (&v, &p) in row.iter().zip(positions) {
                    let (y, xo) = (p as usize / g.out_w(), p as usize % g.out_w());
                    let yi = (y * g.stride_h + ky * g.dilation_h).wrapping_sub(g.pad_top);
                    let xi = (xo * g.stride_w + kx * g.dilation_w).wrapping_sub(g.pad_left);
                    if yi < g.in_h && xi < g.in_w {
                        dst[yi * g.in_w + xi] += v;
                    }
                }
            }
        },
    );
}

/// A map's taps flattened once per call: position p reads `taps[start[p]..start[p + 1]]`.
struct Taps {
    start: Vec<usize>,
    taps: Vec<(usize, f32)>,
}

impl Taps {
    fn new(map: &InterpMap) -> Self {
        let mut start = vec![0];
        let mut taps = Vec::new();
        for p in 0..map.height() * map.width() {
            taps.extend(map.taps(p).into_iter().filter(|t| t.1 != 0.0));
            start.push(taps.len());
        }
        Taps { start, taps }
    }

    fn of(s: &Sampling) -> Option<Self> {
        match s {
            Sampling::Map { map, .. } => Some(Taps::new(map)),
            _ => None,
        }
    }

    fn at(&self, p: usize) -> &[(usize, f32)] {
        &self.taps[self.start[p]..self.start[p + 1]]
    }
}

fn view(data: &[f32], rows: usize, cols: usize) -> ArrayView2<'_, f32> {
    ArrayView2::from_shape((rows, cols), data).expect("validated GEMM operand")
}

fn view_mut(data: &mut [f32], rows: usize, cols: usize) -> ArrayViewMut2<'_, f32> {
    ArrayViewMut2::from_shape((rows, cols), data).expect("validated GEMM operand")
}

/// Output map size of a sampled conv.
pub(crate) fn out_size(g: &ConvGeometry, s: &Sampling) -> (usize, usize) {
    match s {
        Sampling::Grid { positions } => {
            let w = g.out_w() as u32;
            let rows = positions.iter().map(|p| p / w).collect::<std::collections::BTreeSet<_>>().len();
            (rows, positions.len() / rows)
        }
        _ => (g.out_h(), g.out_w()),
    }
}

/// Forward over the batch: `x` is `[B, C, H, W]`, the result `[B, T, out_size]`.
pub(crate) fn forward(g: &ConvGeometry, weights: &[f32], bias: &[f32], s: &Sampling, x: &[f32]) -> Vec<f32> {
    let positions = s.positions(g);
    let n = positions.len();
    let (k, tg) = (g.k_per_group(), g.out_channels_per_group());
    let (oh, ow) = out_size(g, s);
    let in_len = g.in_channels * g.in_h * g.in_w;
    let out_len = g.out_channels * oh * ow;
    let taps = Taps::of(s);
    let mut out = vec![0.0f32; g.batch * out_len];
    out.par_chunks_mut(out_len).zip(x.par_chunks(in_len)).for_each(|(y, x)| {
        let mut col = vec![0.0f32; k * n];
        let mut compact = vec![0.0f32; g.out_channels * n];
        for group in 0..g.groups {
            im2col(g, x, group, &positions, &mut col);
            let w = view(&weights[group * tg * k..(group + 1) * tg * k], tg, k);
            let mut c = view_mut(&mut compact[group * tg * n..(group + 1) * tg * n], tg, n);
            general_mat_mul(1.0, &w, &view(&col, k, n), 0.0, &mut c);
        }
        for (t, row) in compact.chunks_exact_mut(n).enumerate() {
            row.iter_mut().for_each(|v| *v += bias[t]);
        }
        match &taps {
            Some(taps) => {
                for (t, dst) in y.chunks_exact_mut(oh * ow).enumerate() {
                    let src = &compact[t * n..(t + 1) * n];
                    for (p, v) in dst.iter_mut().enumerate() {
                        *v = taps.at(p).iter().map(|&(i, w)| w * src[i]).sum();
                    }
                }
            }
            None => y.copy_from_slice(&compact),
        }
    });
    out
}

/// Gradients of one conv: `(dx, dweights, dbias)` from `dy` (`[B, T, out_size]`).
pub(crate) fn backward(
    g: &ConvGeometry,
    weights: &[f32],
    s: &Sampling,
    x: &[f32],
    dy: &[f32],
    need_dx: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let positions = s.positions(g);
    let n = positions.len();
    let (k, tg) = (g.k_per_group(), g.out_channels_per_group());
    let (oh, ow) = out_size(g, s);
    let in_len = g.in_channels * g.in_h * g.in_w;
    let out_len = g.out_channels * oh * ow;
    let mut dx = vec![0.0f32; if need_dx { g.batch * in_len } else { 0 }];
    let taps = Taps::of(s);
    let zero = || (vec![0.0f32; weights.len()], vec![0.0f32; g.out_channels]);
    let per_image = |(x, dy): (&[f32], &[f32]), dx: Option<&mut [f32]>, acc: &mut (Vec<f32>, Vec<f32>)| {
        // dy through the map's transpose: the gradient of each computed value.
        let dyc: Vec<f32> = match &taps {
            Some(taps) => {
                let mut dyc = vec![0.0f32; g.out_channels * n];
                for (t, src) in dy.chunks_exact(oh * ow).enumerate() {
                    let dst = &mut dyc[t * n..(t + 1) * n];
                    for (p, &d) in src.iter().enumerate() {
                        for &(i, w) in taps.at(p) {
                            dst[i] += w * d;
                        }
                    }
                }
                dyc
            }
            None => dy.to_vec(),
        };
        for (t, row) in dyc.chunks_exact(n).enumerate() {
            acc.1[t] += row.iter().sum::<f32>();
        }
        let mut col = vec![0.0f32; k * n];
        let mut dcol = vec![0.0f32; k * n];
        let mut dx = dx;
        for group in 0..g.groups {
            im2col(g, x, group, &positions, &mut col);
            let dyg = view(&dyc[group * tg * n..(group + 1) * tg * n], tg, n);
            let mut dw = view_mut(&mut acc.0[group * tg * k..(group + 1) * tg * k], tg, k);
            general_mat_mul(1.0, &dyg, &view(&col, k, n).t(), 1.0, &mut dw);
            if let Some(dx) = dx.as_deref_mut() {
                let w = view(&weights[group * tg * k..(group + 1) * tg * k], tg, k);
                general_mat_mul(1.0, &w.t(), &dyg, 0.0, &mut view_mut(&mut dcol, k, n));
                col2im_add(g, &dcol, group, &positions, dx);
            }
        }
    };
    let pairs = x.par_chunks(in_len).zip(dy.par_chunks(out_len));
    let (dw, db) = if need_dx {
        pairs
            .zip(dx.par_chunks_mut(in_len))
            .fold(zero, |mut acc, (xy, dx)| {
                per_image(xy, Some(dx), &mut acc);
                acc
            })
            .reduce(zero, add_pair)
    } else {
        pairs
            .fold(zero, |mut acc, xy| {
                per_image(xy, None, &mut acc);
                acc
            })
            .reduce(zero, add_pair)
    };
    (dx, dw, db)
}

fn add_pair(mut a: (Vec<f32>, Vec<f32>), b: (Vec<f32>, Vec<f32>)) -> (Vec<f32>, Vec<f32>) {
    a.0.iter_mut().zip(&b.0).for_each(|(x, y)| *x += y);
    a.1.iter_mut().zip(&b.1).for_each(|(x, y)| *x += y);
    a
}
