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

#[cfg(target_arch = "x86_64")]
use avx2::{block_lanes_avx2, plane_rows_avx2};
#[cfg(target_arch = "x86_64")]
use lanes::block_lanes_avx512;

use super::elementwise::Expansion;
use super::taps::{Taps, PAD};
use crate::cpu::read_mapped;
use crate::geometry::ConvGeometry;
use crate::layer::ConvLayer;

#[cfg(target_arch = "x86_64")]
#[path = "depthwise_lanes.rs"]
mod lanes;

#[cfg(target_arch = "x86_64")]
#[path = "depthwise_avx2.rs"]
mod avx2;

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
    /// Upper bound after the ReLU (0: none); every path applies it.
    cap: f32,
    plane: usize,
    /// The direct path's buffer of padded input rows split into column phases.
    rows: RowLayout,
    /// Which loop computes the layer.
    path: Path,
    /// The mask's output positions (the interleaved path's loop).
    mask: Vec<u32>,
    /// Weights by block of [`LANES`] output channels: `[block][tap][lane]`, zero past
    /// the last channel.
    weights_lanes: Vec<f32>,
    /// Bias by block: `[block][lane]`.
    bias_lanes: Vec<f32>,
    taps: Taps,
}

/// How a depthwise layer is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// Small input planes, any mask and input map: `block_interleaved`.
    Interleaved,
    /// Dense input and dense mask: the direct row path, `plane_direct`.
    Rows,
    /// A perforated output or a compact input on a large unstrided plane: the input made
    /// dense, the row path, the mask's positions picked (`plane_expanded`).
    Expanded,
    /// A perforated output or a compact input on a large strided plane: every tap read
    /// through the tables (`plane_taps`).
    Taps,
}

/// Output channels computed together by the channel-interleaved path: one 512-bit vector.
const LANES: usize = 16;

/// Dense layers take the channel-interleaved path on input planes up to this many positions
/// at stride 1, and up to [`INTERLEAVED_MAX_CELLS`] stride cells when strided: there an output
/// row is too short for the direct path's 16-wide vectors (a 7-wide row fills 7 of 16 lanes),
/// while the interleaving (16 × 16 register transposes in and out) stays cheaper. Measured on
/// MobileNetV2 at batch 1 (AVX-512), direct vs interleaved: 14×14 0.085 vs 0.040-0.050 ms,
/// 28×28 0.055 vs 0.075; strided, 56×56 0.21 vs 0.13-0.15, 112×112 0.27 vs 0.34.
const INTERLEAVED_MAX_POSITIONS: usize = 16 * 16;
/// See [`INTERLEAVED_MAX_POSITIONS`].
const INTERLEAVED_MAX_CELLS: usize = 28 * 28;

/// The channel-interleaved path runs in parallel from this many multiply-adds: its tasks
/// are few and even, so two cores pay off sooner than on the per-plane path.
const INTERLEAVED_SEQUENTIAL_MACS: usize = 1 << 17;

impl Depthwise {
    /// Whether `layer` is depthwise (one input channel per group).
    pub fn applies(layer: &ConvLayer) -> bool {
        let g = layer.geometry();
        g.groups > 1 && g.in_channels_per_group() == 1
    }

    /// The depthwise kernel of `layer`, with its ReLU when `relu` (and then its cap).
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
        let (plane, area) = (g.in_h * g.in_w, g.stride_h * g.stride_w);
        // Perforated outputs and compact inputs (measured on MobileNetV2 at q = 1/2, batch
        // 1, compact inputs expanded by vector gathers): unstrided, interleaving up to 32x32
        // planes (28x28: 0.12 ms), the expanded direct path above (56x56: 0.30 either way);
        // strided, interleaving up to 28x28 stride cells (56 -> 28: 0.28 vs 0.38 through
        // the tap table), the tap table above (112 -> 56: 0.49 vs 0.57 expanded, 0.63
        // interleaved).
        //
        // On AVX2 (no AVX-512) the interleaved block reads a compact input through a nearest
        // or zeros map by one 8-lane copy per position (`fill_through_map`), and then it
        // wins on every perforated or compact-input plane (MobileNetV2 at q = 1/2, batch 1,
        // three rounds: 112x112 0.38-0.47 -> 0.33-0.34 ms, 112 -> 56 strided 0.71-1.09 ->
        // 0.51-0.54, 56x56 0.51-0.56 -> 0.25-0.29).
        let tap_table = Taps::new(layer);
        #[cfg(target_arch = "x86_64")]
        let avx2_lanes = !std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx2")
            && tap_table.map_kind <= 2;
        #[cfg(not(target_arch = "x86_64"))]
        let avx2_lanes = false;
        let path = match (direct, area) {
            (false, _) if avx2_lanes => Path::Interleaved,
            (true, 1) if plane <= INTERLEAVED_MAX_POSITIONS => Path::Interleaved,
            (true, _) if area > 1 && plane <= INTERLEAVED_MAX_CELLS * area => Path::Interleaved,
            (true, _) => Path::Rows,
            (false, 1) if plane <= 32 * 32 => Path::Interleaved,
            (false, 1) => Path::Expanded,
            (false, _) if plane <= 28 * 28 * area => Path::Interleaved,
            (false, _) => Path::Taps,
        };
        Depthwise {
            g,
            mult: g.out_channels_per_group(),
            weights: layer.weights().to_vec(),
            bias: layer.bias().to_vec(),
            relu,
            cap: if relu { layer.relu_cap() } else { 0.0 },
            plane: layer.input_plane(),
            rows: RowLayout::new(&g),
            path,
            mask: layer.mask().positions().to_vec(),
            weights_lanes,
            bias_lanes,
            taps: tap_table,
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
            let src = self.input_plane(x, img, o);
            let w = &self.weights[o * taps..(o + 1) * taps];
            match self.path {
                Path::Rows => self.plane_direct(src, w, self.bias[o], dst),
                Path::Expanded => self.plane_expanded(src, w, self.bias[o], dst),
                // (Interleaved layers run by blocks below, never by planes.)
                Path::Taps | Path::Interleaved => {
                    dst.fill(self.bias[o]);
                    self.plane_taps(src, w, dst);
                    if self.relu {
                        dst.iter_mut().for_each(|v| *v = relu_capped(*v, self.cap));
                    }
                }
            }
        };
        let body = |(t, chunk): (usize, &mut [f32])| {
            for (k, dst) in chunk.chunks_exact_mut(n_pos).enumerate() {
                plane_out(t * per_task + k, dst);
            }
        };
        let out = &mut out[..planes * n_pos];
        if self.path == Path::Interleaved {
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

    /// One dense plane (dense input, dense mask) with its bias, ReLU and cap.
    fn plane_direct(&self, src: &[f32], w: &[f32], bias: f32, dst: &mut [f32]) {
        let epilogue = Epilogue { bias, relu: self.relu, cap: self.cap };
        ROWS.with(|cell| {
            let (key, buf) = &mut *cell.borrow_mut();
            // The padding cells stay zero from plane to plane: only the data cells are
            // written. A buffer last used for another layout is zeroed first.
            if *key != self.rows.key() || buf.len() != self.rows.len {
                buf.clear();
                buf.resize(self.rows.len, 0.0);
                *key = self.rows.key();
            }
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the feature was detected.
                    return unsafe { plane_rows_avx512(self, src, w, epilogue, dst, buf) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the feature was detected.
                    return unsafe { plane_rows_avx2(self, src, w, epilogue, dst, buf) };
                }
            }
            fill_rows(&self.g, &self.rows, src, buf, Split::Scalar);
            rows_generic(self, w, epilogue, dst, buf);
        });
    }

    /// A plane of a perforated layer or of a compact input, on the direct path: the input
    /// read through its map into a dense plane, every output computed by `plane_direct`,
    /// the mask's positions picked. Computing the skipped outputs too costs less than
    /// reading every tap through the tables, by far, on large planes.
    fn plane_expanded(&self, src: &[f32], w: &[f32], bias: f32, dst: &mut [f32]) {
        EXPANDED.with(|cell| {
            let (input, full) = &mut *cell.borrow_mut();
            let g = &self.g;
            let dense_src = if self.taps.map_kind == 0 {
                src
            } else {
                input.resize(g.in_h * g.in_w, 0.0);
                Expansion::new(self.taps.map_kind, &self.taps.map_table, input.len()).expand(src, input);
                &input[..]
            };
            full.resize(g.out_h() * g.out_w(), 0.0);
            self.plane_direct(dense_src, w, bias, full);
            for (d, &p) in dst.iter_mut().zip(&self.mask) {
                *d = full[p as usize];
            }
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

    /// The input plane output channel `o` of image `img` reads (its group's one input
    /// channel: `plane` values, dense or compact).
    fn input_plane<'a>(&self, x: &'a [f32], img: usize, o: usize) -> &'a [f32] {
        let ci = o / self.mult;
        &x[(img * self.g.in_channels + ci) * self.plane..][..self.plane]
    }

    /// The input planes of output channels `block·LANES ..` (`lanes` of them) of image
    /// `img`: planes of `x` as stored, or, through the input map, expanded into `dense`
    /// (at least `lanes · in_h · in_w` floats then), for the interleaved blocks.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn block_planes<'a>(
        &self,
        x: &'a [f32],
        img: usize,
        block: usize,
        lanes: usize,
        dense: &'a mut [f32],
    ) -> [&'a [f32]; LANES] {
        let g = &self.g;
        let mut planes: [&[f32]; LANES] = [&[]; LANES];
        for (lane, plane) in planes.iter_mut().enumerate().take(lanes) {
            *plane = self.input_plane(x, img, block * LANES + lane);
        }
        if self.taps.map_kind != 0 {
            let dense_plane = g.in_h * g.in_w;
            let dense = &mut dense[..lanes * dense_plane];
            let expansion = Expansion::new(self.taps.map_kind, &self.taps.map_table, dense_plane);
            for (dst, src) in dense.chunks_exact_mut(dense_plane).zip(&planes) {
                expansion.expand(src, dst);
            }
            for (plane, dense) in planes.iter_mut().zip(dense.chunks_exact(dense_plane)) {
                *plane = dense;
            }
        }
        planes
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
    /// Per-thread row buffer of the direct path, with the layout key it was zeroed for
    /// (grown on first use).
    static ROWS: RefCell<([usize; 7], Vec<f32>)> = const { RefCell::new(([0; 7], Vec::new())) };
    /// Per-thread dense input and dense output planes of the expanded path.
    static EXPANDED: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
    /// Per-thread channel-interleaved padded input of one block (grown on first use).
    static LANE_INPUT: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Bias, ReLU and cap of one output plane.
#[derive(Clone, Copy, Debug)]
struct Epilogue {
    bias: f32,
    relu: bool,
    /// 0: none.
    cap: f32,
}

/// The direct path's buffer: padded input row `r` (of `hp`), column phase `rx` (of the
/// column stride `sx`) at `(r·sx + rx)·ld`, holding padded columns `rx, rx + sx, ...`
/// (`wq` of them, then 16 floats of slack so a vector may read past the last column).
#[derive(Clone, Debug)]
struct RowLayout {
    sx: usize,
    wq: usize,
    ld: usize,
    len: usize,
    key: [usize; 7],
    /// Offset of each tap `(ky, kx)` from the start of output row `oy`'s first input row
    /// (`oy·sy·sx·ld`), in tap order.
    taps: Vec<usize>,
}

impl RowLayout {
    fn new(g: &ConvGeometry) -> Self {
        let hp = g.in_h + g.pad_top + g.pad_bottom;
        let wp = g.in_w + g.pad_left + g.pad_right;
        let sx = g.stride_w;
        let wq = wp.div_ceil(sx);
        let ld = wq + 16;
        let taps = (0..g.kernel_h)
            .flat_map(|ky| (0..g.kernel_w).map(move |kx| (ky * g.dilation_h, kx * g.dilation_w)))
            .map(|(r, c)| (r * sx + c % sx) * ld + c / sx)
            .collect();
        RowLayout {
            sx,
            wq,
            ld,
            len: hp * sx * ld,
            key: [g.in_h, g.in_w, g.pad_top, g.pad_bottom, g.pad_left, g.pad_right, sx],
            taps,
        }
    }

    fn key(&self) -> [usize; 7] {
        self.key
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn plane_rows_avx512(
    d: &Depthwise,
    src: &[f32],
    w: &[f32],
    e: Epilogue,
    dst: &mut [f32],
    buf: &mut [f32],
) {
    fill_rows(&d.g, &d.rows, src, buf, Split::Avx512);
    let (oh, ow) = (d.g.out_h(), d.g.out_w());
    let step = d.g.stride_h * d.rows.sx * d.rows.ld;
    for (oy, row) in dst[..oh * ow].chunks_exact_mut(ow).enumerate() {
        let base = oy * step;
        let mut x0 = 0;
        while ow - x0 >= 128 {
            // SAFETY: AVX-512F is enabled here; see `block_avx512`.
            unsafe { block_avx512::<8>(buf, base + x0, &d.rows.taps, w, e, &mut row[x0..]) };
            x0 += 128;
        }
        let out = &mut row[x0..];
        // SAFETY: as above.
        unsafe {
            match out.len().div_ceil(16) {
                0 => {}
                1 => block_avx512::<1>(buf, base + x0, &d.rows.taps, w, e, out),
                2 => block_avx512::<2>(buf, base + x0, &d.rows.taps, w, e, out),
                3 => block_avx512::<3>(buf, base + x0, &d.rows.taps, w, e, out),
                4 => block_avx512::<4>(buf, base + x0, &d.rows.taps, w, e, out),
                5 => block_avx512::<5>(buf, base + x0, &d.rows.taps, w, e, out),
                6 => block_avx512::<6>(buf, base + x0, &d.rows.taps, w, e, out),
                _ => block_avx512::<7>(buf, base + x0, &d.rows.taps, w, e, out),
            }
        }
    }
}

/// `NV` vectors of one output row from `out[0]` on (`out` may end inside the last one):
/// `acc = bias + Σ_tap w[tap] · buf[at + taps[tap] ..]`, NV independent accumulators, then
/// ReLU and cap (`max_ps(0, v)` and `min_ps(cap, v)` keep NaN) and a masked store.
///
/// # Safety
/// AVX-512F; `buf[at + taps[t] + 16·NV - 1]` is inside `buf` for every tap (the layout's
/// slack guarantees it) and `out` holds more than `16·(NV − 1)` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn block_avx512<const NV: usize>(
    buf: &[f32],
    at: usize,
    taps: &[usize],
    w: &[f32],
    e: Epilogue,
    out: &mut [f32],
) {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(e.bias); NV];
    for (&o, &wt) in taps.iter().zip(w) {
        let wv = _mm512_set1_ps(wt);
        debug_assert!(at + o + 16 * NV <= buf.len());
        // SAFETY: in bounds by the caller's contract.
        let p = unsafe { buf.as_ptr().add(at + o) };
        for (v, a) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            *a = _mm512_fmadd_ps(wv, unsafe { _mm512_loadu_ps(p.add(16 * v)) }, *a);
        }
    }
    if e.relu {
        let zero = _mm512_setzero_ps();
        let cap = _mm512_set1_ps(e.cap);
        for a in &mut acc {
            *a = _mm512_max_ps(zero, *a);
            if e.cap > 0.0 {
                *a = _mm512_min_ps(cap, *a);
            }
        }
    }
    for (v, a) in acc.iter().enumerate() {
        let left = out.len() - 16 * v;
        // SAFETY: the store writes lanes inside `out` only.
        unsafe {
            if left >= 16 {
                _mm512_storeu_ps(out.as_mut_ptr().add(16 * v), *a);
            } else {
                // left < 16: the mask fits.
                #[allow(clippy::cast_possible_truncation)]
                let mask = ((1u32 << left) - 1) as u16;
                _mm512_mask_storeu_ps(out.as_mut_ptr().add(16 * v), mask, *a);
            }
        }
    }
}

/// How [`fill_rows`] splits stride-2 rows into their column phases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Split {
    /// One value at a time.
    Scalar,
    /// By permutes, 32 values at a time (only where AVX-512F was detected).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx512,
    /// By shuffles, 16 values at a time (only where AVX2 was detected).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Avx2,
}

/// Writes the input plane's values into the row buffer's data cells (the padding cells
/// are zero already); stride-2 rows are split into their even and odd columns as `split`
/// says.
#[inline(always)]
fn fill_rows(g: &ConvGeometry, l: &RowLayout, src: &[f32], buf: &mut [f32], split: Split) {
    let sx = l.sx;
    for (y, row) in src.chunks_exact(g.in_w).enumerate() {
        let base = (y + g.pad_top) * sx * l.ld;
        #[cfg(target_arch = "x86_64")]
        if sx == 2 && split != Split::Scalar {
            // SAFETY: the vector splits are only asked for where their feature was
            // detected. Straight into the row's two phases (`ld` apart, `wq` columns each).
            unsafe {
                if split == Split::Avx512 {
                    super::transpose::split_pairs_avx512(row, g.pad_left, (l.wq, l.ld), &mut buf[base..]);
                } else {
                    super::transpose::split_pairs_avx2(row, g.pad_left, (l.wq, l.ld), &mut buf[base..]);
                }
            }
            continue;
        }
        for rx in 0..sx {
            // Phase columns j read padded column j·sx + rx = input column x + pad_left.
            let j0 = g.pad_left.saturating_sub(rx).div_ceil(sx);
            let x0 = j0 * sx + rx - g.pad_left;
            if x0 >= g.in_w {
                continue;
            }
            let n = (l.wq - j0).min((g.in_w - x0).div_ceil(sx));
            let dst = &mut buf[base + rx * l.ld + j0..][..n];
            if sx == 1 {
                dst.copy_from_slice(&row[x0..x0 + n]);
            } else {
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = row[x0 + j * sx];
                }
            }
        }
    }
}

/// The direct path without intrinsics (AVX2 through the compiler's vectoriser, NEON, the
/// portable fallback): per output row, the bias, then one pass per tap
/// `out[x] += w · buf[at + tap + x]`, then ReLU and cap.
#[inline(always)]
fn rows_generic(d: &Depthwise, w: &[f32], e: Epilogue, dst: &mut [f32], buf: &[f32]) {
    let (oh, ow) = (d.g.out_h(), d.g.out_w());
    let step = d.g.stride_h * d.rows.sx * d.rows.ld;
    for (oy, row) in dst[..oh * ow].chunks_exact_mut(ow).enumerate() {
        row.fill(e.bias);
        for (&o, &wt) in d.rows.taps.iter().zip(w) {
            let run = &buf[oy * step + o..][..ow];
            for (out, &v) in row.iter_mut().zip(run) {
                *out += wt * v;
            }
        }
        if e.relu {
            row.iter_mut().for_each(|v| *v = relu_capped(*v, e.cap));
        }
    }
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
        let src = d.input_plane(x, img, block * LANES + lane);
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
            acc.iter_mut().for_each(|a| *a = relu_capped(*a, d.cap));
        }
        for (lane, &a) in acc.iter().take(lanes).enumerate() {
            dst[lane * n_pos + e] = a;
        }
    }
}

/// ReLU, then the cap when it is above 0, NaN kept (`cpu::nan`).
#[inline(always)]
fn relu_capped(v: f32, cap: f32) -> f32 {
    let r = crate::cpu::nan::relu_keep_nan(v);
    if cap > 0.0 {
        crate::cpu::nan::cap_keep_nan(r, cap)
    } else {
        r
    }
}
