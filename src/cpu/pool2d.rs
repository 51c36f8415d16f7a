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

/// Per output position: the window clipped to the input (padded coordinates: rows
/// `h0..h1`, columns `w0..w1`) and the average's divisor. The one place this arithmetic
/// lives; the fast pooling path reads its divisors from here.
pub(crate) fn pool_windows(p: &Pool2dParams) -> Vec<(u32, u32, u32, u32, f32)> {
    (0..p.out_h * p.out_w)
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
            (h0, h1, w0, w1, divisor as f32)
        })
        .collect()
}
