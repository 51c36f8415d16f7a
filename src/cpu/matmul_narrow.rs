//! CPU twin of `shaders/matmul_narrow.wgsl`.

use super::matmul_tiled;
use crate::params::MatmulTiledParams;

/// The same product as [`matmul_tiled`] (the two GPU kernels differ only in how they
/// divide the work): `out = act(A · B + bias)` for products at most 8 columns wide.
///
/// Arguments follow the shader's bindings: params, a, b, bias, out.
#[track_caller]
pub fn matmul_narrow(params: &MatmulTiledParams, a: &[f32], b: &[f32], bias: &[f32], out: &mut [f32]) {
    matmul_tiled(params, a, b, bias, out);
}
