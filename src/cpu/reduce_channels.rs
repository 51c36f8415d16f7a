//! CPU twin of `shaders/reduce_channels.wgsl`.

use rayon::prelude::*;

use crate::params::ReduceChannelsParams;

/// `out[n, 0, p]` = mean (op 0), sum (1) or max (2) over the channels of `x[n, c, p]`,
/// accumulated in channel order as the shader does.
///
/// Arguments follow the shader's bindings: params, input, out.
pub fn reduce_channels(params: &ReduceChannelsParams, input: &[f32], out: &mut [f32]) {
    let (channels, plane) = (params.channels as usize, params.plane as usize);
    let images = params.images as usize;
    out[..images * plane].par_chunks_mut(plane.max(1)).enumerate().for_each(|(n, o)| {
        let image = &input[n * channels * plane..(n + 1) * channels * plane];
        o.copy_from_slice(&image[..plane]);
        for c in 1..channels {
            let row = &image[c * plane..(c + 1) * plane];
            if params.op == 2 {
                o.iter_mut().zip(row).for_each(|(a, &v)| *a = super::nan::max_keep_nan(*a, v));
            } else {
                o.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
            }
        }
        if params.op == 0 {
            #[allow(clippy::cast_precision_loss)]
            let n = channels as f32;
            o.iter_mut().for_each(|a| *a /= n);
        }
    });
}
