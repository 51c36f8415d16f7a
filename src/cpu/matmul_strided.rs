//! CPU twin of `shaders/matmul_strided.wgsl`.

use rayon::prelude::*;

use crate::params::MatmulStridedParams;

/// Per image and batch index `(i, j)`, `out = A · B` with every operand read or written
/// through its strides; each output element sums its `k` products in order, in f32.
///
/// Arguments follow the shader's bindings: params, a, b, out.
pub fn matmul_strided(p: &MatmulStridedParams, a: &[f32], b: &[f32], out: &mut [f32]) {
    let u = |v: u32| v as usize;
    let (images, out_image) = (u(p.images), u(p.out_image));
    out[..images * out_image].par_chunks_mut(out_image).enumerate().for_each(|(img, dst)| {
        let (a, b) = (&a[img * u(p.a_image)..], &b[img * u(p.b_image)..]);
        for i in 0..u(p.b0) {
            for j in 0..u(p.b1) {
                let a0 = i * u(p.a_b0) + j * u(p.a_b1);
                let b0 = i * u(p.b_b0) + j * u(p.b_b1);
                let o0 = i * u(p.o_b0) + j * u(p.o_b1);
                for r in 0..u(p.m) {
                    for c in 0..u(p.n) {
                        let mut acc = 0.0f32;
                        for t in 0..u(p.k) {
                            acc += a[a0 + r * u(p.a_m) + t * u(p.a_k)] * b[b0 + t * u(p.b_k) + c * u(p.b_n)];
                        }
                        dst[o0 + r * u(p.o_m) + c * u(p.o_n)] = acc;
                    }
                }
            }
        }
    });
}
