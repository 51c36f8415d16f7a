//! Microkernel throughput on L1-resident panels: `cargo run --release --example kernel_peak`
//! prints GFLOP/s of every microkernel family this CPU runs, on one thread.

use std::time::Instant;

use perforate::cpu::gemm::Microkernel;

fn main() {
    for kern in Microkernel::available() {
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
    }
}
