//! CPU twin of `shaders/pool2d.wgsl`.

use rayon::prelude::*;

use super::read_mapped;
use crate::params::Pool2dParams;

/// Max (`mode` 0) or average (`mode` 1) pooling of every plane, reading a compact input
/// through `in_map` when `in_map_kind` is set; see [`Pool2dParams`] for the window rules.
///
/// Arguments follow the shader's bindings: params, input, in_map, out.
#[track_caller]
pub fn pool2d(params: &Pool2dParams, input: &[f32], in_map: &[u32], out: &mut [f32]) {
    let p = params;
    let out_plane = (p.out_h * p.out_w) as usize;
    let in_plane = p.in_plane as usize;
    assert!(out.len() >= out_plane * p.planes as usize && input.len() >= in_plane * p.planes as usize);
    let windows = pool_windows(p);
    out[..out_plane * p.planes as usize]
        .par_chunks_mut(out_plane)
        .zip(input.par_chunks(in_plane))
        .for_each(|(dst, src)| pool_plane(p, &windows, p.in_map_kind, in_map, src, dst));
}

/// One plane of [`pool2d`]: every output from its window of `windows` ([`pool_windows`]),
/// reading `src` through `in_map` when `kind` is set. The fast path pools a plane holding
/// a NaN with it (`kind` 0: the plane expanded), since its vector maxima drop NaN.
pub(crate) fn pool_plane(
    p: &Pool2dParams,
    windows: &[(u32, u32, u32, u32, f32)],
    kind: u32,
    in_map: &[u32],
    src: &[f32],
    dst: &mut [f32],
) {
    for (o, &(h0, h1, w0, w1, divisor)) in dst.iter_mut().zip(windows) {
        let (mut acc, mut best) = (0.0f32, f32::NEG_INFINITY);
        for y in h0..h1 {
            for x in w0..w1 {
                let s = (y - p.pad_top) * p.in_w + (x - p.pad_left);
                let v = match kind {
                    0 => src[s as usize],
                    kind => read_mapped(kind, in_map, src, s as usize),
                };
                acc += v;
                best = super::nan::max_keep_nan(best, v);
            }
        }
        *o = if p.mode == 1 { acc / divisor } else { best };
    }
}

/// One axis of a pooling window: output index `o` at `stride`, `kernel` taps over `size`
/// inputs padded by `before` and `after`. Returns the window clipped to the input (padded
/// coordinates `lo..hi`) and its length for the average's divisor: the padded span with
/// `include_pad`, else the part inside the input. A window is the product of its two axes;
/// this is the one place their arithmetic lives ([`pool_windows`], and the fast path's
/// divisors).
pub(crate) fn window_axis(
    o: u32,
    stride: u32,
    kernel: u32,
    size: u32,
    (before, after): (u32, u32),
    include_pad: bool,
) -> (u32, u32, u32) {
    let start = o * stride;
    let end_pad = (start + kernel).min(size + before + after);
    let (lo, hi) = (start.max(before), end_pad.min(size + before));
    (lo, hi, if include_pad { end_pad - start } else { hi.saturating_sub(lo) })
}

/// Per output position: the window clipped to the input (padded coordinates: rows
/// `h0..h1`, columns `w0..w1`) and the average's divisor ([`window_axis`] per axis).
pub(crate) fn pool_windows(p: &Pool2dParams) -> Vec<(u32, u32, u32, u32, f32)> {
    let include_pad = p.count_include_pad != 0;
    (0..p.out_h * p.out_w)
        .map(|o| {
            let (h0, h1, rows) = window_axis(
                o / p.out_w,
                p.stride_h,
                p.kernel_h,
                p.in_h,
                (p.pad_top, p.pad_bottom),
                include_pad,
            );
            let (w0, w1, cols) = window_axis(
                o % p.out_w,
                p.stride_w,
                p.kernel_w,
                p.in_w,
                (p.pad_left, p.pad_right),
                include_pad,
            );
            (h0, h1, w0, w1, (rows * cols) as f32)
        })
        .collect()
}
