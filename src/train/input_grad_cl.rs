//! A strided conv's input gradient on AVX2 and AVX-512 from channel-last operands, tap by tap:
//! `dXpad[base(p) + offset(tap), c] += Σ_t dY[p, t] · W[t, c, tap]` for every computed
//! output position `p`.
//!
//! Per image, the output gradient is laid out position-major (`[n][Tp]`, as for the
//! weight gradient) and the input gradient is accumulated zero-padded and channel-last
//! (`[Hp][Wp][C]`), then copied back to `[C][H][W]` without the padding. For each tap a
//! tile is 6 positions x 16 input channels (12 accumulators) summed over the output
//! channels (6 broadcasts of gradient values and 2 loads of the tap's packed weights per
//! 12 FMAs), then added to the 6 positions' rows of the padded gradient (on AVX-512: 6
//! positions x 32 channels in zmm vectors, the rest as on AVX2). It replaces
//! `Wᵀ · dY` and a scalar col2im per image; stride-1 convs keep `input_grad` (one
//! transposed conv, no read-modify-write per tap).

// Indices are bounded by validated geometries.
#![allow(clippy::cast_possible_truncation)]

use rayon::prelude::*;

use super::buffers;
use super::weight_grad_cl::{position_major, Layout};
use crate::cpu::fast::to_channel_last;
use crate::geometry::ConvGeometry;

/// Positions of a tile.
const MR: usize = 6;
/// Input channels of a full tile (two AVX2 vectors).
const CR: usize = 16;

/// Whether this path computes `g`'s input gradient: ungrouped convs with a multiple of 8
/// input channels, on CPUs where the executor runs the AVX2 or the AVX-512 family.
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    g.groups == 1 && g.in_channels.is_multiple_of(8) && wide_tiles().is_some()
}

/// Whether the tiles may be AVX-512 ones (`Some(true)`), AVX2 only (`Some(false)`), or
/// neither applies (`None`).
fn wide_tiles() -> Option<bool> {
    match crate::cpu::gemm::Microkernel::detect().name {
        "avx512" => Some(true),
        "avx2" => Some(false),
        _ => None,
    }
}

/// The input gradient (`[B, C, H, W]`) of an ungrouped conv from its output gradient
/// `dy` (`[B, T, n]` at the `n` output `positions`); callers check [`applies`].
pub(crate) fn input_grad_cl(g: &ConvGeometry, weights: &[f32], dy: &[f32], positions: &[u32]) -> Vec<f32> {
    debug_assert!(applies(g));
    let (c, t_all, n) = (g.in_channels, g.out_channels, positions.len());
    let taps = g.kernel_h * g.kernel_w;
    // The padded gradient has the weight gradient's input layout: position bases `at`,
    // each tap's offset the offset of its channel-0 column.
    let lay = Layout::of(g, positions);
    let (tp, pad_len) = (lay.tp, lay.x_len);
    let offsets: Vec<usize> = lay.cols.iter().step_by(c).copied().collect();
    // Weights per tap as [t][C] (OIHW: W[t, c, tap] at (t·C + c)·taps + tap).
    let mut packed = vec![0.0f32; taps * t_all * c];
    for t in 0..t_all {
        for ch in 0..c {
            for k in 0..taps {
                packed[(k * t_all + t) * c + ch] = weights[(t * c + ch) * taps + k];
            }
        }
    }
    let in_plane = g.in_h * g.in_w;
    let reach =
        lay.at.iter().max().map_or(0, |&a| a as usize) + offsets.iter().max().copied().unwrap_or(0) + c;
    assert!(reach <= pad_len, "input gradient layout out of bounds");
    let mut dx = buffers::scratch(g.batch * c * in_plane);
    let per_task = g.batch.div_ceil(4 * rayon::current_num_threads()).max(1);
    let zmm = wide_tiles() == Some(true);
    dx.par_chunks_mut(c * in_plane).zip(dy.par_chunks(t_all * n)).with_min_len(per_task).for_each_init(
        || (vec![0.0f32; pad_len], vec![0.0f32; n.max(1) * tp], vec![0.0f32; (n * t_all).max(c * in_plane)]),
        |(pad, rows, plane), (dx, dy)| {
            pad.fill(0.0);
            position_major(dy, n, t_all, tp, plane, rows);
            for (k, &off) in offsets.iter().enumerate() {
                let w = &packed[k * t_all * c..][..t_all * c];
                for j0 in (0..n).step_by(MR) {
                    let m = MR.min(n - j0);
                    // Past the last position: the last one again (its sums are not added).
                    let dst: [usize; MR] = std::array::from_fn(|i| lay.at[j0 + i.min(m - 1)] as usize + off);
                    let mut c0 = 0;
                    while c0 < c {
                        // Channels this tile covers: 32 in two zmm vectors, else 16 or 8 in
                        // ymm vectors (16 as one zmm vector is 6 accumulators, too few to
                        // hide the FMA latency: 16 -> 32 channels at 28x28, stride 2,
                        // batch 64: 0.85-0.9x with two ymm vectors, alternated).
                        let step = match (zmm, c - c0) {
                            (true, r) if r >= 32 => 32,
                            (_, r) if r >= CR => CR,
                            _ => 8,
                        };
                        // SAFETY: AVX2 and FMA were detected (`applies`), AVX-512F where
                        // `zmm`; gradient rows j0.. hold `tp >= t_all` lanes; `w` is
                        // `t_all` rows of `c` from which lanes c0..c0 + step are read;
                        // every `dst` row plus `c` lies within `pad` (asserted through
                        // `reach`).
                        unsafe {
                            let (d, wr, out) =
                                (rows.as_ptr().add(j0 * tp), w.as_ptr().add(c0), pad.as_mut_ptr().add(c0));
                            match (zmm, step) {
                                (true, 32) => avx512::tile::<2>(d, tp, t_all, wr, c, out, dst, m),
                                (_, 16) => avx2::tile::<2>(d, tp, t_all, wr, c, out, dst, m),
                                _ => avx2::tile::<1>(d, tp, t_all, wr, c, out, dst, m),
                            }
                        }
                        c0 += step;
                    }
                }
            }
            // The interior rows, unpadded, then channel-first.
            for y in 0..g.in_h {
                let src = &pad[((y + g.pad_top) * lay.wp + g.pad_left) * c..][..g.in_w * c];
                plane[y * g.in_w * c..][..g.in_w * c].copy_from_slice(src);
            }
            to_channel_last(plane, c, in_plane, dx);
        },
    );
    dx
}

/// One tile per vector family, the same loop in each (`$lanes` floats per vector):
/// 6 positions x `$lanes·V` input channels summed over `t_all` output channels, added to
/// `out` at the 6 row offsets `dst` (the first `m` of them).
macro_rules! channel_tile {
    ($family:ident, $features:literal, $vec:ty, $lanes:literal, $zero:ident, $load:ident,
     $splat:ident, $fmadd:ident, $add:ident, $store:ident) => {
        mod $family {
            use super::MR;
            use std::arch::x86_64::*;

            /// The tile (see `channel_tile!`).
            ///
            /// # Safety
            /// The family's features are available; `d` starts 6 rows of `t_all` readable
            /// floats, `tp` apart (rows past `m` may repeat: only their reads happen); `w`
            /// starts `t_all` rows of `lanes·V` readable floats, `ldw` apart; `out + dst[i]`
            /// starts `lanes·V` writable floats.
            #[target_feature(enable = $features)]
            #[allow(clippy::too_many_arguments)]
            pub(super) unsafe fn tile<const V: usize>(
                d: *const f32,
                tp: usize,
                t_all: usize,
                w: *const f32,
                ldw: usize,
                out: *mut f32,
                dst: [usize; MR],
                m: usize,
            ) {
                let mut acc = [[$zero(); V]; MR];
                // Rows past `m` read the last valid row.
                let row: [*const f32; MR] = std::array::from_fn(|i| {
                    // SAFETY: the caller's contract (rows 0..m are readable).
                    unsafe { d.add(i.min(m - 1) * tp) }
                });
                for t in 0..t_all {
                    // SAFETY: the caller's contract.
                    unsafe {
                        let wv: [$vec; V] = std::array::from_fn(|v| $load(w.add(t * ldw + $lanes * v)));
                        for (a, r) in acc.iter_mut().zip(row) {
                            let b = $splat(*r.add(t));
                            for v in 0..V {
                                a[v] = $fmadd(b, wv[v], a[v]);
                            }
                        }
                    }
                }
                for (i, a) in acc.iter().enumerate().take(m) {
                    for (v, &r) in a.iter().enumerate() {
                        // SAFETY: the caller's contract.
                        unsafe {
                            let p = out.add(dst[i] + $lanes * v);
                            $store(p, $add($load(p), r));
                        }
                    }
                }
            }
        }
    };
}

channel_tile!(
    avx2,
    "avx2,fma",
    __m256,
    8,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    _mm256_set1_ps,
    _mm256_fmadd_ps,
    _mm256_add_ps,
    _mm256_storeu_ps
);
channel_tile!(
    avx512,
    "avx512f",
    __m512,
    16,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_set1_ps,
    _mm512_fmadd_ps,
    _mm512_add_ps,
    _mm512_storeu_ps
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    /// dx by the definition over the computed positions, accumulated in f64.
    fn reference(g: &ConvGeometry, w: &[f32], dy: &[f32], positions: &[u32]) -> Vec<f64> {
        let (c, n, ow) = (g.in_channels, positions.len(), g.out_w());
        let mut dx = vec![0.0f64; g.batch * c * g.in_h * g.in_w];
        for b in 0..g.batch {
            for t in 0..g.out_channels {
                for (j, &p) in positions.iter().enumerate() {
                    let d = f64::from(dy[(b * g.out_channels + t) * n + j]);
                    let (oy, ox) = (p as usize / ow, p as usize % ow);
                    for ch in 0..c {
                        for ky in 0..g.kernel_h {
                            for kx in 0..g.kernel_w {
                                let y = (oy * g.stride_h + ky * g.dilation_h) as isize - g.pad_top as isize;
                                let x = (ox * g.stride_w + kx * g.dilation_w) as isize - g.pad_left as isize;
                                if y < 0 || x < 0 || y >= g.in_h as isize || x >= g.in_w as isize {
                                    continue;
                                }
                                let wv = w[((t * c + ch) * g.kernel_h + ky) * g.kernel_w + kx];
                                dx[((b * c + ch) * g.in_h + y as usize) * g.in_w + x as usize] +=
                                    d * f64::from(wv);
                            }
                        }
                    }
                }
            }
        }
        dx
    }

    #[test]
    fn channel_last_input_gradients_match_the_definition() {
        let mut rng = SeededRng::new(23);
        // (batch, cin, h, w, cout, kh, kw, stride (h, w), pads tlbr, dilation, every 3rd position)
        let cases = [
            (2, 8, 9, 8, 5, 3, 3, (2, 2), [1, 1, 1, 1], 1, false),
            (1, 16, 11, 7, 20, 3, 2, (2, 3), [0, 1, 2, 0], 1, false),
            (3, 24, 7, 7, 16, 1, 1, (2, 2), [0, 0, 0, 0], 1, false),
            (2, 40, 10, 10, 9, 3, 3, (1, 1), [2, 2, 2, 2], 2, true),
            (5, 32, 14, 14, 33, 3, 3, (2, 2), [1, 1, 1, 1], 1, true),
        ];
        for (batch, cin, h, w, cout, kh, kw, (sh, sw), [pt, pl, pb, pr], d, sparse) in cases {
            let mut g = ConvGeometry::new(cin, h, w, cout, kh, kw)
                .with_padding_tlbr(pt, pl, pb, pr)
                .with_dilation(d)
                .with_batch(batch);
            (g.stride_h, g.stride_w) = (sh, sw);
            g.validate().expect("geometry");
            if !applies(&g) {
                println!("channel-last input gradient: no AVX2 here, case skipped");
                return;
            }
            let all = (g.out_h() * g.out_w()) as u32;
            let positions: Vec<u32> = (0..all).filter(|p| !sparse || p % 3 == 1).collect();
            let weights = rng.vec_f32(g.weight_len(), -1.0, 1.0);
            let dy = rng.vec_f32(batch * cout * positions.len(), -1.0, 1.0);
            // Stale values in the buffer pool must not leak into the result.
            buffers::recycle(vec![f32::NAN; batch * cin * h * w]);
            let got = input_grad_cl(&g, &weights, &dy, &positions);
            let want = reference(&g, &weights, &dy, &positions);
            assert_eq!(got.len(), want.len());
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(*a) - b).abs() <= 1e-4 * (1.0 + b.abs()),
                    "dx[{i}] = {a}, want {b} ({g:?})"
                );
            }
        }
    }
}
