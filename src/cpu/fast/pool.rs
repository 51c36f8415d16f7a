//! Pooling on the fast path: the same windows and arithmetic as the `pool2d` twin, with the
//! mode and the input form resolved outside the loops, planes batched into a few tasks per
//! thread, and no per-element dispatch. Compact inputs use the twin.

use rayon::prelude::*;

use crate::params::Pool2dParams;

/// Inputs under this many elements are pooled on the calling thread.
pub(crate) const SEQUENTIAL_ELEMENTS: usize = 1 << 16;

/// Max or average pooling of a dense `[planes, in_h, in_w]` input (`params.in_map_kind == 0`).
#[track_caller]
pub fn pool2d_dense(p: &Pool2dParams, input: &[f32], out: &mut [f32]) {
    let out_plane = (p.out_h * p.out_w) as usize;
    let in_plane = (p.in_h * p.in_w) as usize;
    let planes = p.planes as usize;
    assert!(p.in_map_kind == 0 && out.len() >= out_plane * planes && input.len() >= in_plane * planes);
    // Window bounds in input coordinates (clipped to the input) and the average's divisor.
    let windows: Vec<(usize, usize, usize, usize, f32)> = (0..p.out_h * p.out_w)
        .map(|o| {
            let hs = (o / p.out_w) * p.stride_h;
            let ws = (o % p.out_w) * p.stride_w;
            let he_pad = (hs + p.kernel_h).min(p.in_h + p.pad_top + p.pad_bottom);
            let we_pad = (ws + p.kernel_w).min(p.in_w + p.pad_left + p.pad_right);
            let (h0, w0) = (hs.max(p.pad_top), ws.max(p.pad_left));
            let (h1, w1) = (he_pad.min(p.in_h + p.pad_top), we_pad.min(p.in_w + p.pad_left));
            let divisor = if p.count_include_pad != 0 {
                (he_pad - hs) * (we_pad - ws)
            } else {
                h1.saturating_sub(h0) * w1.saturating_sub(w0)
            };
            let (h0, h1) = ((h0 - p.pad_top) as usize, (h1.max(h0) - p.pad_top) as usize);
            let (w0, w1) = ((w0 - p.pad_left) as usize, (w1.max(w0) - p.pad_left) as usize);
            (h0, h1, w0, w1, divisor as f32)
        })
        .collect();
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
    let avg = p.mode == 1;
    // Loop order per output row: ky, kx, then the row's columns (a strided streaming loop);
    // each output still sums its window in (ky, kx) order, as the twin does.
    let body = |(dst, src): (&mut [f32], &[f32])| {
        for (dst, src) in dst.chunks_exact_mut(out_plane).zip(src.chunks_exact(in_plane)) {
            for (oy, orow) in dst.chunks_exact_mut(out_w).enumerate() {
                orow.fill(if avg { 0.0 } else { f32::MIN });
                for ky in 0..kh {
                    let y = oy * sh + ky;
                    if y < pt || y - pt >= in_h {
                        continue;
                    }
                    let irow = &src[(y - pt) * in_w..][..in_w];
                    for (kx, &(lo, hi)) in ranges.iter().enumerate() {
                        if lo >= hi {
                            continue;
                        }
                        let taps = irow[lo * sw + kx - pl..].iter().step_by(sw);
                        if avg {
                            for (o, &v) in orow[lo..hi].iter_mut().zip(taps) {
                                *o += v;
                            }
                        } else {
                            for (o, &v) in orow[lo..hi].iter_mut().zip(taps) {
                                *o = o.max(v);
                            }
                        }
                    }
                }
                if avg {
                    for (o, w) in orow.iter_mut().zip(&windows[oy * out_w..]) {
                        *o /= w.4;
                    }
                }
            }
        }
    };
    let (dst, src) = (&mut out[..out_plane * planes], &input[..in_plane * planes]);
    if planes * in_plane < SEQUENTIAL_ELEMENTS {
        body((dst, src));
    } else {
        dst.par_chunks_mut(out_plane * per_task).zip(src.par_chunks(in_plane * per_task)).for_each(body);
    }
}
