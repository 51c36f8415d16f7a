//! CPU twin of `shaders/select_elements.wgsl`.

use rayon::prelude::*;

use crate::params::SelectElementsParams;

/// `out[i] = a[i]` where `cond[i] != 0`, else `b[i]` (the value not taken never enters
/// the result, even when infinite or NaN).
///
/// Arguments follow the shader's bindings: params, cond, a, b, out.
pub fn select_elements(params: &SelectElementsParams, cond: &[f32], a: &[f32], b: &[f32], out: &mut [f32]) {
    let n = params.len as usize;
    out[..n]
        .par_iter_mut()
        .enumerate()
        .with_min_len(super::MIN_PARALLEL_ELEMENTS)
        .for_each(|(i, o)| *o = if cond[i] != 0.0 { a[i] } else { b[i] });
}
