//! CPU twin of `shaders/clip.wgsl`.

use rayon::prelude::*;

use crate::params::ClipParams;

/// `out[i] = min(max(input[i], min), max)`.
///
/// Arguments follow the shader's bindings: params, input, out.
pub fn clip(params: &ClipParams, input: &[f32], out: &mut [f32]) {
    let n = params.len as usize;
    out[..n]
        .par_iter_mut()
        .zip(&input[..n])
        .with_min_len(super::MIN_PARALLEL_ELEMENTS)
        .for_each(|(o, &x)| *o = super::nan::clamp_keep_nan(x, params.min, params.max));
}
