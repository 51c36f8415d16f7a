//! A conv's input gradient as forward convs on the CPU executor's kernels (`FastConv`),
//! for any stride, padding, dilation and groups.
//!
//! `dx[c, y, x] = Σ_t Σ_(ky, kx) W[t, c, ky, kx] · dy[t, oy, ox]` over the taps with
//! `oy·sh + ky·dh − pad_top = y` (and likewise for x). Split the input rows by `y mod sh`
//! (the row phase `ry`): in phase `ry`, row `y = ry + i·sh` reads `dy` row `i + e(ky)`,
//! `e(ky) = (ry + pad_top − ky·dh) / sh`, for exactly the taps where that division is exact;
//! those taps' offsets are evenly spaced, so each phase (row phase x column phase) is an
//! ordinary stride-1 conv over `dy` with the selected taps, flipped and transposed per
//! group, padded (or cropped) to the phase's size. At stride 1 there is one phase: the
//! transposed conv.

use rayon::prelude::*;

use super::buffers;
use crate::cpu::gemm::Microkernel;
use crate::cpu::FastConv;
use crate::error::Result;
use crate::geometry::ConvGeometry;
use crate::layer::ConvLayer;

/// One phase of one axis.
#[derive(Clone, Debug)]
struct AxisPhase {
    /// First input index of the phase (`y = start + i·stride`).
    start: usize,
    /// Input indices in the phase.
    len: usize,
    /// The phase conv's taps, as kernel indices of the original conv, in the order of
    /// increasing offset `e`.
    taps: Vec<usize>,
    /// The phase conv's dilation (the step of `e`).
    dilation: usize,
    /// Its padding before and after.
    pads: (usize, usize),
    /// The phase conv's output index of the phase's first input index.
    crop: usize,
    /// The phase conv's output size.
    out: usize,
}

/// The phases of one axis: `stride`, `dilation`, `pad` before, kernel `k`, input size `n`,
/// output size `on` of the original conv.
fn axis_phases(stride: usize, dilation: usize, pad: usize, k: usize, n: usize, on: usize) -> Vec<AxisPhase> {
    let (s, d) = (stride as isize, dilation as isize);
    (0..stride.min(n))
        .filter_map(|r| {
            let len = (n - r).div_ceil(stride);
            // Offsets e of the taps whose division is exact, by increasing e (decreasing ky).
            let mut taps: Vec<(isize, usize)> = (0..k)
                .rev()
                .filter_map(|ky| {
                    let num = (r + pad) as isize - ky as isize * d;
                    (num.rem_euclid(s) == 0).then(|| (num.div_euclid(s), ky))
                })
                .collect();
            taps.sort_unstable();
            let (e_min, e_max) = (taps.first()?.0, taps.last()?.0);
            let dilation = if taps.len() > 1 { (taps[1].0 - taps[0].0) as usize } else { 1 };
            let before = (-e_min).max(0) as usize;
            let after = ((len as isize - 1 + e_max) - (on as isize - 1)).max(0) as usize;
            let out = on + before + after - (e_max - e_min) as usize;
            Some(AxisPhase {
                start: r,
                len,
                taps: taps.into_iter().map(|t| t.1).collect(),
                dilation,
                pads: (before, after),
                crop: e_min.max(0) as usize,
                out,
            })
        })
        .collect()
}

/// The input gradient (`[B, C, H, W]`) of a conv from its output gradient `dy` (`[B, T,
/// out_h, out_w]`, zero at positions a perforated conv did not compute).
pub(crate) fn input_grad(g: &ConvGeometry, weights: &[f32], dy: &[f32]) -> Result<Vec<f32>> {
    let rows = axis_phases(g.stride_h, g.dilation_h, g.pad_top, g.kernel_h, g.in_h, g.out_h());
    let cols = axis_phases(g.stride_w, g.dilation_w, g.pad_left, g.kernel_w, g.in_w, g.out_w());
    let (plane, in_len) = (g.in_h * g.in_w, g.in_channels * g.in_h * g.in_w);
    let single = rows.len() == 1 && cols.len() == 1;
    let direct = single && {
        let (r, c) = (&rows[0], &cols[0]);
        r.crop == 0 && c.crop == 0 && r.out == g.in_h && c.out == g.in_w
    };
    if direct {
        let mut dx = buffers::scratch(g.batch * in_len);
        phase_conv(g, weights, (&rows[0], &cols[0]))?.run(dy, &mut dx);
        return Ok(dx);
    }
    // Phases without taps (a stride larger than the kernel's reach) keep zeros.
    let mut dx = buffers::zeroed(g.batch * in_len);
    for r in &rows {
        for c in &cols {
            let conv = phase_conv(g, weights, (r, c))?;
            let mut out = buffers::scratch(g.batch * g.in_channels * r.out * c.out);
            conv.run(dy, &mut out);
            dx.par_chunks_mut(plane).zip(out.par_chunks(r.out * c.out)).for_each(|(dst, src)| {
                for i in 0..r.len {
                    let from = &src[(r.crop + i) * c.out + c.crop..][..c.len];
                    let line = &mut dst[(r.start + i * g.stride_h) * g.in_w..][..g.in_w];
                    line[c.start..].iter_mut().step_by(g.stride_w).zip(from).for_each(|(d, v)| *d = *v);
                }
            });
            buffers::recycle(out);
        }
    }
    Ok(dx)
}

/// The conv of one (row, column) phase over `dy`: the selected taps flipped and the
/// weights transposed per group (`[C, T/groups, taps_y, taps_x]`).
fn phase_conv(g: &ConvGeometry, weights: &[f32], (r, c): (&AxisPhase, &AxisPhase)) -> Result<FastConv> {
    let (cg, tg) = (g.in_channels_per_group(), g.out_channels_per_group());
    let (my, mx) = (r.taps.len(), c.taps.len());
    let mut w = vec![0.0f32; g.in_channels * tg * my * mx];
    for group in 0..g.groups {
        for t in 0..tg {
            for ci in 0..cg {
                for (a, &ky) in r.taps.iter().enumerate() {
                    for (b, &kx) in c.taps.iter().enumerate() {
                        let from = (((group * tg + t) * cg + ci) * g.kernel_h + ky) * g.kernel_w + kx;
                        let to = (((group * cg + ci) * tg + t) * my + a) * mx + b;
                        w[to] = weights[from];
                    }
                }
            }
        }
    }
    let mut t = ConvGeometry::new(g.out_channels, g.out_h(), g.out_w(), g.in_channels, my, mx)
        .with_padding_tlbr(r.pads.0, c.pads.0, r.pads.1, c.pads.1)
        .with_groups(g.groups)
        .with_batch(g.batch);
    (t.dilation_h, t.dilation_w) = (r.dilation, c.dilation);
    debug_assert_eq!((t.out_h(), t.out_w()), (r.out, c.out));
    let layer = ConvLayer::new(t, w, None)?;
    Ok(FastConv::new(&layer, Microkernel::detect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    /// dx by the definition, accumulated in f64.
    fn reference(g: &ConvGeometry, w: &[f32], dy: &[f32]) -> Vec<f64> {
        let (cg, tg, (oh, ow)) =
            (g.in_channels_per_group(), g.out_channels_per_group(), (g.out_h(), g.out_w()));
        let mut dx = vec![0.0f64; g.batch * g.in_channels * g.in_h * g.in_w];
        for b in 0..g.batch {
            for t in 0..g.out_channels {
                let group = t / tg;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let d = f64::from(dy[((b * g.out_channels + t) * oh + oy) * ow + ox]);
                        for c in 0..cg {
                            for ky in 0..g.kernel_h {
                                for kx in 0..g.kernel_w {
                                    let y =
                                        (oy * g.stride_h + ky * g.dilation_h) as isize - g.pad_top as isize;
                                    let x =
                                        (ox * g.stride_w + kx * g.dilation_w) as isize - g.pad_left as isize;
                                    if y < 0 || x < 0 || y >= g.in_h as isize || x >= g.in_w as isize {
                                        continue;
                                    }
                                    let wv = w[((t * cg + c) * g.kernel_h + ky) * g.kernel_w + kx];
                                    let ci = group * cg + c;
                                    dx[((b * g.in_channels + ci) * g.in_h + y as usize) * g.in_w
                                        + x as usize] += d * f64::from(wv);
                                }
                            }
                        }
                    }
                }
            }
        }
        dx
    }

    #[test]
    fn input_gradients_match_the_definition_for_random_geometries() {
        let mut rng = SeededRng::new(17);
        // (batch, cin, h, w, cout, kh, kw, stride (h, w), pads tlbr, dilation, groups)
        let cases = [
            (2, 3, 9, 8, 4, 3, 3, (1, 1), [1, 1, 1, 1], 1, 1),
            (2, 4, 10, 9, 6, 3, 3, (2, 2), [1, 1, 1, 1], 1, 2),
            (1, 3, 11, 7, 5, 3, 2, (2, 3), [0, 1, 2, 0], 1, 1),
            (2, 2, 12, 12, 3, 1, 1, (2, 2), [0, 0, 0, 0], 1, 1),
            (1, 2, 9, 9, 2, 1, 1, (3, 3), [0, 0, 0, 0], 1, 1),
            (1, 4, 13, 10, 4, 3, 3, (2, 1), [2, 2, 2, 2], 2, 4),
            (1, 2, 8, 8, 3, 3, 3, (1, 1), [3, 0, 0, 3], 1, 1),
            (2, 2, 15, 14, 3, 7, 5, (3, 2), [3, 2, 1, 2], 1, 1),
            (1, 2, 10, 10, 2, 2, 2, (4, 4), [0, 0, 0, 0], 1, 1),
            // Large enough for pooled buffers (see below), with phases that have no taps.
            (4, 8, 32, 32, 4, 2, 2, (4, 3), [0, 1, 0, 0], 1, 2),
        ];
        for (batch, cin, h, w, cout, kh, kw, (sh, sw), [pt, pl, pb, pr], d, groups) in cases {
            let mut g = ConvGeometry::new(cin, h, w, cout, kh, kw)
                .with_padding_tlbr(pt, pl, pb, pr)
                .with_dilation(d)
                .with_groups(groups)
                .with_batch(batch);
            (g.stride_h, g.stride_w) = (sh, sw);
            g.validate().expect("geometry");
            let weights = rng.vec_f32(g.weight_len(), -1.0, 1.0);
            let dy = rng.vec_f32(batch * cout * g.out_h() * g.out_w(), -1.0, 1.0);
            // Stale values in the buffer pool must not leak into the result.
            buffers::recycle(vec![f32::NAN; batch * cin * h * w]);
            let got = input_grad(&g, &weights, &dy).expect("input gradient");
            let want = reference(&g, &weights, &dy);
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
