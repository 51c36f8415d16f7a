//! Portable microkernel: a 4 × 8 tile of scalars in plain Rust (the compiler vectorises
//! the 8-column rows where it can). Used where no SIMD family is detected.

use super::Microkernel;

const MR: usize = 4;
const NR: usize = 8;

pub(super) fn kernel() -> Microkernel {
    Microkernel { name: "generic", mr: MR, nr: NR, func: run, indirect: None, rows: None }
}

/// # Safety
/// See [`super::KernelFn`].
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
    // SAFETY: the caller guarantees kc·MR floats at `a`, kc·NR at `b`.
    let (a, b) = unsafe { (std::slice::from_raw_parts(a, kc * MR), std::slice::from_raw_parts(b, kc * NR)) };
    let mut acc = [[0.0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for (row, &ai) in acc.iter_mut().zip(ap) {
            for (x, &bj) in row.iter_mut().zip(bp) {
                *x += ai * bj;
            }
        }
    }
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: the tile has MR rows of NR floats at stride ldc.
        let ci = unsafe { std::slice::from_raw_parts_mut(c.add(i * ldc), NR) };
        // SAFETY: a non-null bias holds MR values.
        let beta = if bias.is_null() { None } else { Some(unsafe { *bias.add(i) }) };
        for (dst, &v) in ci.iter_mut().zip(row) {
            let mut v = if accumulate { *dst + v } else { v };
            if let Some(beta) = beta {
                v += beta;
                if relu {
                    v = crate::cpu::nan::relu_keep_nan(v);
                }
            }
            *dst = v;
        }
    }
}
