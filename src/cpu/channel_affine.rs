//! CPU twin of `shaders/channel_affine.wgsl`.

use rayon::prelude::*;

use crate::params::ChannelAffineParams;

/// `out[i] = act(input[i] · scale[c] + shift[c])` with `c = (i / plane) mod channels`.
///
/// Arguments follow the shader's bindings: params, input, scale, shift, out.
pub fn channel_affine(
    params: &ChannelAffineParams,
    input: &[f32],
    scale: &[f32],
    shift: &[f32],
    out: &mut [f32],
) {
    let (plane, channels) = (params.plane as usize, params.channels as usize);
    let relu = params.relu != 0;
    out[..params.len as usize].par_chunks_mut(plane).zip(input.par_chunks(plane)).enumerate().for_each(
        |(t, (dst, src))| {
            let (s, b) = (scale[t % channels], shift[t % channels]);
            for (o, &x) in dst.iter_mut().zip(src) {
                let v = x * s + b;
                *o = if relu { super::nan::relu_keep_nan(v) } else { v };
            }
        },
    );
}
