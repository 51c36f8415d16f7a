//! Perforated convolution layers at real network shapes, dense and at q = 1/2 and 1/4,
//! batch 1 and 8, on the CPU and the GPU. Criterion reports each case (throughput in
//! FLOP/s of the computed positions, shown as elem/s); at the end a table prints theoretical vs measured
//! speedup per case, the ratio to the targets, and the CPU's im2col + bias
//! overhead relative to the bare GEMM.
//!
//! `cargo bench --bench conv_layer` runs everything; `PERFORATE_BENCH_QUICK=1` shrinks the
//! shapes (channels / 8) for a smoke run. On a CPU adapter (lavapipe) the GPU cases run at
//! batch 1 only unless `PERFORATE_BENCH_GPU_FULL=1`.

mod support;

use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayD, Axis, IxDyn};
use perforate::cpu::{self, CpuConv};
use perforate::gpu::{GpuContext, GpuConv};
use perforate::rng::SeededRng;
use perforate::{ConvGeometry, ConvLayer, ConvSchedule, ConvSettings};
use rayon::prelude::*;
use support::{best, quick};

fn shapes() -> Vec<(&'static str, ConvGeometry)> {
    let d = if quick() { 8 } else { 1 };
    vec![
        ("alexnet_conv2", ConvGeometry::new(96 / d, 27, 27, 256 / d, 5, 5).with_padding(2).with_groups(2)),
        ("vgg16_conv3_2", ConvGeometry::new(256 / d, 56, 56, 256 / d, 3, 3).with_padding(1)),
        ("resnet18_layer2", ConvGeometry::new(128 / d, 28, 28, 128 / d, 3, 3).with_padding(1)),
    ]
}

const KEEPS: [(f64, &str); 3] = [(1.0, "q1"), (0.5, "q0.5"), (0.25, "q0.25")];

fn layer(g: ConvGeometry, q: f64) -> ConvLayer {
    let mut rng = SeededRng::new(1);
    let w = rng.vec_f32(g.weight_len(), -0.05, 0.05);
    let l = ConvLayer::new(g, w, Some(vec![0.01; g.out_channels])).unwrap().with_relu(true);
    l.with_uniform_perforation(q, 7).unwrap()
}

fn input(l: &ConvLayer) -> ArrayD<f32> {
    let shape = l.input_shape();
    let n = shape.iter().product();
    ArrayD::from_shape_vec(IxDyn(&shape), SeededRng::new(2).vec_f32(n, -1.0, 1.0)).unwrap()
}

/// A criterion group with its name (the prefix of the sample keys).
struct Group<'a>(&'static str, BenchmarkGroup<'a, WallTime>);

fn group<'a>(c: &'a mut Criterion, name: &'static str) -> Group<'a> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10).warm_up_time(Duration::from_millis(500));
    Group(name, g)
}

/// Benchmarks `f` as `group/id`.
fn bench(group: &mut Group<'_>, id: &str, throughput: Throughput, f: impl FnMut()) {
    support::bench(&mut group.1, id, format!("{}/{id}", group.0), throughput, f);
}

impl Group<'_> {
    fn finish(self) {
        self.1.finish();
    }
}

/// The bare GEMM of a dense layer, split over cores like `cpu::matmul_tiled`, without
/// bias or scatter: the yardstick for im2col + bias overhead.
fn bare_gemm(a: &Array2<f32>, b: &Array2<f32>, c: &mut Array2<f32>) {
    let block = b.ncols().div_ceil(2 * rayon::current_num_threads()).max(64);
    let cs: Vec<_> = c.axis_chunks_iter_mut(Axis(1), block).collect();
    cs.into_par_iter().enumerate().for_each(|(i, mut cv)| {
        let j = i * block;
        general_mat_mul(1.0, a, &b.slice(s![.., j..j + cv.ncols()]), 0.0, &mut cv);
    });
}

fn cpu_benches(c: &mut Criterion) {
    let mut g = group(c, "cpu_conv");
    for (name, geometry) in shapes() {
        for batch in [1, 8] {
            for (q, qname) in KEEPS {
                let l = layer(geometry.with_batch(batch), q);
                let conv = CpuConv::new(&l, ConvSettings::default()).unwrap();
                let x = input(&l);
                bench(&mut g, &format!("{name}_b{batch}_{qname}"), Throughput::Elements(l.flops()), || {
                    conv.run(x.view()).unwrap();
                });
            }
        }
    }
    g.finish();

    // The stages of the dense VGG layer, batch 1.
    let (_, vgg) = shapes()[1];
    let l = layer(vgg, 1.0);
    let schedule = ConvSchedule::new(&l, &ConvSettings::default(), u64::MAX).unwrap();
    let step = schedule.steps[0];
    let x = input(&l);
    let xs = x.as_slice().unwrap();
    let mut col = vec![0.0f32; schedule.col_len];
    let mut out = vec![0.0f32; l.compact_output_shape().iter().product()];
    let (m, k, n) = (vgg.out_channels, vgg.k_per_group(), vgg.out_positions());
    let a = Array2::from_shape_vec((m, k), l.weights().to_vec()).unwrap();
    let b = Array2::from_shape_vec((k, n), SeededRng::new(3).vec_f32(k * n, -1.0, 1.0)).unwrap();
    let mut cm = Array2::<f32>::zeros((m, n));
    let packed = {
        let lda = k.next_multiple_of(4);
        let mut p = vec![0.0f32; m * lda];
        for (d, s) in p.chunks_exact_mut(lda).zip(l.weights().chunks_exact(k)) {
            d[..k].copy_from_slice(s);
        }
        p
    };
    let mut g = group(c, "cpu_stage");
    bench(&mut g, "im2col_masked/vgg16_conv3_2_b1", Throughput::Bytes(4 * schedule.col_len as u64), || {
        cpu::im2col_masked(&step.im2col, xs, l.mask().positions(), &[], &mut col)
    });
    bench(&mut g, "matmul_tiled/vgg16_conv3_2_b1", Throughput::Elements(l.flops()), || {
        cpu::matmul_tiled(&step.matmul, &packed, &col, l.bias(), &mut out)
    });
    bench(&mut g, "gemm/vgg16_conv3_2_b1", Throughput::Elements(l.flops()), || bare_gemm(&a, &b, &mut cm));
    g.finish();
}

fn gpu_benches(c: &mut Criterion, ctx: &GpuContext) {
    let full = ctx.adapter_info().device_type != wgpu::DeviceType::Cpu
        || std::env::var("PERFORATE_BENCH_GPU_FULL").is_ok_and(|v| v == "1");
    let batches: &[usize] = if full { &[1, 8] } else { &[1] };
    let mut g = group(c, "gpu_conv");
    for (name, geometry) in shapes() {
        for &batch in batches {
            for (q, qname) in KEEPS {
                let l = layer(geometry.with_batch(batch), q);
                let conv = GpuConv::new(ctx, &l, ConvSettings::default()).unwrap();
                conv.upload(input(&l).view()).unwrap();
                bench(&mut g, &format!("{name}_b{batch}_{qname}"), Throughput::Elements(l.flops()), || {
                    conv.execute().unwrap()
                });
            }
        }
    }
    g.finish();
}

fn summary(gpu: Option<&GpuContext>) {
    println!("\n=== perforated conv layer: theoretical vs measured speedup (best criterion sample of each case) ===");
    if let Some(ctx) = gpu {
        println!("GPU adapter: {}", ctx.describe());
    }
    println!(
        "{:<9} {:<26} {:>10} {:>11} {:>9} {:>7} {:>7}  verdict",
        "executor", "case", "dense ms", "theoretical", "measured", "ratio", "target"
    );
    for (executor, targets) in [("cpu_conv", [0.85, 0.75]), ("gpu_conv", [0.8, f64::NAN])] {
        for (name, geometry) in shapes() {
            for batch in [1, 8] {
                let Some(dense) = best(&format!("{executor}/{name}_b{batch}_q1")) else {
                    continue;
                };
                for ((q, qname), target) in KEEPS[1..].iter().zip(targets) {
                    let Some(t) = best(&format!("{executor}/{name}_b{batch}_{qname}")) else {
                        continue;
                    };
                    let theoretical = layer(geometry.with_batch(batch), *q).theoretical_speedup();
                    let measured = dense / t;
                    let ratio = measured / theoretical;
                    let verdict = if target.is_nan() {
                        "-"
                    } else if ratio >= target {
                        "meets"
                    } else {
                        "BELOW"
                    };
                    let target = if target.is_nan() { "-".to_string() } else { format!("{target:.2}") };
                    println!(
                        "{executor:<9} {:<26} {:>10.2} {theoretical:>11.2} {measured:>9.2} {ratio:>7.2} {target:>7}  {verdict}",
                        format!("{name}_b{batch}_{qname}"),
                        dense * 1e3
                    );
                }
            }
        }
    }
    if let (Some(conv), Some(gemm), Some(im2col)) = (
        best("cpu_conv/vgg16_conv3_2_b1_q1"),
        best("cpu_stage/gemm/vgg16_conv3_2_b1"),
        best("cpu_stage/im2col_masked/vgg16_conv3_2_b1"),
    ) {
        let overhead = (conv - gemm) / gemm;
        println!(
            "CPU dense VGG conv3_2 b1: conv {:.2} ms, bare GEMM {:.2} ms ({:.1} GFLOP/s), im2col alone {:.2} ms; \
             im2col + bias overhead {:.1}% of GEMM (target <= 25%: {})",
            conv * 1e3,
            gemm * 1e3,
            layer(shapes()[1].1, 1.0).flops() as f64 / gemm / 1e9,
            im2col * 1e3,
            overhead * 100.0,
            if overhead <= 0.25 { "meets" } else { "BELOW" }
        );
    }
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(if quick() { 1 } else { 4 }))
        .configure_from_args();
    cpu_benches(&mut c);
    let gpu = match GpuContext::new() {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            println!("GPU benches skipped: {e}");
            None
        }
    };
    if let Some(ctx) = &gpu {
        gpu_benches(&mut c, ctx);
    }
    c.final_summary();
    summary(gpu.as_ref());
}
