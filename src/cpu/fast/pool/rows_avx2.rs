//! One plane pooled in 8-output vectors on AVX2, everything in registers (the AVX-512
//! rows kernel's counterpart for CPUs without AVX-512): per output row, 8-output chunk,
//! window row and kx, the chunk's taps are one load (stride 1) or two loads split into
//! their even columns (stride 2); columns outside the row read as the identity (−inf, or 0
//! for the average). The average sums in (ky, kx) order as the twin does; the maximum is
//! `max_ps(tap, acc)`, which drops NaN, so the kernel reports whether any tap was NaN and
//! the caller pools that plane on the twin.

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

/// Pools one plane; returns whether a tap of the maximum was NaN.
///
/// # Safety
/// AVX2 is available; [`applies`]`(g, kw)`; `src` holds the `in_h · in_w` plane, `dst`
/// and (for the average) `windows` `out_h · out_w` values.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn pool_plane_rows_avx2(
    g: &RowGeometry,
    kw: usize,
    windows: &[f32],
    src: &[f32],
    dst: &mut [f32],
) -> bool {
    let identity = _mm256_set1_ps(if g.avg { 0.0 } else { f32::NEG_INFINITY });
    #[allow(clippy::cast_possible_wrap)]
    let (in_w, pl, sw) = (g.in_w as isize, g.pl as isize, g.sw as isize);
    let mut nan = _mm256_setzero_ps();
    for (oy, orow) in dst.chunks_exact_mut(g.out_w).enumerate() {
        let ys = oy * g.sh;
        // The window's rows inside the input.
        let (y0, y1) = (ys.max(g.pt), (ys + g.kh).min(g.in_h + g.pt));
        for (c, out) in orow.chunks_mut(8).enumerate() {
            #[allow(clippy::cast_possible_wrap)]
            let x0 = (8 * c) as isize * sw - pl;
            let mut acc = identity;
            for y in y0..y1 {
                let row = src[(y - g.pt) * g.in_w..].as_ptr();
                for kx in 0..kw {
                    #[allow(clippy::cast_possible_wrap)]
                    let x = x0 + kx as isize;
                    // SAFETY: the feature is enabled; `row` starts a row of in_w floats.
                    let t = unsafe {
                        if sw == 1 {
                            columns(row, x, in_w, identity)
                        } else {
                            // Lane i takes column x + 2i: the even columns of 16.
                            let (a, b) =
                                (columns(row, x, in_w, identity), columns(row, x + 8, in_w, identity));
                            let pairs = _mm256_shuffle_ps::<0x88>(a, b);
                            _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(pairs)))
                        }
                    };
                    if g.avg {
                        acc = _mm256_add_ps(acc, t);
                    } else {
                        nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(t, t));
                        acc = _mm256_max_ps(t, acc);
                    }
                }
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
