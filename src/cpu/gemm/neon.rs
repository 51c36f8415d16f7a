//! NEON microkernel (aarch64): an 8 × 8 register tile.
//!
//! Registers: 16 accumulators `acc[i][v]` (row i, 4-lane half v of the 8 columns), 2 B
//! vectors and 2 A vectors (8 rows as two q registers, used lane by lane with
//! `vfmaq_laneq_f32`): 20 of 32. Loop: per step two B loads, two A loads, 16 FMAs.

use std::arch::aarch64::*;

use super::Microkernel;

const MR: usize = 8;
const NR: usize = 8;

pub(super) fn kernel() -> Microkernel {
    Microkernel { name: "neon", mr: MR, nr: NR, func: run, indirect: None, rows: None }
}

/// # Safety
/// See [`super::KernelFn`]; the CPU has NEON.
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

#[target_feature(enable = "neon")]
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
    let mut acc = [[vdupq_n_f32(0.0); 2]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        // SAFETY: `a` and `b` advance by one step of MR and NR floats, kc times.
        unsafe {
            let b0 = vld1q_f32(b);
            let b1 = vld1q_f32(b.add(4));
            let a0 = vld1q_f32(a);
            let a1 = vld1q_f32(a.add(4));
            macro_rules! rows {
                ($av:expr, $base:expr) => {
                    acc[$base][0] = vfmaq_laneq_f32::<0>(acc[$base][0], b0, $av);
                    acc[$base][1] = vfmaq_laneq_f32::<0>(acc[$base][1], b1, $av);
                    acc[$base + 1][0] = vfmaq_laneq_f32::<1>(acc[$base + 1][0], b0, $av);
                    acc[$base + 1][1] = vfmaq_laneq_f32::<1>(acc[$base + 1][1], b1, $av);
                    acc[$base + 2][0] = vfmaq_laneq_f32::<2>(acc[$base + 2][0], b0, $av);
                    acc[$base + 2][1] = vfmaq_laneq_f32::<2>(acc[$base + 2][1], b1, $av);
                    acc[$base + 3][0] = vfmaq_laneq_f32::<3>(acc[$base + 3][0], b0, $av);
                    acc[$base + 3][1] = vfmaq_laneq_f32::<3>(acc[$base + 3][1], b1, $av);
                };
            }
            rows!(a0, 0);
            rows!(a1, 4);
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
                r0 = vaddq_f32(r0, vld1q_f32(ci));
                r1 = vaddq_f32(r1, vld1q_f32(ci.add(4)));
            }
            if !bias.is_null() {
                let beta = vdupq_n_f32(*bias.add(i));
                r0 = vaddq_f32(r0, beta);
                r1 = vaddq_f32(r1, beta);
                if relu {
                    r0 = vmaxq_f32(r0, vdupq_n_f32(0.0));
                    r1 = vmaxq_f32(r1, vdupq_n_f32(0.0));
                }
            }
            vst1q_f32(ci, r0);
            vst1q_f32(ci.add(4), r1);
        }
    }
}
