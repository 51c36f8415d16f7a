//! CPU twin of `shaders/relu.wgsl`.

use rayon::prelude::*;

use crate::params::ReluParams;

/// `out[i] = max(input[i], 0)`.
///
/// Arguments follow the shader's bindings: params, input, out.
pub fn relu(params: &ReluParams, input: &[f32], out: &mut [f32]) {
    let n = params.len as usize;
    out[..n]
        .par_iter_mut()
        .zip(&input[..n])
        .with_min_len(super::MIN_PARALLEL_ELEMENTS)
        .for_each(|(o, &x)| *o = super::nan::relu_keep_nan(x));
}
