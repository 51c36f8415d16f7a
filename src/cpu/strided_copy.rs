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
    let rows_per_image = out_image / inner_len;
    // Rows along the innermost axis, over all images, each its outer offset recomputed.
    out[..images * out_image]
        .par_chunks_mut(inner_len)
        .enumerate()
        .with_min_len((4096 / inner_len).max(1))
        .for_each(|(r, chunk)| {
            let (img, mut rest) = (r / rows_per_image, r % rows_per_image);
            let mut at = img * in_image + params.offset as usize;
            for &(d, s) in axes[..7].iter().rev() {
                at += (rest % d) * s;
                rest /= d;
            }
            if inner_stride == 1 {
                chunk.copy_from_slice(&input[at..at + inner_len]);
            } else {
                for (k, o) in chunk.iter_mut().enumerate() {
                    *o = input[at + k * inner_stride];
                }
            }
        });
}
