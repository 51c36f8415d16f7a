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
    let f = from_code(params);
    out[..n]
        .par_iter_mut()
        .zip(&input[..n])
        .with_min_len(super::MIN_PARALLEL_ELEMENTS)
        .for_each(|(o, &x)| *o = f.apply(x));
}

/// The function whose code and constants `p` carries.
pub(crate) fn from_code(p: &UnaryParams) -> Unary {
    let (alpha, beta) = (p.alpha, p.beta);
    match p.op {
        0 => Unary::Sigmoid,
        1 => Unary::HardSigmoid { alpha, beta },
        2 => Unary::HardSwish,
        3 => Unary::Tanh,
        4 => Unary::LeakyRelu { alpha },
        5 => Unary::Elu { alpha },
        6 => Unary::Erf,
        7 => Unary::Gelu,
        8 => Unary::GeluTanh,
        9 => Unary::Exp,
        10 => Unary::Log,
        11 => Unary::Sqrt,
        12 => Unary::Neg,
        13 => Unary::Abs,
        14 => Unary::Reciprocal,
        15 => Unary::Softplus,
        17 => Unary::Silu,
        _ => Unary::Pow { exponent: alpha },
    }
}
