//! Stride-2 pooling of narrow planes on AVX2, with the plane read as one flat array.
//!
//! With an even input width W and no left padding, output column `ox` of input row `y`
//! reads columns `2·ox .. 2·ox + kw` of that row, that is flat positions `2j .. 2j + kw` of
//! the plane for `j = y·W/2 + ox`: the horizontal pass over every row of the plane is one
//! stride-2 reduction over the flat plane, in 8-output vectors from plain loads, except
//! that the last column's third tap (`2·ox + 2 = W`) lies in the next row and is masked
//! out (a per-layer table of which flat outputs are a row's last). The vertical pass then
//! reduces each output row's window rows of that buffer. On narrow planes (the 14- and
//! 28-wide pools of 28x28 networks) the row kernel ([`super::rows_avx2`]) takes most of its
//! loads masked (a row holds one or two 8-output chunks), and masked loads are slow on
//! AMD's Zen cores. Sums run in the row kernel's order (kx within a row, then rows); the
//! maximum drops NaN (`max_ps`) and reports whether any loaded value was NaN, as the row
//! kernel does, so the caller pools such a plane on the twin.

use std::arch::x86_64::*;

use super::RowGeometry;

/// The per-layer tables of the flat kernel.
pub(super) struct Flat {
    /// Window width (2 or 3).
    kw: usize,
    /// Input columns over 2 (the horizontal pass's outputs per row).
    half: usize,
    /// Per flat horizontal output, all ones where its third tap lies outside the row (the
    /// row's last output, for a 3-wide window), in groups of 8 in the taps' lane order;
    /// zeros past the plane.
    last: Vec<i32>,
    /// The average's divisors, then 8 ones (empty for the maximum).
    divisors: Vec<f32>,
}

impl Flat {
    /// The tables for `g`'s layer when the kernel covers it: AVX2 without AVX-512 (whose
    /// row kernel handles these planes), stride 2 across, a 2- or 3-wide window, no left
    /// padding, an even input width of at most 64.
    pub(super) fn new(g: &RowGeometry, kw: usize, windows: &[f32]) -> Option<Flat> {
        let fits = g.sw == 2
            && (kw == 2 || kw == 3)
            && g.pl == 0
            && g.in_w.is_multiple_of(2)
            && g.in_w <= 64
            && g.out_w <= g.in_w / 2;
        if !fits || is_x86_feature_detected!("avx512f") || !is_x86_feature_detected!("avx2") {
            return None;
        }
        let half = g.in_w / 2;
        let n = g.in_h * half;
        // In the taps' lane order within each group of 8 outputs (see `run`).
        let last: Vec<i32> = (0..n.div_ceil(8) * 8 + 8)
            .map(|k| {
                let j = k / 8 * 8 + [0, 1, 4, 5, 2, 3, 6, 7][k % 8];
                if kw == 3 && j < n && j % half == half - 1 {
                    -1
                } else {
                    0
                }
            })
            .collect();
        let mut divisors = windows.to_vec();
        if g.avg {
            divisors.extend([1.0; 8]);
        }
        Some(Flat { kw, half, last, divisors })
    }

    /// Pools one plane; returns whether a loaded value was NaN (the maximum only). `h` is
    /// scratch, reused between planes.
    ///
    /// # Safety
    /// AVX2 is available (`new` returned the tables); `src` holds the `in_h · in_w` plane
    /// and `dst` the `out_h · out_w` outputs of the layer `new` was given.
    pub(super) unsafe fn pool(
        &self,
        g: &RowGeometry,
        src: &[f32],
        dst: &mut [f32],
        h: &mut Vec<f32>,
    ) -> bool {
        // SAFETY: the caller's contract.
        unsafe {
            if self.kw == 3 {
                self.run::<3>(g, src, dst, h)
            } else {
                self.run::<2>(g, src, dst, h)
            }
        }
    }

    /// # Safety
    /// As [`Flat::pool`]; `KW` is the window width.
    #[target_feature(enable = "avx2")]
    unsafe fn run<const KW: usize>(
        &self,
        g: &RowGeometry,
        src: &[f32],
        dst: &mut [f32],
        h: &mut Vec<f32>,
    ) -> bool {
        let half = self.half;
        let n = g.in_h * half;
        assert!(src.len() >= 2 * n && self.last.len() >= n + 8);
        let identity = _mm256_set1_ps(if g.avg { 0.0 } else { f32::NEG_INFINITY });
        let mut nan = _mm256_setzero_ps();
        h.resize(n + 8, 0.0);
        // The last vector's loads would pass the plane's end: it reads a copy padded with
        // the identity instead (`KW - 1` columns past its 16).
        let mut tail = [0.0f32; 32];
        let mut j = 0;
        while j < n {
            // Flat columns 2j .. 2j + 18 of the plane (the window's last tap of the 8th output
            // is 2j + 14 + KW − 1); past the plane's end, the padded copy.
            let inside = 2 * j + 18 <= 2 * n;
            let base = if inside {
                src[2 * j..].as_ptr()
            } else {
                let have = 2 * n - 2 * j;
                tail.fill(if g.avg { 0.0 } else { f32::NEG_INFINITY });
                tail[..have].copy_from_slice(&src[2 * j..2 * n]);
                tail.as_ptr()
            };
            // SAFETY: `base` has 18 readable floats (the plane from 2j, or the copy); `last`
            // and `h` hold n + 8 values.
            let r = unsafe {
                let (lo, hi) = (_mm256_loadu_ps(base), _mm256_loadu_ps(base.add(8)));
                let (e, o) = (_mm256_shuffle_ps::<0x88>(lo, hi), _mm256_shuffle_ps::<0xDD>(lo, hi));
                if KW == 3 {
                    let (lo2, hi2) = (_mm256_loadu_ps(base.add(2)), _mm256_loadu_ps(base.add(10)));
                    let e2 = _mm256_shuffle_ps::<0x88>(lo2, hi2);
                    // Stored in the taps' lane order, outputs (0, 1, 4, 5, 2, 3, 6, 7) of
                    // the 8, which the permute below puts back in order.
                    let m = _mm256_loadu_si256(self.last.as_ptr().add(j).cast());
                    let e2 = _mm256_blendv_ps(e2, identity, _mm256_castsi256_ps(m));
                    if g.avg {
                        _mm256_add_ps(_mm256_add_ps(e, o), e2)
                    } else {
                        nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(lo, hi));
                        nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(lo2, hi2));
                        _mm256_max_ps(_mm256_max_ps(e, o), e2)
                    }
                } else if g.avg {
                    _mm256_add_ps(e, o)
                } else {
                    nan = _mm256_or_ps(nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(lo, hi));
                    _mm256_max_ps(e, o)
                }
            };
            let r = _mm256_castpd_ps(_mm256_permute4x64_pd::<0xD8>(_mm256_castps_pd(r)));
            // SAFETY: h holds n + 8 floats.
            unsafe { _mm256_storeu_ps(h.as_mut_ptr().add(j), r) };
            j += 8;
        }
        let out_w = g.out_w;
        let out_h = dst.len() / out_w;
        for oy in 0..out_h {
            let ys = oy * g.sh;
            // The window's rows inside the input.
            let (y0, y1) = (ys.max(g.pt) - g.pt, (ys + g.kh).min(g.in_h + g.pt) - g.pt);
            for x0 in (0..out_w).step_by(8) {
                let mut acc = identity;
                for y in y0..y1 {
                    // SAFETY: y·half + x0 + 8 ≤ n + 8 = h's length (x0 < out_w ≤ half).
                    let t = unsafe { _mm256_loadu_ps(h.as_ptr().add(y * half + x0)) };
                    acc = if g.avg { _mm256_add_ps(acc, t) } else { _mm256_max_ps(t, acc) };
                }
                let at = oy * out_w + x0;
                if g.avg {
                    // SAFETY: `divisors` holds out_h·out_w + 8 values.
                    acc = _mm256_div_ps(acc, unsafe { _mm256_loadu_ps(self.divisors.as_ptr().add(at)) });
                }
                let k = 8.min(out_w - x0);
                if at + 8 <= dst.len() {
                    // Lanes past the row land on the next row's first outputs, which that
                    // row's stores (later) overwrite.
                    // SAFETY: 8 outputs from `at` are inside dst.
                    unsafe { _mm256_storeu_ps(dst.as_mut_ptr().add(at), acc) };
                } else {
                    let mut lanes = [0.0f32; 8];
                    // SAFETY: `lanes` holds 8 floats.
                    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
                    dst[at..at + k].copy_from_slice(&lanes[..k]);
                }
            }
        }
        _mm256_movemask_ps(nan) != 0
    }
}
