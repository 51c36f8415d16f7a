//! CPU twin of `shaders/softmax.wgsl`.

use crate::params::SoftmaxParams;

/// Softmax of each row: `exp(x − max) / Σ exp(x − max)`.
///
/// Arguments follow the shader's bindings: params, input, out.
pub fn softmax(params: &SoftmaxParams, input: &[f32], out: &mut [f32]) {
    let cols = params.cols as usize;
    for (dst, src) in out.chunks_exact_mut(cols).zip(input.chunks_exact(cols)).take(params.rows as usize) {
        let m = src.iter().copied().fold(f32::MIN, f32::max);
        let mut sum = 0.0f32;
        for (o, &x) in dst.iter_mut().zip(src) {
            *o = (x - m).exp();
            sum += *o;
        }
        dst.iter_mut().for_each(|o| *o /= sum);
    }
}
