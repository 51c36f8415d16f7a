//! Pooling on the fast path: the same windows and arithmetic as the `pool2d` twin, with the
//! mode and the input form resolved outside the loops, planes batched into a few tasks per
//! thread, and no per-element dispatch.

use std::sync::Arc;

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod flat_avx2;
mod mapped;
#[cfg(target_arch = "x86_64")]
mod rows_avx2;

use super::elementwise::Expansion;
use crate::cpu::nan::any_nan;
use crate::cpu::pool2d::{pool_plane as pool_plane_twin, pool_windows, window_axis};
use crate::cpu::MIN_PARALLEL_ELEMENTS;
use crate::interp::InterpMap;
use crate::params::Pool2dParams;

/// Max or average pooling with the `pool2d` twin's arguments: a dense `[planes, in_h,
/// in_w]` input, or a compact `[planes, N]` one read through `map`: through a nearest
/// map, windows of few taps read the compact plane at their taps' indices
/// ([`mapped::MappedWindows`]) and global pooling weighs each compact value by the
/// positions that read it ([`mapped::MappedGlobal`]); otherwise each plane is first
/// expanded into a per-thread dense plane, then pooled as a dense one. Dense planes
/// narrower than a vector (without AVX-512) take the window table too.
#[track_caller]
pub fn pool2d_fast(p: &Pool2dParams, input: &[f32], map: Option<&InterpMap>, out: &mut [f32]) {
    let in_map = map.map_or(&[][..], InterpMap::table);
    let out_plane = (p.out_h * p.out_w) as usize;
    let in_plane = (p.in_h * p.in_w) as usize;
    let src_plane = p.in_plane as usize;
    let planes = p.planes as usize;
    let kind = p.in_map_kind;
    assert!(out.len() >= out_plane * planes && input.len() >= src_plane * planes);
    // The average's divisor per output position (empty for the maximum).
    let windows = if p.mode == 1 { divisors(p) } else { Vec::new() };
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
    let has_rows_kernel = rows_kernel_available(&geo, kw);
    // Dense planes narrower than a vector take the window table too (not on AVX-512,
    // whose 16-lane register kernel was measured on them).
    #[cfg(target_arch = "x86_64")]
    let avx512 = std::arch::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    let narrow = kind == 0 && in_w < 8 && !avx512;
    let mapped = match () {
        _ if global => None,
        _ if narrow => Some(Arc::new(mapped::MappedWindows::dense(p))),
        // Built once per map and layer (the key), kept with the map.
        _ => map.and_then(|m| {
            let key = [b"pool2d".as_slice(), bytemuck::bytes_of(p)].concat();
            let windows = m.derived(&key, || mapped::MappedWindows::new(p, in_map).map(Arc::new));
            windows.as_ref().clone()
        }),
    };
    let mapped_global = if global { mapped::MappedGlobal::new(p, in_map) } else { None };
    #[cfg(target_arch = "x86_64")]
    let flat = if global || mapped.is_some() { None } else { flat_avx2::Flat::new(&geo, kw, &windows) };
    let expansion = Expansion::new(kind, in_map, in_plane);
    let body = |(dst, src): (&mut [f32], &[f32])| {
        let expands = kind != 0 && mapped.is_none() && mapped_global.is_none();
        let mut dense = vec![0.0f32; if expands { in_plane } else { 0 }];
        let mut rows = RowScratch { v: [0.0; 512], ph: [0.0; 544], h: Vec::new() };
        for (dst, src) in dst.chunks_exact_mut(out_plane).zip(src.chunks_exact(src_plane)) {
            if let Some(m) = &mapped_global {
                if !geo.avg && any_nan_fast(src) {
                    pool_plane_twin(p, &pool_windows(p), kind, in_map, src, dst);
                } else {
                    dst[0] = m.pool(src, windows.first().copied().unwrap_or(1.0));
                }
                continue;
            }
            if let Some(m) = &mapped {
                if !geo.avg && any_nan_fast(src) {
                    pool_plane_twin(p, &pool_windows(p), kind, in_map, src, dst);
                } else {
                    m.pool(src, dst);
                }
                continue;
            }
            let plane = if kind == 0 {
                &src[..in_plane]
            } else {
                expansion.expand(src, &mut dense);
                &dense[..]
            };
            // The vector maxima drop NaN; a plane holding one is pooled again by the twin's
            // NaN-keeping loop (rare). The register kernel reports a NaN among the values it
            // loaded; the other paths check the plane first (one more pass over it).
            #[cfg(target_arch = "x86_64")]
            if let Some(f) = &flat {
                // SAFETY: `Flat::new` found AVX2; the plane and its outputs are this layer's.
                if unsafe { f.pool(&geo, plane, dst, &mut rows.h) } && !geo.avg {
                    pool_plane_twin(p, &pool_windows(p), 0, &[], plane, dst);
                }
                continue;
            }
            let rows_kernel = has_rows_kernel && !global;
            if !geo.avg && !rows_kernel && any_nan_fast(plane) {
                pool_plane_twin(p, &pool_windows(p), 0, &[], plane, dst);
            } else if global {
                dst[0] = if geo.avg { sum_lanes(plane) / windows[0] } else { max_lanes(plane) };
            } else if pool_plane_dispatch(&geo, &ranges, &windows, plane, dst, &mut rows) && !geo.avg {
                pool_plane_twin(p, &pool_windows(p), 0, &[], plane, dst);
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

/// The average's divisor of every output position, `[out_h · out_w]`: the window's rows
/// times its columns ([`window_axis`]), each axis computed once instead of per position.
fn divisors(p: &Pool2dParams) -> Vec<f32> {
    let include_pad = p.count_include_pad != 0;
    let cols: Vec<u32> = (0..p.out_w)
        .map(|ox| window_axis(ox, p.stride_w, p.kernel_w, p.in_w, (p.pad_left, p.pad_right), include_pad).2)
        .collect();
    let mut out = Vec::with_capacity((p.out_h * p.out_w) as usize);
    for oy in 0..p.out_h {
        let rows = window_axis(oy, p.stride_h, p.kernel_h, p.in_h, (p.pad_top, p.pad_bottom), include_pad).2;
        #[allow(clippy::cast_precision_loss)]
        out.extend(cols.iter().map(|&c| (rows * c) as f32));
    }
    out
}

/// [`any_nan`] in AVX-512 vectors where the CPU has them (the closure calling it is not
/// compiled for AVX-512, so the portable loop would run in 4-lane vectors).
fn any_nan_fast(v: &[f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        #[target_feature(enable = "avx512f")]
        unsafe fn wide(v: &[f32]) -> bool {
            any_nan(v)
        }
        // SAFETY: the feature was detected.
        return unsafe { wide(v) };
    }
    any_nan(v)
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
    /// The AVX2 rows kernel's reduced input rows.
    h: Vec<f32>,
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

/// Pools one plane on the best path for the CPU and window; returns whether the register
/// kernel met a NaN (the others never report one: the caller checked the plane).
fn pool_plane_dispatch(
    g: &RowGeometry,
    ranges: &[(usize, usize)],
    windows: &[f32],
    src: &[f32],
    dst: &mut [f32],
    rows: &mut RowScratch,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            if rows_kernel_applies(g, ranges.len()) {
                // SAFETY: the feature was detected; the window fits the kernel; KW and SW
                // are the layer's where nonzero.
                return unsafe {
                    match (ranges.len(), g.sw) {
                        (3, 1) => pool_plane_rows_avx512::<3, 1>(g, ranges, windows, src, dst),
                        (3, 2) => pool_plane_rows_avx512::<3, 2>(g, ranges, windows, src, dst),
                        (2, 2) => pool_plane_rows_avx512::<2, 2>(g, ranges, windows, src, dst),
                        _ => pool_plane_rows_avx512::<0, 0>(g, ranges, windows, src, dst),
                    }
                };
            }
            // SAFETY: the feature was detected.
            unsafe { pool_plane_avx512(g, ranges, windows, src, dst, rows) };
            return false;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            if rows_avx2::applies(g, ranges.len()) {
                // SAFETY: the feature was detected; the window fits the kernel.
                return unsafe {
                    rows_avx2::pool_plane_rows_avx2(g, ranges.len(), windows, src, dst, &mut rows.h)
                };
            }
            // SAFETY: the feature was detected.
            unsafe { pool_plane_avx2(g, ranges, windows, src, dst, rows) };
            return false;
        }
    }
    pool_plane(g, ranges, windows, src, dst, rows);
    false
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

/// Whether this CPU runs `g`'s planes on a register kernel ([`pool_plane_rows_avx512`] or
/// the AVX2 one), which reports NaN itself.
fn rows_kernel_available(g: &RowGeometry, kw: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        return rows_kernel_applies(g, kw);
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        return rows_avx2::applies(g, kw);
    }
    let _ = (g, kw);
    false
}

/// Whether [`pool_plane_rows_avx512`] covers the window: 16 outputs' taps span
/// `15·sw + kw` input columns, which must fit the three vectors it loads, and a row has at
/// most 32 chunks of 16 outputs.
#[cfg(target_arch = "x86_64")]
fn rows_kernel_applies(g: &RowGeometry, kw: usize) -> bool {
    (1..=3).contains(&g.sw) && 15 * g.sw + kw <= 48 && g.out_w <= 16 * 32
}

/// A plane in 16-output vectors, everything in registers: per output row, 16-output chunk
/// and window row, the input columns the chunk's windows cover (`15·sw + kw` from
/// `ox0·sw − pl`) are loaded as three vectors, lanes outside the row set to the identity
/// (−inf, or 0 for the average); each kx's taps (lane i takes column `i·sw + kx`) are then
/// picked out of the first two vectors by one permute, or of the last two by a second one
/// blended in for lanes past 32. The average sums in (ky, kx) order as the twin does; the
/// max is `max_ps(tap, acc)`, which drops NaN: the kernel returns whether any value it
/// loaded was NaN, and the caller then pools the plane on the twin. The common windows
/// (3x3 and 2x2, stride 1 and 2) get the tap loop unrolled (`KW`, `SW` nonzero). Replaces a
/// separable path whose row buffers went through memory between steps (stalled on store
/// forwarding: GoogLeNet's 3x3 stride-1 pools at 28x28 ran at 0.8 G inputs/s).
///
/// # Safety
/// AVX-512F is available; [`rows_kernel_applies`]; `src` holds the plane, `dst` and
/// (for the average) `windows` `out_h·out_w` values; `ranges.len()` is kw; `KW` and `SW`
/// are 0 or equal to kw and sw.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pool_plane_rows_avx512<const KW: usize, const SW: usize>(
    g: &RowGeometry,
    ranges: &[(usize, usize)],
    windows: &[f32],
    src: &[f32],
    dst: &mut [f32],
) -> bool {
    use std::arch::x86_64::*;
    let kw = if KW > 0 { KW } else { ranges.len() };
    let sw = if SW > 0 { SW } else { g.sw };
    // Per kx: permute indices into vectors (0, 1) and (1, 2), and the lanes taking the second.
    let mut taps = [(_mm512_setzero_si512(), _mm512_setzero_si512(), 0u16); 48];
    for (kx, tap) in taps.iter_mut().enumerate().take(kw) {
        let (mut lo, mut hi, mut second) = ([0i32; 16], [0i32; 16], 0u16);
        for i in 0..16 {
            let off = i * sw + kx;
            #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
            {
                lo[i] = (off & 31) as i32;
                hi[i] = (off.saturating_sub(16) & 31) as i32;
            }
            if off >= 32 {
                second |= 1 << i;
            }
        }
        // SAFETY: both arrays hold 16 i32.
        *tap = unsafe {
            (_mm512_loadu_si512(lo.as_ptr().cast()), _mm512_loadu_si512(hi.as_ptr().cast()), second)
        };
    }
    let taps = &taps[..kw];
    let needs_third = 15 * sw + kw > 32;
    let identity = _mm512_set1_ps(if g.avg { 0.0 } else { f32::NEG_INFINITY });
    // Per 16-output chunk: its first input column, the lanes of its three input vectors
    // inside the row, and its output lanes.
    #[allow(clippy::cast_possible_wrap)]
    let (in_w, pl) = (g.in_w as isize, g.pl as isize);
    let inside = |x0: isize| -> u16 {
        let first = (-x0).clamp(0, 16);
        let last = (in_w - x0).clamp(0, 16);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let m = if last <= first { 0 } else { ((1u32 << last) - (1u32 << first)) as u16 };
        m
    };
    let mut chunks = [(0isize, [0u16; 3], 0u16); 32];
    let n_chunks = g.out_w.div_ceil(16).min(32);
    for (c, chunk) in chunks.iter_mut().enumerate().take(n_chunks) {
        let n = (g.out_w - 16 * c).min(16);
        #[allow(clippy::cast_possible_wrap)]
        let x0 = (16 * c * sw) as isize - pl;
        #[allow(clippy::cast_possible_truncation)]
        let out_mask = if n == 16 { 0xffff } else { ((1u32 << n) - 1) as u16 };
        *chunk = (x0, [inside(x0), inside(x0 + 16), inside(x0 + 32)], out_mask);
    }
    // Lanes that loaded a NaN (max only).
    let mut nan: __mmask16 = 0;
    for (oy, orow) in dst.chunks_exact_mut(g.out_w).enumerate() {
        let ys = oy * g.sh;
        // The window's rows inside the input.
        let (y0, y1) = (ys.max(g.pt), (ys + g.kh).min(g.in_h + g.pt));
        for (c, &(x0, masks, out_mask)) in chunks[..n_chunks].iter().enumerate() {
            let mut acc = identity;
            for y in y0..y1 {
                let row = src[(y - g.pt) * g.in_w..].as_ptr();
                // SAFETY: the masks keep every load inside the row (masked-out lanes read no
                // memory, whatever their address).
                let (v0, v1, v2) = unsafe {
                    (
                        _mm512_mask_loadu_ps(identity, masks[0], row.wrapping_offset(x0)),
                        _mm512_mask_loadu_ps(identity, masks[1], row.wrapping_offset(x0 + 16)),
                        if needs_third {
                            _mm512_mask_loadu_ps(identity, masks[2], row.wrapping_offset(x0 + 32))
                        } else {
                            identity
                        },
                    )
                };
                if !g.avg {
                    let unordered = |v| _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
                    nan |= unordered(v0) | unordered(v1) | unordered(v2);
                }
                for &(lo, hi, second) in taps {
                    let mut t = _mm512_permutex2var_ps(v0, lo, v1);
                    if needs_third && second != 0 {
                        t = _mm512_mask_blend_ps(second, t, _mm512_permutex2var_ps(v1, hi, v2));
                    }
                    acc = if g.avg { _mm512_add_ps(acc, t) } else { _mm512_max_ps(t, acc) };
                }
            }
            let at = oy * g.out_w + 16 * c;
            if g.avg {
                // SAFETY: windows holds out_h·out_w divisors; masked lanes read nothing.
                let d = unsafe { _mm512_maskz_loadu_ps(out_mask, windows.as_ptr().add(at)) };
                acc = _mm512_maskz_div_ps(out_mask, acc, d);
            }
            // SAFETY: the row holds out_w floats from 16·c, those under the mask.
            unsafe { _mm512_mask_storeu_ps(orow.as_mut_ptr().add(16 * c), out_mask, acc) };
        }
    }
    nan != 0
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
    let RowScratch { v, ph, .. } = rows;
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
        // SAFETY: the feature was detected; ph holds 2·half ≤ 544 floats: entry j of
        // half `c mod 2` is column 2j + c.
        unsafe { super::transpose::split_pairs_avx512(row, 0, (half, half), ph) };
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
