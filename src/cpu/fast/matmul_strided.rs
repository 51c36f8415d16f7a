//! The fast path of `matmul_strided` (attention's products): each block's product on the
//! packed microkernels (`gemm::sgemm` reads the strided operands while packing), blocks
//! in parallel, results written to their strided places.

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::cpu::gemm::Microkernel;
use crate::cpu::gemm::{sgemm, GemmScratch, Strided};
use crate::cpu::matmul_strided::{scatter, OutPtr};
use crate::params::MatmulStridedParams;

fn kernel() -> &'static Microkernel {
    static KERNEL: OnceLock<Microkernel> = OnceLock::new();
    KERNEL.get_or_init(Microkernel::detect)
}

/// `cpu::matmul_strided`, computed block by block with the GEMM microkernels.
pub(crate) fn matmul_strided_fast(p: &MatmulStridedParams, a: &[f32], b: &[f32], out: &mut [f32]) {
    let u = |v: u32| v as usize;
    let (m, k, n) = (u(p.m), u(p.k), u(p.n));
    let blocks = u(p.images) * u(p.b0) * u(p.b1);
    let out_len = u(p.images) * u(p.out_image);
    let out_ptr = OutPtr(out[..out_len].as_mut_ptr());
    (0..blocks).into_par_iter().for_each_init(
        || (GemmScratch::default(), vec![0.0f32; m * n]),
        |(scratch, pc), q| {
            let (img, i, j) = (q / (u(p.b0) * u(p.b1)), q / u(p.b1) % u(p.b0), q % u(p.b1));
            let a0 = img * u(p.a_image) + i * u(p.a_b0) + j * u(p.a_b1);
            let b0 = img * u(p.b_image) + i * u(p.b_b0) + j * u(p.b_b1);
            let sa = Strided { data: &a[a0..], rs: u(p.a_m), cs: u(p.a_k) };
            let sb = Strided { data: &b[b0..], rs: u(p.b_k), cs: u(p.b_n) };
            sgemm(kernel(), (m, n, k), sa, sb, pc, n, false, scratch);
            scatter(p, q, pc, out_ptr, out_len);
        },
    );
}
