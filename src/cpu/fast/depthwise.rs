//! Depthwise convolution (groups = input channels, one input channel per group) as a
//! direct kernel: each output plane is `kh·kw` scaled copies of its input plane, summed.
//!
//! Dense input and dense mask (the common case): per output row and kernel offset, the
//! columns whose tap lies inside the input form one range, so the inner loop is a
//! `y[x] += w · in[x·sx + off]` over that range (contiguous for stride 1, vectorised).
//! Otherwise (perforated output or compact input) every position reads through the
//! per-layer tap table. Work: one task per (image, channel) block, one parallel region.

use rayon::prelude::*;

use super::taps::{Taps, PAD};
use super::SendPtr;
use crate::cpu::read_mapped;
use crate::geometry::ConvGeometry;
use crate::layer::ConvLayer;

/// A depthwise convolution.
#[derive(Debug)]
pub(crate) struct Depthwise {
    g: ConvGeometry,
    /// Output channels per input channel (the depth multiplier).
    mult: usize,
    weights: Vec<f32>,
    bias: Vec<f32>,
    relu: bool,
    plane: usize,
    /// Dense input and dense mask: the row-range path applies.
    direct: bool,
    taps: Taps,
}

impl Depthwise {
    /// Whether `layer` is depthwise (one input channel per group).
    pub fn applies(layer: &ConvLayer) -> bool {
        let g = layer.geometry();
        g.groups > 1 && g.in_channels_per_group() == 1
    }

    pub fn new(layer: &ConvLayer, relu: bool) -> Self {
        let g = *layer.geometry();
        Depthwise {
            g,
            mult: g.out_channels_per_group(),
            weights: layer.weights().to_vec(),
            bias: layer.bias().to_vec(),
            relu,
            plane: layer.input_plane(),
            direct: layer.input_map().is_none() && layer.mask().is_dense(),
            taps: Taps::new(layer),
        }
    }

    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        let g = &self.g;
        let n_pos = self.taps.n_pos;
        let planes = g.batch * g.out_channels;
        assert!(out.len() >= planes * n_pos, "conv output buffer too small");
        let out = SendPtr(out.as_mut_ptr());
        // About 8 tasks per thread; each a run of whole output planes.
        let per_task = planes.div_ceil(8 * rayon::current_num_threads()).max(1);
        let body = |t: usize| {
            for p in t * per_task..((t + 1) * per_task).min(planes) {
                let (img, o) = (p / g.out_channels, p % g.out_channels);
                let ci = o / self.mult;
                let src = &x[(img * g.in_channels + ci) * self.plane..][..self.plane];
                // SAFETY: plane p of the [B, T, N] output belongs to this iteration only.
                let dst = unsafe { std::slice::from_raw_parts_mut(out.ptr().add(p * n_pos), n_pos) };
                let w = &self.weights[o * g.kernel_h * g.kernel_w..(o + 1) * g.kernel_h * g.kernel_w];
                dst.fill(self.bias[o]);
                if self.direct {
                    self.plane_direct(src, w, dst);
                } else {
                    self.plane_taps(src, w, dst);
                }
                if self.relu {
                    for v in dst.iter_mut() {
                        *v = v.max(0.0);
                    }
                }
            }
        };
        let tasks = planes.div_ceil(per_task);
        if planes * n_pos * g.kernel_h * g.kernel_w < 1 << 20 {
            (0..tasks).for_each(body);
        } else {
            (0..tasks).into_par_iter().for_each(body);
        }
    }

    fn plane_direct(&self, src: &[f32], w: &[f32], dst: &mut [f32]) {
        let g = &self.g;
        let (ow, oh) = (g.out_w(), g.out_h());
        let (sx, sy) = (g.stride_w, g.stride_h);
        for ky in 0..g.kernel_h {
            for kx in 0..g.kernel_w {
                let wv = w[ky * g.kernel_w + kx];
                let dx = kx * g.dilation_w;
                // Columns x with 0 <= x·sx + dx − pad_left < in_w.
                let x_lo = g.pad_left.saturating_sub(dx).div_ceil(sx);
                let x_hi = (g.in_w + g.pad_left).saturating_sub(dx).div_ceil(sx).min(ow);
                if x_lo >= x_hi {
                    continue;
                }
                for y in 0..oh {
                    let yp = y * sy + ky * g.dilation_h;
                    if yp < g.pad_top || yp - g.pad_top >= g.in_h {
                        continue;
                    }
                    let row = &src[(yp - g.pad_top) * g.in_w..][..g.in_w];
                    let first = x_lo * sx + dx - g.pad_left;
                    let out_row = &mut dst[y * ow + x_lo..y * ow + x_hi];
                    if sx == 1 {
                        for (o, &v) in out_row.iter_mut().zip(&row[first..]) {
                            *o += wv * v;
                        }
                    } else {
                        for (o, &v) in out_row.iter_mut().zip(row[first..].iter().step_by(sx)) {
                            *o += wv * v;
                        }
                    }
                }
            }
        }
    }

    fn plane_taps(&self, src: &[f32], w: &[f32], dst: &mut [f32]) {
        for (c, &wv) in w.iter().enumerate() {
            for (o, &t) in dst.iter_mut().zip(self.taps.row(c)) {
                if t != PAD {
                    let v = if self.taps.map_kind == 3 {
                        read_mapped(3, &self.taps.map_table, src, t as usize)
                    } else {
                        src[t as usize]
                    };
                    *o += wv * v;
                }
            }
        }
    }
}
