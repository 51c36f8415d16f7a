//! Depthwise convolution (groups = input channels, one input channel per group) as a
//! direct kernel: each output plane is `kh·kw` scaled copies of its input plane, summed.
//!
//! Dense input and dense mask (the common case): the padded input plane is split into
//! stride phases, so each kernel offset of a whole output row is one contiguous run and the
//! inner loop is a vectorised `y[x] += w · run[x]` (see `plane_phases`).
//! Otherwise (perforated output or compact input) every position reads through the
//! per-layer tap table. Work: one task per (image, channel) block, one parallel region.

use std::cell::RefCell;

use rayon::prelude::*;

use super::taps::{Taps, PAD};
use crate::cpu::read_mapped;
use crate::geometry::ConvGeometry;
use crate::layer::ConvLayer;

/// Layers under this many multiply-adds run on the calling thread.
const SEQUENTIAL_MACS: usize = 1 << 20;

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
    /// Dense input and dense mask: the stride-phase path (`plane_phases`) applies.
    direct: bool,
    /// Small input planes: the channel-interleaved path (`block_interleaved`), for any
    /// mask and input map.
    interleaved: bool,
    /// The mask's output positions (the interleaved path's loop).
    mask: Vec<u32>,
    /// Weights by block of [`LANES`] output channels: `[block][tap][lane]`, zero past
    /// the last channel.
    weights_lanes: Vec<f32>,
    /// Bias by block: `[block][lane]`.
    bias_lanes: Vec<f32>,
    taps: Taps,
}

/// Output channels computed together by the channel-interleaved path: one 512-bit vector.
const LANES: usize = 16;

/// Input planes up to this many positions (times the stride's area: a strided layer's
/// per-plane path copies stride² more input per output) take the channel-interleaved
/// path: there a plane is too short for the per-plane path's vectors and setup to pay
/// off, while the interleaving (scalar copies in and out) stays cheaper. Measured on
/// MobileNetV2 at batch 1 (AVX-512): 7×7, 14×14 and stride-2 28×28 inputs gain; 28×28 at
/// stride 1 and 112×112 at stride 2 lose.
const INTERLEAVED_MAX_POSITIONS: usize = 20 * 20;

/// The channel-interleaved path runs in parallel from this many multiply-adds: its tasks
/// are few and even, so two cores pay off sooner than on the per-plane path.
const INTERLEAVED_SEQUENTIAL_MACS: usize = 1 << 17;

impl Depthwise {
    /// Whether `layer` is depthwise (one input channel per group).
    pub fn applies(layer: &ConvLayer) -> bool {
        let g = layer.geometry();
        g.groups > 1 && g.in_channels_per_group() == 1
    }

    pub fn new(layer: &ConvLayer, relu: bool) -> Self {
        let g = *layer.geometry();
        let taps = g.kernel_h * g.kernel_w;
        let blocks = g.out_channels.div_ceil(LANES);
        let (mut weights_lanes, mut bias_lanes) =
            (vec![0.0; blocks * taps * LANES], vec![0.0; blocks * LANES]);
        for (o, (w, &b)) in layer.weights().chunks_exact(taps).zip(layer.bias()).enumerate() {
            let (block, lane) = (o / LANES, o % LANES);
            bias_lanes[block * LANES + lane] = b;
            for (t, &wv) in w.iter().enumerate() {
                weights_lanes[(block * taps + t) * LANES + lane] = wv;
            }
        }
        let direct = layer.input_map().is_none() && layer.mask().is_dense();
        Depthwise {
            g,
            mult: g.out_channels_per_group(),
            weights: layer.weights().to_vec(),
            bias: layer.bias().to_vec(),
            relu,
            plane: layer.input_plane(),
            direct,
            // Unstrided perforated layers always: the tap table's scalar reads are slower than
            // interleaving at any plane size; strided ones read stride² more input per output.
            interleaved: g.in_h * g.in_w <= INTERLEAVED_MAX_POSITIONS * g.stride_h * g.stride_w
                || !direct && g.stride_h == 1 && g.stride_w == 1,
            mask: layer.mask().positions().to_vec(),
            weights_lanes,
            bias_lanes,
            taps: Taps::new(layer),
        }
    }

    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        let g = &self.g;
        let n_pos = self.taps.n_pos;
        let planes = g.batch * g.out_channels;
        assert!(out.len() >= planes * n_pos, "conv output buffer too small");
        // Whole output planes, about 8 tasks per thread; small layers on the calling thread.
        let per_task = planes.div_ceil(8 * rayon::current_num_threads()).max(1);
        let taps = g.kernel_h * g.kernel_w;
        let plane_out = |p: usize, dst: &mut [f32]| {
            let (img, o) = (p / g.out_channels, p % g.out_channels);
            let ci = o / self.mult;
            let src = &x[(img * g.in_channels + ci) * self.plane..][..self.plane];
            let w = &self.weights[o * taps..(o + 1) * taps];
            dst.fill(self.bias[o]);
            if self.direct {
                self.plane_direct(src, w, dst);
            } else {
                self.plane_taps(src, w, dst);
            }
            if self.relu {
                for v in dst.iter_mut() {
                    *v = crate::cpu::nan::relu_keep_nan(*v);
                }
            }
        };
        let body = |(t, chunk): (usize, &mut [f32])| {
            for (k, dst) in chunk.chunks_exact_mut(n_pos).enumerate() {
                plane_out(t * per_task + k, dst);
            }
        };
        let out = &mut out[..planes * n_pos];
        if self.interleaved {
            // One task per image and block of LANES output planes.
            let tasks: Vec<(usize, usize, &mut [f32])> = out
                .chunks_mut(g.out_channels * n_pos)
                .enumerate()
                .flat_map(|(img, dst)| {
                    dst.chunks_mut(LANES * n_pos).enumerate().map(move |(block, d)| (img, block, d))
                })
                .collect();
            let task = |(img, block, dst): (usize, usize, &mut [f32])| {
                LANE_INPUT.with(|buf| self.block_interleaved(x, img, block, dst, &mut buf.borrow_mut()))
            };
            if planes * n_pos * taps < INTERLEAVED_SEQUENTIAL_MACS {
                tasks.into_iter().for_each(task);
            } else {
                tasks.into_par_iter().for_each(task);
            }
            return;
        }
        if planes * n_pos * taps < SEQUENTIAL_MACS {
            out.chunks_mut(per_task * n_pos).enumerate().for_each(body);
        } else {
            out.par_chunks_mut(per_task * n_pos).enumerate().for_each(body);
        }
    }

    fn plane_direct(&self, src: &[f32], w: &[f32], dst: &mut [f32]) {
        PHASES.with(|buf| {
            let buf = &mut buf.borrow_mut();
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the feature was detected.
                    return unsafe { plane_phases_avx512(&self.g, src, w, dst, buf) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the feature was detected.
                    return unsafe { plane_phases_avx2(&self.g, src, w, dst, buf) };
                }
            }
            plane_phases(&self.g, src, w, dst, buf);
        });
    }

    /// Output planes `block·LANES ..` (as many as `dst` holds) of image `img`: the padded
    /// input of the block's channels is interleaved (`buf[(y·wp + x) · LANES + lane]`, read
    /// through the input map when there is one), so each tap of a masked output position
    /// is one vector FMA over the block's channels, whatever the plane size.
    fn block_interleaved(&self, x: &[f32], img: usize, block: usize, dst: &mut [f32], buf: &mut Vec<f32>) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the feature was detected.
                return unsafe { block_lanes_avx512(self, x, img, block, dst, buf) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the feature was detected.
                return unsafe { block_lanes_avx2(self, x, img, block, dst, buf) };
            }
        }
        block_lanes(self, x, img, block, dst, buf);
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

thread_local! {
    /// Per-thread phase planes of the padded input (grown on first use).
    static PHASES: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// Per-thread channel-interleaved padded input of one block (grown on first use).
    static LANE_INPUT: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane_phases_avx512(g: &ConvGeometry, src: &[f32], w: &[f32], dst: &mut [f32], buf: &mut Vec<f32>) {
    plane_phases(g, src, w, dst, buf);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn plane_phases_avx2(g: &ConvGeometry, src: &[f32], w: &[f32], dst: &mut [f32], buf: &mut Vec<f32>) {
    plane_phases(g, src, w, dst, buf);
}

/// One dense plane (dense mask, dense input; `dst` holds the bias). The padded input is
/// split into `sy × sx` phase planes, `phase[ry][rx][i][j] = padded[i·sy + ry][j·sx + rx]`
/// (each `hq + 1` rows of `wq`), so for the tap `(ky, kx)` every output `(y, x)` reads
/// `phase[..][(y + ky/sy)·wq + x + kx/sx]`: one flat run over the whole plane (row stride
/// `wq` on both sides). Outputs are accumulated on the `oh × wq` grid and the first `ow`
/// columns of each row kept: one vectorised loop per tap, for any stride and dilation.
#[inline(always)]
fn plane_phases(g: &ConvGeometry, src: &[f32], w: &[f32], dst: &mut [f32], buf: &mut Vec<f32>) {
    let (sy, sx) = (g.stride_h, g.stride_w);
    let (oh, ow) = (g.out_h(), g.out_w());
    let hp = g.in_h + g.pad_top + g.pad_bottom;
    let wp = g.in_w + g.pad_left + g.pad_right;
    let (hq, wq) = (hp.div_ceil(sy), wp.div_ceil(sx));
    let phase_len = (hq + 1) * wq;
    let grid = oh * wq;
    // Stride 2 on AVX-512: each input row is split into its even and odd columns by
    // permutes (into `halves`), and the phases copy contiguous runs of those.
    #[cfg(target_arch = "x86_64")]
    let split2 = sx == 2 && std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let split2 = false;
    let half = g.in_w.div_ceil(32) * 16;
    buf.clear();
    buf.resize(sy * sx * phase_len + grid + if split2 { 2 * half } else { 0 }, 0.0);
    let (phases, rest) = buf.split_at_mut(sy * sx * phase_len);
    let (acc, halves) = rest.split_at_mut(grid);
    for (y, row) in src.chunks_exact(g.in_w).enumerate() {
        let yp = y + g.pad_top;
        let base = (yp % sy) * sx * phase_len + (yp / sy) * wq;
        if split2 {
            // SAFETY: split2 implies AVX-512F; `halves` holds 2·half floats.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                super::pool::deinterleave2_avx512(row, halves, half)
            };
            for rx in 0..2 {
                let j0 = g.pad_left.saturating_sub(rx).div_ceil(2);
                let x0 = j0 * 2 + rx - g.pad_left;
                if x0 >= g.in_w {
                    continue;
                }
                let dst_row = &mut phases[base + rx * phase_len + j0..base + rx * phase_len + wq];
                let n = dst_row.len().min((g.in_w - x0).div_ceil(2));
                // Input column x0 + 2j is entry j of the half of x0's parity.
                let from = (x0 % 2) * half + x0 / 2;
                dst_row[..n].copy_from_slice(&halves[from..from + n]);
            }
            continue;
        }
        for rx in 0..sx {
            // Columns j of this phase read padded column j·sx + rx = input x + pad_left.
            let j0 = g.pad_left.saturating_sub(rx).div_ceil(sx);
            let x0 = j0 * sx + rx - g.pad_left;
            if x0 >= g.in_w {
                continue;
            }
            let dst_row = &mut phases[base + rx * phase_len + j0..base + rx * phase_len + wq];
            // Columns x0, x0 + sx, ... (a generic `step_by` with a run-time step compiled to
            // ten instructions per value: most of a large plane's time).
            let n = dst_row.len().min((g.in_w - x0).div_ceil(sx));
            if sx == 1 {
                dst_row[..n].copy_from_slice(&row[x0..x0 + n]);
            } else {
                for (j, d) in dst_row[..n].iter_mut().enumerate() {
                    *d = row[x0 + j * sx];
                }
            }
        }
    }
    // Bands of output rows whose accumulators stay in L1.
    let band = (2048 / wq).max(1);
    for y0 in (0..oh).step_by(band) {
        let rows = band.min(oh - y0);
        let acc = &mut acc[y0 * wq..(y0 + rows) * wq];
        for ky in 0..g.kernel_h {
            let r = ky * g.dilation_h;
            for kx in 0..g.kernel_w {
                let c = kx * g.dilation_w;
                let phase = &phases[((r % sy) * sx + c % sx) * phase_len..][..phase_len];
                let run = &phase[(y0 + r / sy) * wq + c / sx..][..rows * wq];
                let wv = w[ky * g.kernel_w + kx];
                for (o, &v) in acc.iter_mut().zip(run) {
                    *o += wv * v;
                }
            }
        }
    }
    for (orow, arow) in dst.chunks_exact_mut(ow).zip(acc.chunks_exact(wq)) {
        for (o, &a) in orow.iter_mut().zip(arow) {
            *o += a;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block_lanes_avx512(
    d: &Depthwise,
    x: &[f32],
    img: usize,
    block: usize,
    dst: &mut [f32],
    buf: &mut Vec<f32>,
) {
    block_lanes(d, x, img, block, dst, buf);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn block_lanes_avx2(
    d: &Depthwise,
    x: &[f32],
    img: usize,
    block: usize,
    dst: &mut [f32],
    buf: &mut Vec<f32>,
) {
    block_lanes(d, x, img, block, dst, buf);
}

/// The channel-interleaved depthwise block (see [`Depthwise::block_interleaved`]).
///
/// Loop structure: interleave the block's (dense or interpolated) input planes into the
/// zero-padded `buf`; then for every mask entry, `acc[lane] = bias + Σ_tap w[tap][lane] ·
/// buf[tap's position][lane]` (LANES-wide FMAs), scattered to the block's output planes.
#[inline(always)]
fn block_lanes(d: &Depthwise, x: &[f32], img: usize, block: usize, dst: &mut [f32], buf: &mut Vec<f32>) {
    let g = &d.g;
    let n_pos = d.mask.len();
    let lanes = dst.len() / n_pos;
    let taps = g.kernel_h * g.kernel_w;
    let wp = g.in_w + g.pad_left + g.pad_right;
    let hp = g.in_h + g.pad_top + g.pad_bottom;
    buf.clear();
    buf.resize(hp * wp * LANES, 0.0);
    for lane in 0..lanes {
        let ci = (block * LANES + lane) / d.mult;
        let src = &x[(img * g.in_channels + ci) * d.plane..][..d.plane];
        let kind = d.taps.map_kind;
        for y in 0..g.in_h {
            let base = ((y + g.pad_top) * wp + g.pad_left) * LANES + lane;
            for i in 0..g.in_w {
                let s = y * g.in_w + i;
                buf[base + i * LANES] =
                    if kind == 0 { src[s] } else { read_mapped(kind, &d.taps.map_table, src, s) };
            }
        }
    }
    let w = &d.weights_lanes[block * taps * LANES..][..taps * LANES];
    let bias: &[f32; LANES] = d.bias_lanes[block * LANES..][..LANES].try_into().expect("LANES values");
    let ow = g.out_w();
    for (e, &pos) in d.mask.iter().enumerate() {
        let (oy, ox) = (pos as usize / ow, pos as usize % ow);
        let mut acc = *bias;
        for ky in 0..g.kernel_h {
            let row = (oy * g.stride_h + ky * g.dilation_h) * wp + ox * g.stride_w;
            for kx in 0..g.kernel_w {
                let at = (row + kx * g.dilation_w) * LANES;
                let v: &[f32; LANES] = buf[at..at + LANES].try_into().expect("LANES values");
                let t = ky * g.kernel_w + kx;
                let wv: &[f32; LANES] = w[t * LANES..(t + 1) * LANES].try_into().expect("LANES values");
                for l in 0..LANES {
                    acc[l] += wv[l] * v[l];
                }
            }
        }
        if d.relu {
            for a in &mut acc {
                *a = crate::cpu::nan::relu_keep_nan(*a);
            }
        }
        for (lane, &a) in acc.iter().take(lanes).enumerate() {
            dst[lane * n_pos + e] = a;
        }
    }
}
