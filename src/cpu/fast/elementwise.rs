//! Gathers on the fast path: the `gather_interp` twin's arithmetic, with AVX-512 gathers for
//! nearest maps and small tensors on the calling thread.

use rayon::prelude::*;

use crate::cpu::{read_mapped, MIN_PARALLEL_ELEMENTS};
use crate::params::GatherInterpParams;

/// The `gather_interp` twin: compact planes to dense through the map.
pub(crate) fn gather_fast(p: &GatherInterpParams, input: &[f32], map: &[u32], dense: &mut [f32]) {
    let (n_pos, plane, planes) = (p.n_pos as usize, p.plane as usize, p.planes as usize);
    let words = if p.map_kind == 3 { 6 } else { 1 };
    assert!(dense.len() >= plane * planes && input.len() >= n_pos * planes && map.len() >= plane * words);
    let (kind, relu) = (p.map_kind, p.relu != 0);
    dense[..plane * planes]
        .par_chunks_mut(plane)
        .zip(input.par_chunks(n_pos))
        .with_min_len(MIN_PARALLEL_ELEMENTS.div_ceil(plane))
        .for_each(|(dst, src)| {
            if kind == 1 && !relu {
                gather_nearest(dst, src, &map[..plane]);
                return;
            }
            for (s, d) in dst.iter_mut().enumerate() {
                let v = read_mapped(kind, map, src, s);
                *d = if relu { v.max(0.0) } else { v };
            }
        });
}

/// `dst[i] = src[map[i]]` (a nearest map: every index is inside `src`).
fn gather_nearest(dst: &mut [f32], src: &[f32], map: &[u32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && src.len() < i32::MAX as usize {
        assert!(map.iter().all(|&m| (m as usize) < src.len()), "nearest map index outside the compact plane");
        // SAFETY: the feature was detected and every index was checked against `src`.
        return unsafe { gather_nearest_avx512(dst, src, map) };
    }
    for (d, &m) in dst.iter_mut().zip(map) {
        *d = src[m as usize];
    }
}

/// # Safety
/// The CPU has AVX-512F; every `map` entry indexes `src`, which is shorter than 2^31.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_nearest_avx512(dst: &mut [f32], src: &[f32], map: &[u32]) {
    use std::arch::x86_64::*;
    let n = dst.len().min(map.len());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: 16 indices and 16 outputs at i are in bounds; every index is inside src.
        unsafe {
            let idx = _mm512_loadu_si512(map.as_ptr().add(i).cast());
            _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_i32gather_ps::<4>(idx, src.as_ptr()));
        }
        i += 16;
    }
    for (d, &m) in dst[i..n].iter_mut().zip(&map[i..n]) {
        *d = src[m as usize];
    }
}
