//! CPU twin of `shaders/softmax.wgsl`.

use rayon::prelude::*;

use crate::params::SoftmaxParams;

/// Softmax over the `cols` channels at each of the `plane` positions of each of the `rows`
/// images: `exp(x − max) / Σ exp(x − max)` (a flat tensor has `plane` 1).
///
/// Arguments follow the shader's bindings: params, input, out.
pub fn softmax(params: &SoftmaxParams, input: &[f32], out: &mut [f32]) {
    let (cols, plane) = (params.cols as usize, params.plane.max(1) as usize);
    let image = cols * plane;
    let rows = params.rows as usize;
    out[..rows * image].par_chunks_mut(image).zip(input[..rows * image].par_chunks(image)).for_each(
        |(dst, src)| {
            for p in 0..plane {
                let at = |c: usize| c * plane + p;
                let m = (0..cols).map(|c| src[at(c)]).fold(f32::MIN, f32::max);
                let mut sum = 0.0f32;
                for c in 0..cols {
                    let e = (src[at(c)] - m).exp();
                    dst[at(c)] = e;
                    sum += e;
                }
                for c in 0..cols {
                    dst[at(c)] /= sum;
                }
            }
        },
    );
}
