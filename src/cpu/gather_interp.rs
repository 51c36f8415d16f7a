//! CPU twin of `shaders/gather_interp.wgsl`.

use rayon::prelude::*;

use super::read_mapped;
use crate::params::GatherInterpParams;

/// `dense[t · plane + p] = act(read_mapped(map, compact plane t, p) + addend[t · plane + p])`
/// for every plane t, the addend only when `params.residual` is 1 (else `addend` may be
/// empty; with `residual` 2 the addend is what `dense` holds), `act` a ReLU when
/// `params.relu` is 1.
///
/// Arguments follow the shader's bindings: params, input (compact), in_map, addend, dense.
#[track_caller]
pub fn gather_interp(
    params: &GatherInterpParams,
    input: &[f32],
    in_map: &[u32],
    addend: &[f32],
    dense: &mut [f32],
) {
    let (n_pos, plane, planes) = (params.n_pos as usize, params.plane as usize, params.planes as usize);
    let words = if params.map_kind == 3 { 6 } else { 1 };
    assert!(dense.len() >= plane * planes && input.len() >= n_pos * planes && in_map.len() >= plane * words);
    let (kind, relu, residual) = (params.map_kind, params.relu != 0, params.residual == 1);
    let in_place = params.residual == 2;
    assert!(!residual || addend.len() >= plane * planes, "gather_interp addend shorter than the output");
    dense[..plane * planes].par_chunks_mut(plane).enumerate().zip(input.par_chunks(n_pos)).for_each(
        |((t, dst), src)| {
            for (p, d) in dst.iter_mut().enumerate() {
                let mut v = read_mapped(kind, in_map, src, p);
                if residual {
                    v += addend[t * plane + p];
                } else if in_place {
                    v += *d;
                }
                *d = if relu { super::nan::relu_keep_nan(v) } else { v };
            }
        },
    );
}
