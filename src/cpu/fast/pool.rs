//! Pooling on the fast path: the same windows and arithmetic as the `pool2d` twin, with the
//! mode and the input form resolved outside the loops, planes batched into a few tasks per
//! thread, and no per-element dispatch.

use rayon::prelude::*;

use super::elementwise::expand_plane;
use crate::cpu::nan::any_nan;
use crate::cpu::pool2d::{pool_plane as pool_plane_twin, pool_windows};
use crate::cpu::MIN_PARALLEL_ELEMENTS;
use crate::params::Pool2dParams;

/// Max or average pooling with the `pool2d` twin's arguments: a dense `[planes, in_h,
/// in_w]` input, or a compact `[planes, N]` one read through `in_map` (each plane is first
/// expanded into a per-thread dense plane, then pooled as a dense one).
#[track_caller]
pub fn pool2d_fast(p: &Pool2dParams, input: &[f32], in_map: &[u32], out: &mut [f32]) {
    let out_plane = (p.out_h * p.out_w) as usize;
    let in_plane = (p.in_h * p.in_w) as usize;
    let src_plane = p.in_plane as usize;
    let planes = p.planes as usize;
    let kind = p.in_map_kind;
    assert!(out.len() >= out_plane * planes && input.len() >= src_plane * planes);
    // The windows and the average's divisor per output position (the twin's arithmetic).
    let wins = pool_windows(p);
    let windows: Vec<f32> = wins.iter().map(|w| w.4).collect();
    let in_w = p.in_w as usize;
    let (in_h, out_w) = (p.in_h as usize, p.out_w as usize);
    let (kh, kw, sh, sw) =
        (p.kernel_h as usize, p.kernel_w as usize, p.stride_h as usize, p.stride_w as usize);
    let (pt, pl) = (p.pad_top as usize, p.pad_left as usize);
    // For each kx, the output columns whose tap x = ox·sw + kx − pl lies in [0, in_w).
    let ranges: Vec<(usize, usize)> = (0..kw)
        .map(|kx| {
            let lo = pl.saturating_sub(kx).div_ceil(sw);
            let hi = (in_w + pl).saturating_sub(kx).div_ceil(sw).min(out_w);
            (lo, hi.max(lo))
        })
        .collect();
    let per_task = planes.div_ceil(4 * rayon::current_num_threads()).max(1);
    let geo = RowGeometry { in_w, in_h, out_w, kh, sh, sw, pt, pl, avg: p.mode == 1 };
    // One window over the whole unpadded plane (global pooling): a plain reduction.
    let global = out_plane == 1 && (kh, kw) == (in_h, in_w) && pt == 0 && pl == 0;
    let body = |(dst, src): (&mut [f32], &[f32])| {
        let mut dense = vec![0.0f32; if kind == 0 { 0 } else { in_plane }];
        let mut rows = RowScratch { v: [0.0; 512], ph: [0.0; 544] };
        for (dst, src) in dst.chunks_exact_mut(out_plane).zip(src.chunks_exact(src_plane)) {
            let plane = if kind == 0 {
                &src[..in_plane]
            } else {
                expand_plane(kind, in_map, src, &mut dense);
                &dense[..]
            };
            if !geo.avg && any_nan(plane) {
                // The vector maxima below drop NaN; a plane holding one is pooled by the
                // twin's NaN-keeping loop (rare: the check costs one pass over the plane).
                pool_plane_twin(p, &wins, 0, &[], plane, dst);
            } else if global {
                dst[0] = if geo.avg { sum_lanes(plane) / windows[0] } else { max_lanes(plane) };
            } else {
                pool_plane_dispatch(&geo, &ranges, &windows, plane, dst, &mut rows);
            }
        }
    };
    let (dst, src) = (&mut out[..out_plane * planes], &input[..src_plane * planes]);
    if planes * in_plane < MIN_PARALLEL_ELEMENTS {
        body((dst, src));
    } else {
        dst.par_chunks_mut(out_plane * per_task).zip(src.par_chunks(src_plane * per_task)).for_each(body);
    }
}

/// Lanes of the global reductions: independent partial results, so the loops vectorise.
const LANES: usize = 16;

/// The sum of `v` in [`LANES`] interleaved partial sums (a different order from the twin's
/// sequential one: equal up to float rounding).
fn sum_lanes(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The maximum of `v` from `f32::NEG_INFINITY` (exact in any order; `v` holds no NaN: planes
/// that do take the twin's loop).
fn max_lanes(v: &[f32]) -> f32 {
    let pick = |m: f32, x: f32| if x > m { x } else { m };
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = v.chunks_exact(LANES);
    let tail = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &x| pick(m, x));
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = pick(*a, x);
        }
    }
    acc.iter().fold(tail, |m, &x| pick(m, x))
}

/// Rows that start an output row: the average's and the maximum's identity.
static ZEROS: [f32; 512] = [0.0; 512];
static MINS: [f32; 512] = [f32::NEG_INFINITY; 512];

/// Per-task work rows of [`pool_plane`]: a combined input row and its stride-2 phases.
struct RowScratch {
    v: [f32; 512],
    ph: [f32; 544],
}

/// The shape arithmetic one plane needs.
struct RowGeometry {
    in_w: usize,
    in_h: usize,
    out_w: usize,
    kh: usize,
    sh: usize,
    sw: usize,
    pt: usize,
    pl: usize,
    avg: bool,
}

fn pool_plane_dispatch(
    g: &RowGeometry,
    ranges: &[(usize, usize)],
    windows: &[f32],
    src: &[f32],
    dst: &mut [f32],
    rows: &mut RowScratch,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            if g.in_w <= 32 && g.out_w <= 16 && ranges.len() <= 32 {
                // SAFETY: the feature was detected; the row widths were checked.
                return unsafe { pool_plane_narrow_avx512(g, ranges, windows, src, dst) };
            }
            // SAFETY: the feature was detected.
            return unsafe { pool_plane_avx512(g, ranges, windows, src, dst, rows) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was detected.
            return unsafe { pool_plane_avx2(g, ranges, windows, src, dst, rows) };
        }
    }
    pool_plane(g, ranges, windows, src, dst, rows);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pool_plane_avx512(
    g: &RowGeometry,
    ranges: &[(usize, usize)],
    windows: &[f32],
    src: &[f32],
    dst: &mut [f32],
    rows: &mut RowScratch,
) {
    pool_plane(g, ranges, windows, src, dst, rows);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pool_plane_avx2(
    g: &RowGeometry,
    ranges: &[(usize, usize)],
    windows: &[f32],
    src: &[f32],
    dst: &mut [f32],
    rows: &mut RowScratch,
) {
    pool_plane(g, ranges, windows, src, dst, rows);
}

/// A plane whose input rows fit two vectors and output rows one (at most 32 and 16 wide),
/// in registers: per output row and window row, the input row is loaded once and each kx's
/// taps are picked out of it by one permute (lane ox takes x = ox·sw + kx − pl), under a
/// mask of the outputs whose tap is inside the row. No row goes through memory between
/// steps (the separable path's masked stores and reloads stall on store forwarding, which
/// dominated small planes: 64x32 planes of 28x28, 3x3 stride 2: 1.03 ms). The average sums
/// in (ky, kx) order; the max is `max_ps(tap, acc)` (planes holding a NaN never come here).
///
/// # Safety
/// AVX-512F is available; `in_w ≤ 32`, `out_w ≤ 16`, at most 32 kx; `src` holds the
/// plane, `dst` and `windows` `out_h·out_w` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pool_plane_narrow_avx512(
    g: &RowGeometry,
    ranges: &[(usize, usize)],
    windows: &[f32],
    src: &[f32],
    dst: &mut [f32],
) {
    use std::arch::x86_64::*;
    let lanes = |n: usize| -> u32 {
        if n >= 32 {
            u32::MAX
        } else {
            (1u32 << n) - 1
        }
    };
    #[allow(clippy::cast_possible_truncation)]
    let (lo_mask, hi_mask) = (lanes(g.in_w) as u16, (lanes(g.in_w) >> 16) as u16);
    #[allow(clippy::cast_possible_truncation)]
    let out_mask = lanes(g.out_w) as u16;
    // Per kx: the permute indices and the outputs whose tap lies inside the row.
    let mut taps = [(_mm512_setzero_si512(), 0u16); 32];
    for (kx, &(lo, hi)) in ranges.iter().enumerate().take(32) {
        let mut idx = [0i32; 16];
        for (ox, i) in idx.iter_mut().enumerate() {
            #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)]
            let x = (ox * g.sw + kx) as i32 - g.pl as i32;
            *i = x & 31;
        }
        #[allow(clippy::cast_possible_truncation)]
        let keep = (lanes(hi) & !lanes(lo)) as u16;
        // SAFETY: idx holds 16 i32.
        taps[kx] = (unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) }, keep & out_mask);
    }
    let taps = &taps[..ranges.len().min(32)];
    let init = _mm512_set1_ps(if g.avg { 0.0 } else { f32::NEG_INFINITY });
    for (oy, orow) in dst.chunks_exact_mut(g.out_w).enumerate() {
        let mut acc = init;
        for ky in 0..g.kh {
            let y = oy * g.sh + ky;
            if y < g.pt || y - g.pt >= g.in_h {
                continue;
            }
            let row = src[(y - g.pt) * g.in_w..][..g.in_w].as_ptr();
            // SAFETY: the masks keep the loads inside the row.
            let (a, b) = unsafe {
                (_mm512_maskz_loadu_ps(lo_mask, row), _mm512_maskz_loadu_ps(hi_mask, row.wrapping_add(16)))
            };
            for &(idx, keep) in taps {
                let t = _mm512_permutex2var_ps(a, idx, b);
                acc = if g.avg {
                    _mm512_mask_add_ps(acc, keep, acc, t)
                } else {
                    _mm512_mask_max_ps(acc, keep, t, acc)
                };
            }
        }
        if g.avg {
            // SAFETY: windows holds this row's out_w divisors; masked lanes read nothing.
            let d = unsafe { _mm512_maskz_loadu_ps(out_mask, windows.as_ptr().add(oy * g.out_w)) };
            acc = _mm512_maskz_div_ps(out_mask, acc, d);
        }
        // SAFETY: the row holds out_w floats.
        unsafe { _mm512_mask_storeu_ps(orow.as_mut_ptr(), out_mask, acc) };
    }
}

/// One plane, separably: per output row, the valid window rows are first combined
/// column-wise into `v` (full input width, contiguous: vectorises), then each output
/// combines its valid columns of `v`. Max is exact in any order; an average sums in
/// (ky, kx) order per column, then across columns (within 1 ulp-level of the twin's
/// row-major order). The max is `if v > o` (planes holding a NaN never come here).
#[inline(always)]
fn pool_plane(
    g: &RowGeometry,
    ranges: &[(usize, usize)],
    windows: &[f32],
    src: &[f32],
    dst: &mut [f32],
    rows: &mut RowScratch,
) {
    // Rows are started with block copies, not `fill`: a small scalar fill followed by vector
    // loads of the same bytes stalls on store forwarding. (The constant rows are statics
    // and the work rows the caller's: initialising 6 KiB of arrays per plane cost more than
    // pooling a 14x14 plane.)
    let init: &[f32; 512] = if g.avg { &ZEROS } else { &MINS };
    let RowScratch { v, ph } = rows;
    let wide = g.in_w <= v.len() && g.out_w <= init.len();
    for (oy, orow) in dst.chunks_exact_mut(g.out_w).enumerate() {
        let mut ys = (0..g.kh).map(|ky| oy * g.sh + ky).filter(|&y| y >= g.pt && y - g.pt < g.in_h);
        if !wide {
            // Very wide rows: combine straight from the input rows.
            orow.fill(init[0]);
            for y in ys {
                let irow = &src[(y - g.pt) * g.in_w..][..g.in_w];
                horizontal(g, ranges, irow, orow);
            }
        } else {
            orow.copy_from_slice(&init[..g.out_w]);
            if let Some(first) = ys.next() {
                let v = &mut v[..g.in_w];
                v.copy_from_slice(&src[(first - g.pt) * g.in_w..][..g.in_w]);
                for y in ys {
                    combine(v, &src[(y - g.pt) * g.in_w..][..g.in_w], g.avg);
                }
                if !(g.sw == 2 && horizontal_stride2(g, ranges, v, orow, ph)) {
                    horizontal(g, ranges, v, orow);
                }
            }
        }
        if g.avg {
            for (o, &d) in orow.iter_mut().zip(&windows[oy * g.out_w..]) {
                *o /= d;
            }
        }
    }
}

/// `orow[ox] ⊕= row[ox·sw + kx − pl]` for every kx, over the columns where that is inside.
#[inline(always)]
fn horizontal(g: &RowGeometry, ranges: &[(usize, usize)], row: &[f32], orow: &mut [f32]) {
    for (kx, &(lo, hi)) in ranges.iter().enumerate() {
        if lo >= hi {
            continue;
        }
        let taps = &row[lo * g.sw + kx - g.pl..];
        let outs = &mut orow[lo..hi];
        let n = outs.len();
        match g.sw {
            1 => combine(outs, &taps[..n], g.avg),
            2 if taps.len() >= 2 * n => {
                combine_iter(outs, taps[..2 * n].chunks_exact(2).map(|p| p[0]), g.avg)
            }
            s => combine_iter(outs, taps.iter().step_by(s).copied(), g.avg),
        }
    }
}

/// [`horizontal`] for stride 2 on AVX-512: the row is split into its even and odd columns
/// with two permutes per 32 values (`ph[..half]` even, `ph[half..]` odd), so each kx reads one
/// contiguous run. Returns false (nothing done) without AVX-512, or for rows under 32
/// (measured slower there than the strided loop) or over 512.
#[inline(always)]
fn horizontal_stride2(
    g: &RowGeometry,
    ranges: &[(usize, usize)],
    row: &[f32],
    orow: &mut [f32],
    ph: &mut [f32; 544],
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && (2..=512).contains(&row.len()) {
        let half = row.len().div_ceil(32) * 16;
        // SAFETY: the feature was detected; ph holds 2·half ≤ 544 floats.
        unsafe { deinterleave2_avx512(row, ph, half) };
        for (kx, &(lo, hi)) in ranges.iter().enumerate() {
            if lo >= hi {
                continue;
            }
            let c = lo * 2 + kx - g.pl;
            let start = (c % 2) * half + c / 2;
            combine(&mut orow[lo..hi], &ph[start..start + (hi - lo)], g.avg);
        }
        return true;
    }
    let _ = (g, ranges, row, orow, ph);
    false
}

/// `ph[j] = row[2j]`, `ph[half + j] = row[2j + 1]`, 32 values at a time (masked tail).
///
/// # Safety
/// The CPU has AVX-512F; `ph` holds `2·half` floats with `half = ceil(row.len() / 32)·16`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn deinterleave2_avx512(row: &[f32], ph: &mut [f32], half: usize) {
    use std::arch::x86_64::*;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let n = row.len();
    let mask = |from: usize| -> __mmask16 {
        let left = n.saturating_sub(from);
        if left >= 16 {
            0xffff
        } else {
            // left < 16: the mask fits.
            #[allow(clippy::cast_possible_truncation)]
            let m = ((1u32 << left) - 1) as u16;
            m
        }
    };
    for (t, i) in (0..n).step_by(32).enumerate() {
        // SAFETY: masked loads read only lanes inside `row`; the stores write 16 floats at
        // t·16 < half and half + t·16 < 2·half.
        unsafe {
            let a = _mm512_maskz_loadu_ps(mask(i), row.as_ptr().add(i));
            let b = _mm512_maskz_loadu_ps(mask(i + 16), row.as_ptr().wrapping_add(i + 16));
            _mm512_storeu_ps(ph.as_mut_ptr().add(t * 16), _mm512_permutex2var_ps(a, even, b));
            _mm512_storeu_ps(ph.as_mut_ptr().add(half + t * 16), _mm512_permutex2var_ps(a, odd, b));
        }
    }
}

#[inline(always)]
fn combine(outs: &mut [f32], taps: &[f32], avg: bool) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature was detected.
        return unsafe { combine_avx512(outs, taps, avg) };
    }
    if avg {
        for (o, &v) in outs.iter_mut().zip(taps) {
            *o += v;
        }
    } else {
        for (o, &v) in outs.iter_mut().zip(taps) {
            *o = if v > *o { v } else { *o };
        }
    }
}

#[inline(always)]
fn combine_iter(outs: &mut [f32], taps: impl Iterator<Item = f32>, avg: bool) {
    if avg {
        for (o, v) in outs.iter_mut().zip(taps) {
            *o += v;
        }
    } else {
        for (o, v) in outs.iter_mut().zip(taps) {
            *o = if v > *o { v } else { *o };
        }
    }
}

/// [`combine`] in 16-lane vectors with a masked tail. `max_ps(v, o)` is `v > o ? v : o`,
/// the portable loop's expression.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn combine_avx512(outs: &mut [f32], taps: &[f32], avg: bool) {
    use std::arch::x86_64::*;
    let n = outs.len().min(taps.len());
    let (o, t) = (outs.as_mut_ptr(), taps.as_ptr());
    let mut i = 0;
    while i < n {
        let m: __mmask16 = if n - i >= 16 { 0xffff } else { (1u16 << (n - i)) - 1 };
        // SAFETY: lanes i..i+16 under the mask are inside both slices.
        unsafe {
            let a = _mm512_maskz_loadu_ps(m, o.add(i));
            let v = _mm512_maskz_loadu_ps(m, t.add(i));
            let r = if avg { _mm512_add_ps(a, v) } else { _mm512_max_ps(v, a) };
            _mm512_mask_storeu_ps(o.add(i), m, r);
        }
        i += 16;
    }
}
