//! CPU twin of `shaders/add.wgsl`.

use rayon::prelude::*;

use crate::params::AddParams;

/// `out[i] = act(a[i] + b[i])`, ReLU when `params.relu` is set.
///
/// Arguments follow the shader's bindings: params, a, b, out.
pub fn add(params: &AddParams, a: &[f32], b: &[f32], out: &mut [f32]) {
    let n = params.len as usize;
    let relu = params.relu != 0;
    out[..n].par_iter_mut().zip(&a[..n]).zip(&b[..n]).with_min_len(super::MIN_PARALLEL_ELEMENTS).for_each(
        |((o, &x), &y)| {
            let v = x + y;
            *o = if relu { super::nan::relu_keep_nan(v) } else { v };
        },
    );
}
