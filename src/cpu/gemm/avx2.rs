//! AVX2 + FMA microkernel: a 6 × 16 register tile.
//!
//! Registers: 12 accumulators `acc[i][v]` (row i, 8-lane half v of the 16 columns), 2 B
//! vectors and 1 broadcast: 15 of 16 ymm. Loop: per step two B loads, then per row one
//! broadcast and two FMAs (12 FMAs against 8 loads).

use std::arch::x86_64::*;

use super::Microkernel;

const MR: usize = 6;
const NR: usize = 16;

pub(super) fn kernel() -> Microkernel {
    Microkernel { name: "avx2", mr: MR, nr: NR, func: run, indirect: None }
}

/// # Safety
/// See [`super::KernelFn`]; the CPU has AVX2 and FMA.
#[allow(clippy::too_many_arguments)]
unsafe fn run(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    bias: *const f32,
    relu: bool,
) {
    // SAFETY: forwarded contract.
    unsafe { tile(kc, a, b, c, ldc, accumulate, bias, relu) }
}

#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    bias: *const f32,
    relu: bool,
) {
    let mut acc = [[_mm256_setzero_ps(); 2]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        // SAFETY: `a` and `b` advance by one step of MR and NR floats, kc times.
        unsafe {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm256_broadcast_ss(&*a.add(i));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
            a = a.add(MR);
            b = b.add(NR);
        }
    }
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: the tile has MR rows of NR floats at stride ldc.
        unsafe {
            let ci = c.add(i * ldc);
            let (mut r0, mut r1) = (row[0], row[1]);
            if accumulate {
                r0 = _mm256_add_ps(r0, _mm256_loadu_ps(ci));
                r1 = _mm256_add_ps(r1, _mm256_loadu_ps(ci.add(8)));
            }
            if !bias.is_null() {
                let beta = _mm256_set1_ps(*bias.add(i));
                r0 = _mm256_add_ps(r0, beta);
                r1 = _mm256_add_ps(r1, beta);
                if relu {
                    r0 = _mm256_max_ps(_mm256_setzero_ps(), r0);
                    r1 = _mm256_max_ps(_mm256_setzero_ps(), r1);
                }
            }
            _mm256_storeu_ps(ci, r0);
            _mm256_storeu_ps(ci.add(8), r1);
        }
    }
}
