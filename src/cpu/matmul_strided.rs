//! CPU twin of `shaders/matmul_strided.wgsl`.

use rayon::prelude::*;

use crate::params::MatmulStridedParams;

/// Per image and batch index `(i, j)`, `out = A · B` with every operand read or written
/// through its strides; each output element sums its `k` products in order, in f32.
///
/// Arguments follow the shader's bindings: params, a, b, out.
pub fn matmul_strided(p: &MatmulStridedParams, a: &[f32], b: &[f32], out: &mut [f32]) {
    let u = |v: u32| v as usize;
    let (m, k, n) = (u(p.m), u(p.k), u(p.n));
    let blocks = u(p.images) * u(p.b0) * u(p.b1);
    // Each product on contiguous copies of its operands (strided reads such as a
    // transpose's would miss the cache on every step of k), rows of B streamed per row of
    // A; then the results go to their strided places.
    let out_ptr = OutPtr(out[..u(p.images) * u(p.out_image)].as_mut_ptr());
    let out_len = u(p.images) * u(p.out_image);
    (0..blocks).into_par_iter().for_each(|q| {
        let (img, i, j) = (q / (u(p.b0) * u(p.b1)), q / u(p.b1) % u(p.b0), q % u(p.b1));
        let a0 = img * u(p.a_image) + i * u(p.a_b0) + j * u(p.a_b1);
        let b0 = img * u(p.b_image) + i * u(p.b_b0) + j * u(p.b_b1);
        let pa = pack(a, a0, (m, u(p.a_m)), (k, u(p.a_k)));
        let pb = pack(b, b0, (k, u(p.b_k)), (n, u(p.b_n)));
        let mut pc = vec![0.0f32; m * n];
        for (row, arow) in pc.chunks_exact_mut(n).zip(pa.chunks_exact(k)) {
            for (&av, brow) in arow.iter().zip(pb.chunks_exact(n)) {
                for (o, &bv) in row.iter_mut().zip(brow) {
                    *o += av * bv;
                }
            }
        }
        scatter(p, q, &pc, out_ptr, out_len);
    });
}

/// Writes block `q`'s row-major `m × n` product `pc` to its strided place in the output
/// (`out_len` elements at `out`).
pub(crate) fn scatter(p: &MatmulStridedParams, q: usize, pc: &[f32], out: OutPtr, out_len: usize) {
    let u = |v: u32| v as usize;
    let (img, i, j) = (q / (u(p.b0) * u(p.b1)), q / u(p.b1) % u(p.b0), q % u(p.b1));
    let o0 = img * u(p.out_image) + i * u(p.o_b0) + j * u(p.o_b1);
    let n = u(p.n);
    for r in 0..u(p.m) {
        for c in 0..n {
            let at = o0 + r * u(p.o_m) + c * u(p.o_n);
            assert!(at < out_len, "matmul_strided writes inside its output");
            // SAFETY: `at` is in bounds (checked above), and the output strides tile the
            // output (`MatMul::validate`), so no two blocks or elements write the same
            // place while the blocks run in parallel.
            unsafe { *out.get().add(at) = pc[r * n + c] };
        }
    }
}

/// The output buffer shared by the parallel blocks, which write disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr(pub(crate) *mut f32);
// SAFETY: the blocks write disjoint elements (see `matmul_strided`).
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}

/// A `rows × cols` matrix at `base` of `src` with the given strides, as a row-major copy
/// (read in whichever order walks memory more contiguously).
fn pack(src: &[f32], base: usize, (rows, rs): (usize, usize), (cols, cs): (usize, usize)) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * cols];
    if cs <= rs {
        for r in 0..rows {
            for c in 0..cols {
                out[r * cols + c] = src[base + r * rs + c * cs];
            }
        }
    } else {
        for c in 0..cols {
            for r in 0..rows {
                out[r * cols + c] = src[base + r * rs + c * cs];
            }
        }
    }
    out
}
