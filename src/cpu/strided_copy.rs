//! CPU twin of `shaders/strided_copy.wgsl`.

use rayon::prelude::*;

use crate::params::StridedCopyParams;

/// Per image, output element `i` (row-major over the axes `d0..d7`) is input element
/// `offset + Σ i_t · s_t`; images are `in_image` (0: the same block for all) and
/// `out_image` elements apart.
///
/// Arguments follow the shader's bindings: params, input, out.
pub fn strided_copy(params: &StridedCopyParams, input: &[f32], out: &mut [f32]) {
    let axes = params.axes().map(|(d, s)| (d as usize, s as usize));
    let (in_image, out_image) = (params.in_image as usize, params.out_image as usize);
    let images = params.images as usize;
    let (inner_len, inner_stride) = axes[7];
    out[..images * out_image].par_chunks_mut(out_image).enumerate().for_each(|(img, dst)| {
        let src = &input[img * in_image..];
        // Rows along the innermost axis; the outer axes' offset recomputed per row.
        for (row, chunk) in dst.chunks_exact_mut(inner_len).enumerate() {
            let mut rest = row;
            let mut at = params.offset as usize;
            for &(d, s) in axes[..7].iter().rev() {
                at += (rest % d) * s;
                rest /= d;
            }
            for (k, o) in chunk.iter_mut().enumerate() {
                *o = src[at + k * inner_stride];
            }
        }
    });
}
