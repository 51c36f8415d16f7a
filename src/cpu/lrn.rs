//! CPU twin of `shaders/lrn.wgsl`.

use rayon::prelude::*;

use crate::params::LrnParams;

/// Local response normalisation across channels with ONNX semantics (see [`LrnParams`]).
/// Works on dense and compact tensors alike: positions are independent.
///
/// Arguments follow the shader's bindings: params, input, out.
#[track_caller]
pub fn lrn(params: &LrnParams, input: &[f32], out: &mut [f32]) {
    let p = params;
    let (channels, positions) = (p.channels as usize, p.positions as usize);
    let image_len = channels * positions;
    let below = (p.size as usize - 1) / 2;
    let above = p.size as usize / 2;
    let scale = p.alpha / p.size as f32;
    out[..image_len * p.images as usize].par_chunks_mut(positions).enumerate().for_each(|(t, dst)| {
        let (image, c) = (t / channels, t % channels);
        let image_in = &input[image * image_len..(image + 1) * image_len];
        let (lo, hi) = (c.saturating_sub(below), (c + above).min(channels - 1));
        for (q, o) in dst.iter_mut().enumerate() {
            let sum: f32 = (lo..=hi).map(|j| image_in[j * positions + q].powi(2)).sum();
            *o = image_in[c * positions + q] / (p.bias + scale * sum).powf(p.beta);
        }
    });
}
