//! One plane pooled in 8-output vectors on AVX2 (the AVX-512 rows kernel's counterpart for
//! CPUs without AVX-512), separably: first each input row's reduction across the window
//! (per 8-output chunk and kx, the chunk's taps are one load at stride 1 or two loads split
//! into their even columns at stride 2; columns outside the row read as the identity, −inf
//! or 0 for the average), written as whole vectors to a row buffer; then each output row
//! reduces its window's rows of that buffer. Every input row is reduced across once, not
//! once per output row that reads it, and chunks inside the row take plain loads: a 3x3
//! stride-2 max over 28x28 planes issues about a fifth of the instructions of the direct
//! (window row x kx per output chunk) loop it replaces. The average sums each row's taps in
//! kx order, then the rows in ky order (the twin sums in (ky, kx) order: equal up to
//! rounding); the maximum is `max_ps(tap, acc)`, which drops NaN, so the kernel reports
//! whether any tap was NaN and the caller pools that plane on the twin.

use std::arch::x86_64::*;

use super::RowGeometry;

/// Whether the kernel covers the window: stride 1 or 2 across, at most 8 taps across.
pub(super) fn applies(g: &RowGeometry, kw: usize) -> bool {
    (1..=2).contains(&g.sw) && (1..=8).contains(&kw)
}

/// Columns `x .. x + 8` of `row` (`in_w` long), the identity where outside it.
///
/// # Safety
/// AVX2 is available; `row` points at a row of `in_w` floats.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn columns(row: *const f32, x: isize, in_w: isize, identity: __m256) -> __m256 {
    if x >= 0 && x + 8 <= in_w {
        // SAFETY: all eight columns are inside the row.
        return unsafe { _mm256_loadu_ps(row.offset(x)) };
    }
    // Row widths and offsets are far below 2^31 (planes are indexed by u32).
    #[allow(clippy::cast_possible_truncation)]
    let (x32, w32) = (x as i32, in_w as i32);
    let idx = _mm256_add_epi32(_mm256_set1_epi32(x32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    let keep = _mm256_and_si256(
        _mm256_cmpgt_epi32(idx, _mm256_set1_epi32(-1)),
        _mm256_cmpgt_epi32(_mm256_set1_epi32(w32), idx),
    );
    // SAFETY: masked-out lanes read no memory (maskload suppresses their faults); the
    // others are inside the row.
    let v = unsafe { _mm256_maskload_ps(row.wrapping_offset(x), keep) };
    _mm256_blendv_ps(identity, v, _mm256_castsi256_ps(keep))
}

/// Pools one plane; returns whether a tap of the maximum was NaN. `h` is scratch, reused
/// between planes.
///
/// # Safety
/// AVX2 is available; [`applies`]`(g, kw)`; `src` holds the `in_h · in_w` plane, `dst`
/// and (for the average) `windows` `out_h · out_w` values.
pub(super) unsafe fn pool_plane_rows_avx2(
    g: &RowGeometry,
    kw: usize,
    windows: &[f32],
    src: &[f32],
    dst: &mut [f32],
    h: &mut Vec<f32>,
) -> bool {
    // SAFETY: the caller's contract; KW and SW are the layer's where nonzero.
    unsafe {
        match (kw, g.sw) {
            (3, 1) => rows::<3, 1>(g, kw, windows, src, dst, h),
            (3, 2) => rows::<3, 2>(g, kw, windows, src, dst, h),
            (2, 2) => rows::<2, 2>(g, kw, windows, src, dst, h),
            _ => rows::<0, 0>(g, kw, windows, src, dst, h),
        }
    }
}

/// [`pool_plane_rows_avx2`] with the tap loop unrolled for the common windows (`KW`, `SW`
/// nonzero: the window's width and stride; 0 reads them from `kw` and `g`).
///
/// # Safety
/// As [`pool_plane_rows_avx2`]; `KW` and `SW` are 0 or equal to kw and the stride.
#[target_feature(enable = "avx2")]
unsafe fn rows<const KW: usize, const SW: usize>(
    g: &RowGeometry,
    kw: usize,
    windows: &[f32],
    src: &[f32],
    dst: &mut [f32],
    h: &mut Vec<f32>,
) -> bool {
    let kw = if KW == 0 { kw } else { KW };
    let sw = if SW == 0 { g.sw } else { SW };
    let identity = _mm256_set1_ps(if g.avg { 0.0 } else { f32::NEG_INFINITY });
    #[allow(clippy::cast_possible_wrap)]
    let (in_w, pl) = (g.in_w as isize, g.pl as isize);
    let chunks = g.out_w.div_ceil(8);
    let mut nan = _mm256_setzero_ps();
    // The input rows some window reads (all but the bottom ones a floor-mode window skips).
    let out_h = dst.len() / g.out_w;
    let rows_read = ((out_h.max(1) - 1) * g.sh + g.kh).saturating_sub(g.pt).min(g.in_h);
    h.resize(rows_read * chunks * 8, 0.0);
    // Input columns one chunk's loads span past its first tap: 8 (stride 1) or 16.
    #[allow(clippy::cast_possible_wrap)]
    let span = (8 * sw + kw - 1) as isize;
    for (y, hrow) in h.chunks_exact_mut(chunks * 8).enumerate() {
        let row = src[y * g.in_w..].as_ptr();
        for (c, out) in hrow.chunks_exact_mut(8).enumerate() {
            #[allow(clippy::cast_possible_wrap)]
            let x0 = (8 * c * sw) as isize - pl;
            let inside = x0 >= 0 && x0 + span <= in_w;
            // SAFETY: the feature is enabled; `row` starts a row of in_w floats; inside the
            // row, every load is within it.
            let load = |x: isize| unsafe {
                if inside {
                    _mm256_loadu_ps(row.offset(x))
                } else {
                    columns(row, x, in_w, identity)
                }
            };
            if KW == 3 && SW == 2 {
                // Columns x0 .. x0 + 18 in four loads; the window's three taps are the
                // even columns of the first two, their odd columns, and the even columns
                // of the last two. Both shuffles keep the same lane order, so the taps are
                // reduced first and put in order by one permute; one unordered compare
                // per pair of loads finds NaN in any of them.
                let t = {
                    let (lo, hi, lo2, hi2) = (load(x0), load(x0 + 8), load(x0 + 2), load(x0 + 10));
                    let (e, o, e2) = (
                        _mm256_shuffle_ps::<0x88>(lo, hi),
                        _mm256_shuffle_ps::<0xDD>(lo, hi),
                        _mm256_shuffle_ps::<0x88>(lo2, hi2),
                    );
                    let r = if g.avg {
                        _mm256_add_ps(_mm256_add_ps(e, o), e2)
                    } else {
                        nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(lo, hi));
                        nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(lo2, hi2));
                        _mm256_max_ps(_mm256_max_ps(e, o), e2)
                    };
                    _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(r)))
                };
                // SAFETY: `out` holds 8 floats.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr(), t) };
                continue;
            }
            let mut acc = identity;
            for kx in 0..kw {
                #[allow(clippy::cast_possible_wrap)]
                let x = x0 + kx as isize;
                let t = if sw == 1 {
                    load(x)
                } else {
                    // Lane i takes column x + 2i: the even columns of 16.
                    let pairs = _mm256_shuffle_ps::<0x88>(load(x), load(x + 8));
                    _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(pairs)))
                };
                if g.avg {
                    acc = _mm256_add_ps(acc, t);
                } else {
                    nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(t, t));
                    acc = _mm256_max_ps(t, acc);
                }
            }
            // SAFETY: `out` holds 8 floats.
            unsafe { _mm256_storeu_ps(out.as_mut_ptr(), acc) };
        }
    }
    for (oy, orow) in dst.chunks_exact_mut(g.out_w).enumerate() {
        let ys = oy * g.sh;
        // The window's rows inside the input.
        let (y0, y1) = (ys.max(g.pt) - g.pt, (ys + g.kh).min(g.in_h + g.pt) - g.pt);
        for (c, out) in orow.chunks_mut(8).enumerate() {
            let mut acc = identity;
            for y in y0..y1 {
                // SAFETY: row y < rows_read of the buffer holds `chunks` vectors.
                let t = unsafe { _mm256_loadu_ps(h.as_ptr().add((y * chunks + c) * 8)) };
                acc = if g.avg { _mm256_add_ps(acc, t) } else { _mm256_max_ps(t, acc) };
            }
            let n = out.len();
            let mut lanes = [1.0f32; 8];
            if g.avg {
                lanes[..n].copy_from_slice(&windows[oy * g.out_w + 8 * c..][..n]);
                // SAFETY: `lanes` holds 8 floats.
                acc = _mm256_div_ps(acc, unsafe { _mm256_loadu_ps(lanes.as_ptr()) });
            }
            if n == 8 {
                // SAFETY: `out` holds 8 floats.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr(), acc) };
            } else {
                // SAFETY: `lanes` holds 8 floats.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
                out.copy_from_slice(&lanes[..n]);
            }
        }
    }
    _mm256_movemask_ps(nan) != 0
}
