//! Microkernel throughput on L1-resident panels: `cargo run --release --example kernel_peak`
//! prints GFLOP/s of every microkernel family this CPU runs, on one thread.

use std::time::Instant;

use perforate::cpu::gemm::{BRow, Microkernel};

fn main() {
    for kern in Microkernel::available().into_iter().flat_map(|k| [Some(k), k.wide()]).flatten() {
        let (mr, nr, kc) = (kern.mr, kern.nr, 256);
        let a = vec![0.5f32; kc * mr];
        let b = vec![0.25f32; kc * nr];
        let mut c = vec![0.0f32; mr * nr];
        let reps = 200_000;
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let start = Instant::now();
            for _ in 0..reps {
                // SAFETY: buffers sized for one tile; the family was detected.
                unsafe {
                    kern.run(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), nr, true, std::ptr::null(), false)
                };
            }
            best = best.min(start.elapsed().as_secs_f64());
        }
        let flops = 2.0 * (mr * nr * kc) as f64 * reps as f64;
        println!(
            "{:<8} {}x{}: {:.1} GFLOP/s on one thread (c[0] = {})",
            kern.name,
            mr,
            nr,
            flops / best / 1e9,
            c[0]
        );
        if kern.has_indirect() {
            // B rows read in place from a 56-wide image plane (as a 3x3 conv's taps do).
            let image = vec![0.25f32; kc * 60 + 64];
            let rows: Vec<BRow> = (0..kc)
                .map(|p| BRow { ptr: image[p * 60 + p % 3..].as_ptr(), keep: (1u64 << nr) - 1 })
                .collect();
            let mut best = f64::INFINITY;
            for _ in 0..5 {
                let start = Instant::now();
                for _ in 0..reps {
                    // SAFETY: every row has nr readable floats.
                    unsafe {
                        kern.run_indirect(
                            kc,
                            a.as_ptr(),
                            &rows,
                            c.as_mut_ptr(),
                            nr,
                            true,
                            std::ptr::null(),
                            false,
                        )
                    };
                }
                best = best.min(start.elapsed().as_secs_f64());
            }
            println!(
                "{:<8} {}x{} indirect: {:.1} GFLOP/s on one thread",
                kern.name,
                mr,
                nr,
                flops / best / 1e9
            );
        }
    }
}
