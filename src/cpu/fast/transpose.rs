//! Register transposes of `f32` (16 × 16 in AVX-512 registers, 8 × 8 in AVX2 ones) and
//! stride-2 row splits, for kernels that change between channel-major planes and
//! channel-interleaved vectors, or between a row and its column phases.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(target_arch = "x86_64")]
use crate::cpu::gemm::avx2::first_lanes;

/// The transpose of `r`: `out[i][j]` is `r[j][i]`.
///
/// Three rounds: `unpacklo/hi_ps` pairs rows, `shuffle_ps` makes each 128-bit lane hold
/// one column of four rows, and two rounds of `shuffle_f32x4` gather each column's four
/// lanes (64 shuffles in all). Always inlined, into callers compiled for AVX-512 (a
/// `target_feature` function cannot be forced inline, and a call clobbers every vector
/// register).
///
/// # Safety
/// The CPU has AVX-512F, and the caller is compiled for it.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn transpose16(mut r: [__m512; 16]) -> [__m512; 16] {
    // SAFETY (every intrinsic below): the caller's contract, AVX-512F.
    let mut t = [unsafe { _mm512_setzero_ps() }; 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4i + m]: in 128-bit lane k, column 4k + m of rows 4i .. 4i + 4.
    let mut u = [_mm512_setzero_ps(); 16];
    for i in 0..4 {
        u[4 * i] = _mm512_shuffle_ps::<0x44>(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_shuffle_ps::<0xEE>(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_shuffle_ps::<0x44>(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_shuffle_ps::<0xEE>(t[4 * i + 1], t[4 * i + 3]);
    }
    for m in 0..4 {
        let v1 = _mm512_shuffle_f32x4::<0x88>(u[m], u[4 + m]);
        let v2 = _mm512_shuffle_f32x4::<0xDD>(u[m], u[4 + m]);
        let v3 = _mm512_shuffle_f32x4::<0x88>(u[8 + m], u[12 + m]);
        let v4 = _mm512_shuffle_f32x4::<0xDD>(u[8 + m], u[12 + m]);
        r[m] = _mm512_shuffle_f32x4::<0x88>(v1, v3);
        r[4 + m] = _mm512_shuffle_f32x4::<0x88>(v2, v4);
        r[8 + m] = _mm512_shuffle_f32x4::<0xDD>(v1, v3);
        r[12 + m] = _mm512_shuffle_f32x4::<0xDD>(v2, v4);
    }
    r
}

/// The transpose of `r`: `out[i][j]` is `r[j][i]` (8 × 8).
///
/// Three rounds: `unpacklo/hi_ps` pairs rows, `shuffle_ps` gathers four rows per 128-bit
/// lane, `permute2f128_ps` joins the lanes (24 shuffles). Always inlined, into callers
/// compiled for AVX2.
///
/// # Safety
/// The CPU has AVX2, and the caller is compiled for it.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) unsafe fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    // SAFETY: AVX2 by the caller's contract (the intrinsics need AVX only).
    unsafe {
        let (t0, t1) = (_mm256_unpacklo_ps(r[0], r[1]), _mm256_unpackhi_ps(r[0], r[1]));
        let (t2, t3) = (_mm256_unpacklo_ps(r[2], r[3]), _mm256_unpackhi_ps(r[2], r[3]));
        let (t4, t5) = (_mm256_unpacklo_ps(r[4], r[5]), _mm256_unpackhi_ps(r[4], r[5]));
        let (t6, t7) = (_mm256_unpacklo_ps(r[6], r[7]), _mm256_unpackhi_ps(r[6], r[7]));
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        [
            _mm256_permute2f128_ps::<0x20>(u0, u4),
            _mm256_permute2f128_ps::<0x20>(u1, u5),
            _mm256_permute2f128_ps::<0x20>(u2, u6),
            _mm256_permute2f128_ps::<0x20>(u3, u7),
            _mm256_permute2f128_ps::<0x31>(u0, u4),
            _mm256_permute2f128_ps::<0x31>(u1, u5),
            _mm256_permute2f128_ps::<0x31>(u2, u6),
            _mm256_permute2f128_ps::<0x31>(u3, u7),
        ]
    }
}

/// [`split_pairs_avx512`] on AVX2: 16 values at a time, by one `shuffle_ps` and one
/// `permute4x64_pd` per phase.
///
/// # Safety
/// AVX2 is available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn split_pairs_avx2(
    row: &[f32],
    pad_left: usize,
    (wq, ld): (usize, usize),
    dst: &mut [f32],
) {
    let (pe, po) = (pad_left % 2, 1 - pad_left % 2);
    let (qe, qo) = (pad_left / 2, pad_left.div_ceil(2));
    // Every column lands inside its phase row: the last even and odd j map below wq.
    assert!(ld >= wq && dst.len() >= ld + wq && qe + row.len().div_ceil(2) <= wq && qo + row.len() / 2 <= wq);
    for j0 in (0..row.len()).step_by(16) {
        let m = row.len() - j0;
        // SAFETY: the masked lanes read row[j0..j0 + m] and write this chunk's m.div_ceil(2)
        // even and m / 2 odd values at their indices, inside the phase rows (asserted).
        unsafe {
            let src = row.as_ptr().add(j0);
            let (lo, hi) = if m >= 16 {
                (_mm256_loadu_ps(src), _mm256_loadu_ps(src.add(8)))
            } else {
                (
                    _mm256_maskload_ps(src, first_lanes(m)),
                    _mm256_maskload_ps(src.add(8), first_lanes(m.saturating_sub(8))),
                )
            };
            // shuffle_ps picks within 128-bit lanes: [l0 l2 h0 h2 | l4 l6 h4 h6]; the
            // 64-bit permute (0, 2, 1, 3) puts the pairs in order.
            let e = _mm256_shuffle_ps::<0x88>(lo, hi);
            let o = _mm256_shuffle_ps::<0xDD>(lo, hi);
            let order = |v: __m256| _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(v)));
            let (e, o) = (order(e), order(o));
            let out = dst.as_mut_ptr();
            if m >= 16 {
                _mm256_storeu_ps(out.add(pe * ld + qe + j0 / 2), e);
                _mm256_storeu_ps(out.add(po * ld + qo + j0 / 2), o);
            } else {
                _mm256_maskstore_ps(out.add(pe * ld + qe + j0 / 2), first_lanes(m.div_ceil(2)), e);
                _mm256_maskstore_ps(out.add(po * ld + qo + j0 / 2), first_lanes(m / 2), o);
            }
        }
    }
}

/// A row split into its even and odd columns after `pad_left` columns of padding, as the
/// column-stride-2 layouts store it: padded column `c = j + pad_left` of input value
/// `row[j]` goes to phase `c mod 2` (phase rows `ld` apart in `dst`) at index `c / 2`, 32
/// values at a time by two permutes (row_conv's copy, the depthwise rows, pooling rows).
///
/// # Safety
/// AVX-512F is available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn split_pairs_avx512(
    row: &[f32],
    pad_left: usize,
    (wq, ld): (usize, usize),
    dst: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (pe, po) = (pad_left % 2, 1 - pad_left % 2);
    let (qe, qo) = (pad_left / 2, pad_left.div_ceil(2));
    // Every column lands inside its phase row: the last even and odd j map below wq.
    assert!(ld >= wq && dst.len() >= ld + wq && qe + row.len().div_ceil(2) <= wq && qo + row.len() / 2 <= wq);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let lanes = crate::cpu::gemm::lane_mask;
    for j0 in (0..row.len()).step_by(32) {
        let m = row.len() - j0;
        // SAFETY: the masked lanes read row[j0..j0 + m] and write this chunk's m.div_ceil(2)
        // even and m / 2 odd values at their indices, inside the phase rows (asserted).
        unsafe {
            let src = row.as_ptr().add(j0);
            let lo = _mm512_maskz_loadu_ps(lanes(m), src);
            let hi = _mm512_maskz_loadu_ps(lanes(m.saturating_sub(16)), src.add(16));
            let (e, o) = (_mm512_permutex2var_ps(lo, even, hi), _mm512_permutex2var_ps(lo, odd, hi));
            let out = dst.as_mut_ptr();
            _mm512_mask_storeu_ps(out.add(pe * ld + qe + j0 / 2), lanes(m.div_ceil(2)), e);
            _mm512_mask_storeu_ps(out.add(po * ld + qo + j0 / 2), lanes(m / 2), o);
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn transpose16_swaps_rows_and_columns() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            eprintln!("skipped: no AVX-512");
            return;
        }
        let m: Vec<f32> = (0..256u16).map(f32::from).collect();
        let mut r = [[0.0f32; 16]; 16];
        // SAFETY: the feature was detected; every row holds 16 floats.
        unsafe {
            let mut v = [_mm512_setzero_ps(); 16];
            for (i, v) in v.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(m[16 * i..].as_ptr());
            }
            let v = transpose16(v);
            for (row, v) in r.iter_mut().zip(&v) {
                _mm512_storeu_ps(row.as_mut_ptr(), *v);
            }
        }
        for (i, row) in r.iter().enumerate() {
            for (j, &x) in row.iter().enumerate() {
                assert_eq!(x, m[16 * j + i], "element ({i}, {j})");
            }
        }
    }

    #[test]
    fn transpose8_swaps_rows_and_columns() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            eprintln!("skipped: no AVX2");
            return;
        }
        let m: Vec<f32> = (0..64u16).map(f32::from).collect();
        let mut r = [[0.0f32; 8]; 8];
        // SAFETY: the feature was detected; every row holds 8 floats.
        unsafe {
            let mut v = [_mm256_setzero_ps(); 8];
            for (i, v) in v.iter_mut().enumerate() {
                *v = _mm256_loadu_ps(m[8 * i..].as_ptr());
            }
            let v = transpose8(v);
            for (row, v) in r.iter_mut().zip(&v) {
                _mm256_storeu_ps(row.as_mut_ptr(), *v);
            }
        }
        for (i, row) in r.iter().enumerate() {
            for (j, &x) in row.iter().enumerate() {
                assert_eq!(x, m[8 * j + i], "element ({i}, {j})");
            }
        }
    }

    #[test]
    fn split_pairs_put_every_column_in_its_phase() {
        type Split = unsafe fn(&[f32], usize, (usize, usize), &mut [f32]);
        let mut families: Vec<(&str, Split)> = Vec::new();
        if std::arch::is_x86_feature_detected!("avx2") {
            families.push(("avx2", split_pairs_avx2));
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            families.push(("avx512", split_pairs_avx512));
        }
        for (name, split) in families {
            for len in [1usize, 7, 8, 15, 16, 17, 31, 32, 33, 56, 113] {
                for pad_left in 0..3 {
                    let row: Vec<f32> = (0..len).map(|j| j as f32 + 1.0).collect();
                    let wq = (len + pad_left + 1).div_ceil(2);
                    let ld = wq + 16;
                    let mut dst = vec![-1.0; 2 * ld];
                    // SAFETY: the feature was detected.
                    unsafe { split(&row, pad_left, (wq, ld), &mut dst) };
                    let mut want = vec![-1.0; 2 * ld];
                    for (j, &v) in row.iter().enumerate() {
                        let c = j + pad_left;
                        want[(c % 2) * ld + c / 2] = v;
                    }
                    assert_eq!(dst, want, "{name}: len {len}, pad_left {pad_left}");
                }
            }
        }
    }
}
