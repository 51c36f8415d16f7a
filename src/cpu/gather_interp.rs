//! CPU twin of `shaders/gather_interp.wgsl`.

use rayon::prelude::*;

use super::read_mapped;
use crate::params::GatherInterpParams;

/// `dense[t · plane + p] = act(read_mapped(map, compact plane t, p))` for every plane t,
/// with `act` a ReLU when `params.relu` is 1.
///
/// Arguments follow the shader's bindings: params, input (compact), in_map, dense.
#[track_caller]
pub fn gather_interp(params: &GatherInterpParams, input: &[f32], in_map: &[u32], dense: &mut [f32]) {
    let (n_pos, plane, planes) = (params.n_pos as usize, params.plane as usize, params.planes as usize);
    let words = if params.map_kind == 3 { 6 } else { 1 };
    assert!(dense.len() >= plane * planes && input.len() >= n_pos * planes && in_map.len() >= plane * words);
    let (kind, relu) = (params.map_kind, params.relu != 0);
    dense[..plane * planes].par_chunks_mut(plane).zip(input.par_chunks(n_pos)).for_each(|(dst, src)| {
        if kind == 1 && !relu {
            for (d, &m) in dst.iter_mut().zip(&in_map[..plane]) {
                *d = src[m as usize];
            }
            return;
        }
        for (p, d) in dst.iter_mut().enumerate() {
            let v = read_mapped(kind, in_map, src, p);
            *d = if relu { v.max(0.0) } else { v };
        }
    });
}
