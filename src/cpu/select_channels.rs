//! CPU twin of `shaders/select_channels.wgsl`.

use rayon::prelude::*;

use crate::params::SelectChannelsParams;

/// `out[n, k, p] = x[n, channels[k], p]`.
///
/// Arguments follow the shader's bindings: params, input, channels, out.
pub fn select_channels(params: &SelectChannelsParams, input: &[f32], channels: &[u32], out: &mut [f32]) {
    let plane = params.plane as usize;
    let (cin, cout) = (params.in_channels as usize, params.out_channels as usize);
    let len = params.images as usize * cout * plane;
    out[..len]
        .par_chunks_mut(plane.max(1))
        .enumerate()
        .with_min_len(super::MIN_PARALLEL_ELEMENTS / plane.max(1) + 1)
        .for_each(|(j, o)| {
            let (n, k) = (j / cout, j % cout);
            let src = (n * cin + channels[k] as usize) * plane;
            o.copy_from_slice(&input[src..src + plane]);
        });
}
