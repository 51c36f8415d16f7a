//! CPU twin of `shaders/gather_interp.wgsl`.

use rayon::prelude::*;

use crate::params::GatherInterpParams;

/// `dense[t · plane + p] = compact[t · n_pos + map[p]]` for every plane t.
///
/// Arguments follow the shader's bindings: params, compact, map, dense.
#[track_caller]
pub fn gather_interp(params: &GatherInterpParams, compact: &[f32], map: &[u32], dense: &mut [f32]) {
    let (n_pos, plane, planes) = (params.n_pos as usize, params.plane as usize, params.planes as usize);
    assert!(dense.len() >= plane * planes && compact.len() >= n_pos * planes && map.len() >= plane);
    dense[..plane * planes].par_chunks_mut(plane).zip(compact.par_chunks(n_pos)).for_each(|(dst, src)| {
        for (d, &m) in dst.iter_mut().zip(&map[..plane]) {
            *d = src[m as usize];
        }
    });
}
