//! Convolution forward and backward for training, dense or perforated (METHOD.md §1):
//! the conv is evaluated at the mask positions only (on the CPU executor's kernels), the
//! dense output is formed through the interpolation map, and gradients flow back through
//! the map's transpose, so every interpolated copy of a value adds to its gradient. The
//! weight gradient is `weight_grad`'s (which on AVX2 and AVX-512 hands most convs to `weight_grad_cl`); the
//! input gradient `input_grad`'s (a transposed conv on the executor's kernels) at stride
//! 1, else `input_grad_cl`'s on AVX2 and AVX-512 where it applies, else `Wᵀ · dY` and col2im per
//! image.

// Tensor indices are bounded by validated geometries and `u32` masks.
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]

use std::sync::Arc;

use rayon::prelude::*;

use super::buffers;
use super::input_grad::input_grad;
use super::weight_grad::weight_grad;
use crate::cpu::fast::elementwise::Expansion;
use crate::cpu::gemm::{sgemm, GemmScratch, Microkernel, Strided};
use crate::cpu::FastConv;
use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::interp::{InterpMap, MapKind};
use crate::layer::ConvLayer;
use crate::mask::Mask;

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

/// Where each sampled output position starts reading the (unpadded) input:
/// `(y·stride_h − pad_top, x·stride_w − pad_left)` per mask entry.
fn origins(g: &ConvGeometry, positions: &[u32]) -> Vec<(isize, isize)> {
    let ow = g.out_w();
    positions
        .iter()
        .map(|&p| {
            let (y, x) = (p as usize / ow, p as usize % ow);
            ((y * g.stride_h) as isize - g.pad_top as isize, (x * g.stride_w) as isize - g.pad_left as isize)
        })
        .collect()
}

/// The output columns `lo..hi` of a row whose input column `x·stride + offset` lies
/// inside `0..width` (`offset` = tap offset − left padding).
fn valid_columns(ow: usize, stride: usize, offset: isize, width: usize) -> (usize, usize) {
    let s = stride as isize;
    let lo = if offset >= 0 { 0 } else { ((-offset) + s - 1) / s };
    let hi = if width as isize - offset <= 0 { 0 } else { (width as isize - offset + s - 1) / s };
    let hi = (hi as usize).min(ow);
    ((lo as usize).min(hi), hi)
}

/// The adjoint of im2col (columns `dcol[r][j]`, r = (channel of the group, ky, kx), j =
/// mask entry): `dx += col2im(dcol)` for one image and group.
fn col2im_add(g: &ConvGeometry, dcol: &[f32], group: usize, origins: &[(isize, isize)], dx: &mut [f32]) {
    let (cg, kh, kw) = (g.in_channels_per_group(), g.kernel_h, g.kernel_w);
    let n = origins.len();
    let plane = g.in_h * g.in_w;
    let (h, w) = (g.in_h as isize, g.in_w as isize);
    let (oh, ow) = (g.out_h(), g.out_w());
    let dense = n == oh * ow;
    let planes = &mut dx[group * cg * plane..(group + 1) * cg * plane];
    for (c, dst) in planes.chunks_exact_mut(plane).enumerate() {
        for k in 0..kh * kw {
            let (dy, dxo) = (((k / kw) * g.dilation_h) as isize, ((k % kw) * g.dilation_w) as isize);
            let row = &dcol[(c * kh * kw + k) * n..][..n];
            if dense {
                let off = dxo - g.pad_left as isize;
                let (lo, hi) = valid_columns(ow, g.stride_w, off, g.in_w);
                for (oy, vals) in row.chunks_exact(ow).enumerate() {
                    let yi = (oy * g.stride_h) as isize + dy - g.pad_top as isize;
                    if yi < 0 || yi >= h || lo >= hi {
                        continue;
                    }
                    let line = &mut dst[yi as usize * g.in_w..][..g.in_w];
                    let first = ((lo * g.stride_w) as isize + off) as usize;
                    for (j, &v) in vals[lo..hi].iter().enumerate() {
                        line[first + j * g.stride_w] += v;
                    }
                }
                continue;
            }
            for (&v, &(oy, ox)) in row.iter().zip(origins) {
                let (yi, xi) = (oy + dy, ox + dxo);
                if yi >= 0 && yi < h && xi >= 0 && xi < w {
                    dst[(yi * w + xi) as usize] += v;
                }
            }
        }
    }
}

/// `dst += Mᵀ · src` for one plane: the adjoint of expanding through `map`, each
/// position's gradient added to the compact values it was interpolated from.
fn spread_transposed(map: &InterpMap, src: &[f32], dst: &mut [f32]) {
    let table = map.table();
    match map.kind() {
        MapKind::Nearest => {
            for (&i, &d) in table.iter().zip(src) {
                dst[i as usize] += d;
            }
        }
        MapKind::Zeros => {
            for (&i, &d) in table.iter().zip(src) {
                if i != crate::interp::ZERO_TAP {
                    dst[i as usize] += d;
                }
            }
        }
        MapKind::Barycentric => {
            for (t, &d) in table.chunks_exact(6).zip(src) {
                for k in 0..3 {
                    let w = f32::from_bits(t[3 + k]);
                    // A tap of weight 0 contributes nothing (as in the forward).
                    if w != 0.0 {
                        dst[t[k] as usize] += w * d;
                    }
                }
            }
        }
    }
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

/// The conv as the inference executors see it: its mask and interpolation map, and the
/// current weights.
fn sampled_layer(g: &ConvGeometry, weights: &Arc<[f32]>, bias: &[f32], s: &Sampling) -> Result<ConvLayer> {
    // The weights are shared with the network, not copied.
    let layer = ConvLayer::new(*g, Arc::clone(weights), Some(bias.to_vec()))?;
    let mask = |positions: &[u32]| Mask::from_positions(g.out_h(), g.out_w(), positions.to_vec());
    match s {
        Sampling::Dense => Ok(layer),
        Sampling::Map { positions, map } => layer.with_mask_and_map(mask(positions)?, map.clone()),
        // The stride baseline's compact output is its (smaller) output map.
        Sampling::Grid { positions } => layer.with_mask(mask(positions)?, 0),
    }
}

/// Forward over the batch: `x` is `[B, C, H, W]`, the result `[B, T, out_size]`, through a
/// ReLU when `relu`. The sampled positions are computed by the CPU executor's own conv
/// kernels (`FastConv`), so training and inference share them; the map then fills the
/// skipped positions (and the ReLU follows the fill, which it need not commute with).
pub(crate) fn forward(
    g: &ConvGeometry,
    weights: &Arc<[f32]>,
    bias: &[f32],
    s: &Sampling,
    x: &[f32],
    relu: bool,
) -> Result<Vec<f32>> {
    let fill = matches!(s, Sampling::Map { .. });
    let layer = sampled_layer(g, weights, bias, s)?.with_relu(relu && !fill);
    let n = layer.mask().len();
    let mut compact = buffers::scratch(g.batch * g.out_channels * n);
    FastConv::new(&layer, Microkernel::detect()).run(x, &mut compact);
    let Sampling::Map { map, .. } = s else { return Ok(compact) };
    let (oh, ow) = (g.out_h(), g.out_w());
    let mut out = buffers::scratch(g.batch * g.out_channels * oh * ow);
    let expansion = Expansion::new(map.kind().code(), map.table(), oh * ow);
    out.par_chunks_mut(oh * ow).zip(compact.par_chunks(n)).for_each(|(dst, src)| {
        expansion.expand(src, dst);
        if relu {
            dst.iter_mut().for_each(|v| *v = crate::cpu::nan::relu_keep_nan(*v));
        }
    });
    buffers::recycle(compact);
    Ok(out)
}

/// Gradients of one conv: `(dx, dweights, dbias)` from `dy` (`[B, T, out_size]`).
pub(crate) fn backward(
    g: &ConvGeometry,
    weights: &[f32],
    s: &Sampling,
    x: &[f32],
    dy: &[f32],
    need_dx: bool,
) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
    let positions = s.positions(g);
    let n = positions.len();
    let origins = origins(g, &positions);
    let (oh, ow) = out_size(g, s);
    // dy through the map's transpose: the gradient of each computed value, `[B, T, n]`.
    let dyc: std::borrow::Cow<'_, [f32]> = match s {
        Sampling::Map { map, .. } => {
            // Zeroed plane by plane in the tasks that fill them (not in a serial pass first).
            let mut dyc = buffers::scratch(g.batch * g.out_channels * n);
            dyc.par_chunks_mut(n).zip(dy.par_chunks(oh * ow)).for_each(|(dst, src)| {
                dst.fill(0.0);
                spread_transposed(map, src, dst);
            });
            dyc.into()
        }
        _ => dy.into(),
    };
    // The input gradient: a transposed conv over dy (the gradients of the computed
    // positions in place, zeros elsewhere) at stride 1; else through col2im.
    let transposed =
        if need_dx && transposed_pays_off(g) && matches!(s, Sampling::Dense | Sampling::Map { .. }) {
            let spread: std::borrow::Cow<'_, [f32]> = if n == g.out_h() * g.out_w() {
                std::borrow::Cow::Borrowed(&dyc[..])
            } else {
                let mut full = buffers::scratch(g.batch * g.out_channels * g.out_h() * g.out_w());
                full.par_chunks_mut(g.out_h() * g.out_w()).zip(dyc.par_chunks(n)).for_each(|(dst, src)| {
                    dst.fill(0.0);
                    for (&p, &v) in positions.iter().zip(src) {
                        dst[p as usize] = v;
                    }
                });
                full.into()
            };
            let dx = input_grad(g, weights, &spread)?;
            if let std::borrow::Cow::Owned(v) = spread {
                buffers::recycle(v);
            }
            Some(dx)
        } else {
            None
        };
    let (dw, db) = weight_grad(g, x, &dyc, &positions);
    let dx = match transposed {
        Some(dx) => dx,
        #[cfg(target_arch = "x86_64")]
        None if need_dx && super::input_grad_cl::applies(g) => {
            super::input_grad_cl::input_grad_cl(g, weights, &dyc, &positions)
        }
        None if need_dx => dx_by_col2im(g, weights, &origins, &dyc),
        None => Vec::new(),
    };
    if let std::borrow::Cow::Owned(v) = dyc {
        buffers::recycle(v);
    }
    Ok((dx, dw, db))
}

/// Whether the input gradient runs as transposed convs (`input_grad`) rather than through
/// col2im: at stride 1, where it is one conv (16 -> 16 channels at 28x28, batch 64: 1.4
/// against 4.3 ms). A strided conv splits into one small conv per stride phase, measured
/// slower than col2im (16 -> 32 channels, 28x28 at stride 2: 2.5 against 1.7 ms).
fn transposed_pays_off(g: &ConvGeometry) -> bool {
    g.stride_h == 1 && g.stride_w == 1
}

/// The input gradient per image: `dcol = Wᵀ · dY` per group, then `col2im` (strided
/// convs, the stride baseline).
fn dx_by_col2im(g: &ConvGeometry, weights: &[f32], origins: &[(isize, isize)], dyc: &[f32]) -> Vec<f32> {
    let n = origins.len();
    let (k, tg) = (g.k_per_group(), g.out_channels_per_group());
    let in_len = g.in_channels * g.in_h * g.in_w;
    // Each image's gradient is zeroed by the task that accumulates it.
    let mut dx = buffers::scratch(g.batch * in_len);
    let kern = Microkernel::detect();
    let min_len = g.batch.div_ceil(4 * rayon::current_num_threads()).max(1);
    dx.par_chunks_mut(in_len).zip(dyc.par_chunks(g.out_channels * n)).with_min_len(min_len).for_each_init(
        || (vec![0.0f32; k * n], GemmScratch::default()),
        |(dcol, scratch), (dx, dyc)| {
            dx.fill(0.0);
            for group in 0..g.groups {
                let dyg = Strided { data: &dyc[group * tg * n..(group + 1) * tg * n], rs: n, cs: 1 };
                // dcol[k × n] = Wᵀ[k × tg] · dY[tg × n]
                let w_t = Strided { data: &weights[group * tg * k..(group + 1) * tg * k], rs: 1, cs: k };
                sgemm(&kern, (k, n, tg), w_t, dyg, dcol, n, false, scratch);
                col2im_add(g, dcol, group, origins, dx);
            }
        },
    );
    dx
}
