//! Element-wise steps on the fast path: the twins' arithmetic, run on the calling thread
//! when the tensor is small (at batch 1 a parallel region costs more than the work) and
//! over a few large chunks per thread otherwise.

use std::ops::Range;

use rayon::prelude::*;

use super::SendPtr;
use crate::cpu::read_mapped;
use crate::params::{AddParams, ClipParams, GatherInterpParams, ReluParams};

/// Elements below which a step runs on the calling thread.
const SEQUENTIAL: usize = 1 << 15;

/// Calls `f` on ranges covering `0..len`: one range when small, else about four per thread.
fn for_ranges(len: usize, unit: usize, f: impl Fn(Range<usize>) + Sync) {
    if len * unit < SEQUENTIAL {
        return f(0..len);
    }
    let per = len.div_ceil(4 * rayon::current_num_threads()).max(1);
    (0..len.div_ceil(per)).into_par_iter().for_each(|t| f(t * per..((t + 1) * per).min(len)));
}

/// The `add` twin (with its fused ReLU).
pub(crate) fn add_fast(p: &AddParams, a: &[f32], b: &[f32], out: &mut [f32]) {
    let n = p.len as usize;
    let (a, b, relu) = (&a[..n], &b[..n], p.relu != 0);
    let out = SendPtr(out[..n].as_mut_ptr());
    for_ranges(n, 1, |r| {
        // SAFETY: the ranges are disjoint and inside the first n elements of `out`.
        let o = unsafe { std::slice::from_raw_parts_mut(out.ptr().add(r.start), r.len()) };
        for ((o, &x), &y) in o.iter_mut().zip(&a[r.clone()]).zip(&b[r]) {
            let v = x + y;
            *o = if relu { v.max(0.0) } else { v };
        }
    });
}

/// The `gather_interp` twin: compact planes to dense through the map.
pub(crate) fn gather_fast(p: &GatherInterpParams, input: &[f32], map: &[u32], dense: &mut [f32]) {
    let (n_pos, plane, planes) = (p.n_pos as usize, p.plane as usize, p.planes as usize);
    let words = if p.map_kind == 3 { 6 } else { 1 };
    assert!(dense.len() >= plane * planes && input.len() >= n_pos * planes && map.len() >= plane * words);
    let (kind, relu) = (p.map_kind, p.relu != 0);
    let out = SendPtr(dense.as_mut_ptr());
    for_ranges(planes, plane, |r| {
        for pl in r {
            // SAFETY: plane `pl` of the output belongs to this range only.
            let dst = unsafe { std::slice::from_raw_parts_mut(out.ptr().add(pl * plane), plane) };
            let src = &input[pl * n_pos..(pl + 1) * n_pos];
            if kind == 1 && !relu {
                gather_nearest(dst, src, &map[..plane]);
                continue;
            }
            for (s, d) in dst.iter_mut().enumerate() {
                let v = read_mapped(kind, map, src, s);
                *d = if relu { v.max(0.0) } else { v };
            }
        }
    });
}

/// The `clip` twin.
pub(crate) fn clip_fast(p: &ClipParams, input: &[f32], out: &mut [f32]) {
    let n = p.len as usize;
    let input = &input[..n];
    let (lo, hi) = (p.min, p.max);
    let out = SendPtr(out[..n].as_mut_ptr());
    for_ranges(n, 1, |r| {
        // SAFETY: the ranges are disjoint and inside the first n elements of `out`.
        let o = unsafe { std::slice::from_raw_parts_mut(out.ptr().add(r.start), r.len()) };
        for (o, &x) in o.iter_mut().zip(&input[r]) {
            *o = x.max(lo).min(hi);
        }
    });
}

/// The `relu` twin.
pub(crate) fn relu_fast(p: &ReluParams, input: &[f32], out: &mut [f32]) {
    let n = p.len as usize;
    let input = &input[..n];
    let out = SendPtr(out[..n].as_mut_ptr());
    for_ranges(n, 1, |r| {
        // SAFETY: the ranges are disjoint and inside the first n elements of `out`.
        let o = unsafe { std::slice::from_raw_parts_mut(out.ptr().add(r.start), r.len()) };
        for (o, &x) in o.iter_mut().zip(&input[r]) {
            *o = x.max(0.0);
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
