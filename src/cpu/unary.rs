//! CPU twin of `shaders/unary.wgsl`.

use rayon::prelude::*;

use crate::network::Unary;
use crate::params::UnaryParams;

/// `out[i] = f(x[i])` for the function `f` whose code and constants `params` carry.
///
/// Arguments follow the shader's bindings: params, input, out. An unknown code computes
/// the power function, as the shader's `default` case does.
pub fn unary(params: &UnaryParams, input: &[f32], out: &mut [f32]) {
    let n = params.len as usize;
    let f = Unary::from_code(params.op, params.alpha, params.beta);
    out[..n]
        .par_iter_mut()
        .zip(&input[..n])
        .with_min_len(super::MIN_PARALLEL_ELEMENTS)
        .for_each(|(o, &x)| *o = f.apply(x));
}
