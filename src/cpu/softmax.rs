//! CPU twin of `shaders/softmax.wgsl`.

use rayon::prelude::*;

use crate::cpu::matmul_strided::OutPtr;
use crate::params::SoftmaxParams;

/// Positions per parallel task.
const CHUNK: usize = 256;

/// Softmax over the `cols` channels at each of the `plane` positions of each of the `rows`
/// images: `exp(x − max) / Σ exp(x − max)` (a flat tensor has `plane` 1).
///
/// Arguments follow the shader's bindings: params, input, out.
pub fn softmax(params: &SoftmaxParams, input: &[f32], out: &mut [f32]) {
    let (cols, plane) = (params.cols as usize, params.plane.max(1) as usize);
    let image = cols * plane;
    let rows = params.rows as usize;
    let chunks = plane.div_ceil(CHUNK);
    let total = rows * image;
    let dst = OutPtr(out[..total].as_mut_ptr());
    let src = &input[..total];
    // Tasks of up to CHUNK positions of one image; each walks the channel planes in order
    // (positions innermost) with a running maximum and sum per position.
    (0..rows * chunks).into_par_iter().for_each(|t| {
        let (img, p0) = (t / chunks, (t % chunks) * CHUNK);
        let len = CHUNK.min(plane - p0);
        let base = img * image + p0;
        let mut top = [f32::MIN; CHUNK];
        let mut sum = [0.0f32; CHUNK];
        for c in 0..cols {
            let row = &src[base + c * plane..base + c * plane + len];
            top[..len].iter_mut().zip(row).for_each(|(m, &x)| *m = m.max(x));
        }
        for c in 0..cols {
            let at = base + c * plane;
            // SAFETY: tasks own disjoint (image, position range) sets, and every index is
            // below `total` (the slice the pointer came from).
            let row = unsafe { std::slice::from_raw_parts_mut(dst.get().add(at), len) };
            for (((o, &x), &m), s) in row.iter_mut().zip(&src[at..at + len]).zip(&top).zip(sum.iter_mut()) {
                *o = (x - m).exp();
                *s += *o;
            }
        }
        for c in 0..cols {
            let at = base + c * plane;
            // SAFETY: as above.
            let row = unsafe { std::slice::from_raw_parts_mut(dst.get().add(at), len) };
            row.iter_mut().zip(&sum).for_each(|(o, s)| *o /= s);
        }
    });
}
