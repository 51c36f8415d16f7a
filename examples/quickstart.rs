//! Quickstart: one VGG-sized 3×3 convolution (56×56, 256 → 256 channels), dense and
//! perforated at kept fractions 1/2 and 1/4, on the CPU and (when an adapter exists)
//! on the GPU. Prints the adapter, the largest CPU/GPU difference, and theoretical vs
//! measured speedups.
//!
//! Run with `cargo run --release --example quickstart`.

use std::time::{Duration, Instant};

use ndarray::{ArrayD, IxDyn};
use perforate::cpu::CpuConv;
use perforate::gpu::{GpuContext, GpuConv};
use perforate::rng::SeededRng;
use perforate::{ConvGeometry, ConvLayer, ConvSettings};

/// Median wall time of `runs` calls of `f`, after one warm-up call.
fn median_time(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn main() -> perforate::Result<()> {
    // 1. Describe the layer: VGG-16 conv3_2's shape, weights from a seeded generator.
    let geometry = ConvGeometry::new(256, 56, 56, 256, 3, 3).with_padding(1);
    let mut rng = SeededRng::new(2016);
    let scale = (2.0 / geometry.k_per_group() as f32).sqrt();
    let weights = rng.vec_f32(geometry.weight_len(), -scale, scale);
    let bias = rng.vec_f32(geometry.out_channels, -0.1, 0.1);
    let dense = ConvLayer::new(geometry, weights, Some(bias))?.with_relu(true);
    let input = ArrayD::from_shape_vec(IxDyn(&dense.input_shape()), rng.vec_f32(256 * 56 * 56, -1.0, 1.0))
        .expect("input length matches its shape");

    // 2. Perforate it: seeded uniform masks keeping 1/2 and 1/4 of the output positions.
    let layers = vec![
        ("dense", dense.clone()),
        ("q=1/2", dense.clone().with_uniform_perforation(0.5, 1)?),
        ("q=1/4", dense.clone().with_uniform_perforation(0.25, 1)?),
    ];

    // 3. A GPU context, if this machine has an adapter; the CPU path works regardless.
    let gpu = match GpuContext::new() {
        Ok(ctx) => {
            println!("GPU adapter: {}", ctx.describe());
            Some(ctx)
        }
        Err(e) => {
            println!("no GPU ({e}); CPU only");
            None
        }
    };
    println!("layer: {geometry}");
    println!(
        "{:<7} {:>6} {:>11} {:>10} {:>9} {:>10} {:>9} {:>13}",
        "layer", "kept", "theoretical", "CPU ms", "CPU x", "GPU ms", "GPU x", "max |CPU-GPU|"
    );

    let settings = ConvSettings::default();
    let (mut cpu_dense, mut gpu_dense) = (None, None);
    for (name, layer) in &layers {
        // 4. Compile once per executor, then run as often as needed.
        let cpu = CpuConv::new(layer, settings)?;
        let cpu_out = cpu.run(input.view())?;
        let cpu_time = median_time(5, || {
            cpu.run(input.view()).expect("CPU run");
        });
        let cpu_base = *cpu_dense.get_or_insert(cpu_time);

        let mut gpu_cols = (String::from("-"), String::from("-"), String::from("-"));
        if let Some(ctx) = &gpu {
            let conv = GpuConv::new(ctx, layer, settings)?;
            let gpu_out = conv.run(input.view())?;
            let diff = gpu_out.iter().zip(cpu_out.iter()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            conv.upload(input.view())?;
            let gpu_time = median_time(3, || conv.execute().expect("GPU run"));
            let gpu_base = *gpu_dense.get_or_insert(gpu_time);
            gpu_cols = (
                format!("{:.2}", gpu_time.as_secs_f64() * 1e3),
                format!("{:.2}", gpu_base.as_secs_f64() / gpu_time.as_secs_f64()),
                format!("{diff:.2e}"),
            );
        }
        println!(
            "{:<7} {:>6.3} {:>11.2} {:>10.2} {:>9.2} {:>10} {:>9} {:>13}",
            name,
            layer.mask().kept_fraction(),
            layer.theoretical_speedup(),
            cpu_time.as_secs_f64() * 1e3,
            cpu_base.as_secs_f64() / cpu_time.as_secs_f64(),
            gpu_cols.0,
            gpu_cols.1,
            gpu_cols.2
        );
    }
    println!("(speedups are measured against the dense layer on the same executor)");
    Ok(())
}
