//! GPU kernel throughput at real layer shapes: `cargo run --release --example gpu_kernels
//! -- [--peak-gflops P] [--quick] [--json]` prints, per case, the time of one layer run
//! (`im2col_masked → matmul_tiled`, or `matmul_narrow` for a fully connected product, or
//! the fused `conv_fused` where the case forces it,
//! timed over many runs recorded into one command buffer, best of five), its GFLOP/s
//! (FLOPs of the computed positions) and, with `--peak-gflops`, the percent of that peak.
//!
//! `--quick` divides every channel count by 8 (a smoke run on lavapipe); `benches/device.sh`
//! runs the full shapes on a real GPU.

use std::time::Instant;

use perforate::gpu::{GpuContext, GpuConv};
use perforate::rng::SeededRng;
use perforate::{ConvGeometry, ConvKernels, ConvLayer, ConvSettings, GemmTile};

struct Case {
    name: &'static str,
    geometry: ConvGeometry,
    batch: usize,
    q: f64,
    tile: GemmTile,
    kernels: ConvKernels,
}

fn cases(d: usize) -> Vec<Case> {
    let g = ConvGeometry::new;
    let mut v = Vec::new();
    let mut add = |name, geometry: ConvGeometry, batches: &[usize], qs: &[f64]| {
        for &batch in batches {
            for &q in qs {
                v.push(Case { name, geometry, batch, q, tile: GemmTile::Auto, kernels: ConvKernels::Auto });
            }
        }
    };
    // Square products through a 1x1 conv: the GEMM alone (im2col is a copy of K·N floats).
    add("gemm_4096", g(4096 / d, 64, 64, 4096 / d, 1, 1), &[1], &[1.0]);
    add("gemm_2048", g(2048 / d, 32, 32, 2048 / d, 1, 1), &[1], &[1.0]);
    add("fc_4096", g(4096 / d, 1, 1, 4096 / d, 1, 1), &[1, 32], &[1.0]);
    add("vgg16_conv1_2", g(64 / d, 224, 224, 64 / d, 3, 3).with_padding(1), &[8], &[1.0, 0.5]);
    add("vgg16_conv3_2", g(256 / d, 56, 56, 256 / d, 3, 3).with_padding(1), &[1, 8, 32], &[1.0, 0.5]);
    add("vgg16_conv5_2", g(512 / d, 14, 14, 512 / d, 3, 3).with_padding(1), &[1, 8, 32], &[1.0, 0.5]);
    add("resnet18_conv1", g(3, 224, 224, 64 / d, 7, 7).with_padding(3).with_stride(2), &[8], &[1.0]);
    add("resnet18_layer2", g(128 / d, 28, 28, 128 / d, 3, 3).with_padding(1), &[1, 8], &[1.0, 0.5]);
    add("alexnet_conv2", g(96 / d, 27, 27, 256 / d, 5, 5).with_padding(2).with_groups(2), &[8], &[1.0]);
    let dw = 144 / d;
    add("mobilenetv2_dw", g(dw, 56, 56, dw, 3, 3).with_padding(1).with_groups(dw), &[1, 8], &[1.0]);
    add("mobilenetv2_pw", g(144 / d, 56, 56, 24 / d, 1, 1), &[1, 8], &[1.0]);
    // Both matmul_tiled variants forced on large products.
    for tile in [GemmTile::Medium, GemmTile::Large] {
        v.push(Case {
            name: "gemm_4096",
            geometry: g(4096 / d, 64, 64, 4096 / d, 1, 1),
            batch: 1,
            q: 1.0,
            tile,
            kernels: ConvKernels::Auto,
        });
        let conv3 = g(256 / d, 56, 56, 256 / d, 3, 3).with_padding(1);
        v.push(Case {
            name: "vgg16_conv3_2",
            geometry: conv3,
            batch: 8,
            q: 1.0,
            tile,
            kernels: ConvKernels::Auto,
        });
    }
    // The fused masked conv (implicit GEMM, no column matrix) on the same layers, dense and
    // perforated, beside the two-launch rows above.
    let fused = |name, geometry: ConvGeometry, batch, q| Case {
        name,
        geometry,
        batch,
        q,
        tile: GemmTile::Auto,
        kernels: ConvKernels::Fused,
    };
    v.push(fused("vgg16_conv3_2", g(256 / d, 56, 56, 256 / d, 3, 3).with_padding(1), 8, 1.0));
    v.push(fused("vgg16_conv3_2", g(256 / d, 56, 56, 256 / d, 3, 3).with_padding(1), 8, 0.5));
    v.push(fused("resnet18_layer2", g(128 / d, 28, 28, 128 / d, 3, 3).with_padding(1), 8, 0.5));
    v.push(fused("resnet18_conv1", g(3, 224, 224, 64 / d, 7, 7).with_padding(3).with_stride(2), 8, 1.0));
    v
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let json = args.iter().any(|a| a == "--json");
    let peak: Option<f64> = args
        .iter()
        .position(|a| a == "--peak-gflops")
        .and_then(|i| args.get(i + 1))
        .and_then(|p| p.parse().ok());
    let ctx = match GpuContext::new() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("no GPU adapter: {e}");
            std::process::exit(2);
        }
    };
    eprintln!("adapter: {}", ctx.describe());
    let mut rows = Vec::new();
    for case in cases(if quick { 8 } else { 1 }) {
        let geometry = case.geometry.with_batch(case.batch);
        let mut rng = SeededRng::new(1);
        let w = rng.vec_f32(geometry.weight_len(), -0.05, 0.05);
        let layer = ConvLayer::new(geometry, w, Some(vec![0.01; geometry.out_channels]))
            .and_then(|l| l.with_relu(true).with_uniform_perforation(case.q, 7))
            .expect("valid case");
        let conv = match GpuConv::new(
            &ctx,
            &layer,
            ConvSettings { gemm_tile: case.tile, kernels: case.kernels, ..Default::default() },
        ) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{} b{} q{}: {e}", case.name, case.batch, case.q);
                continue;
            }
        };
        let shape = layer.input_shape();
        let x = SeededRng::new(2).vec_f32(shape.iter().product(), -1.0, 1.0);
        conv.upload(ndarray::ArrayViewD::from_shape(shape, &x).expect("input shape").view()).expect("upload");
        let start = Instant::now();
        conv.execute().expect("run");
        let once = start.elapsed().as_secs_f64();
        #[allow(clippy::cast_possible_truncation)] // clamped to 1..=200
        let reps = (0.05 / once.max(1e-6)).clamp(1.0, 200.0) as usize;
        let mut best = f64::INFINITY;
        for _ in 0..5 {
            let start = Instant::now();
            conv.execute_repeated(reps).expect("run");
            best = best.min(start.elapsed().as_secs_f64() / reps as f64);
        }
        let gflops = layer.flops() as f64 / best / 1e9;
        let row = serde_json::json!({
            "kernel": case.name,
            "tile": format!("{:?}", case.tile),
            "kernels": format!("{:?}", case.kernels),
            "batch": case.batch,
            "q": case.q,
            "launches": conv.launch_count(),
            "ms": best * 1e3,
            "gflops": gflops,
            "percent_of_peak": peak.map(|p| 100.0 * gflops / p),
        });
        if !json {
            println!(
                "{:<16} b{:<3} q{:<5} {:<6} {:<10} {:>4} launches {:>10.3} ms {:>10.1} GFLOP/s{}",
                case.name,
                case.batch,
                case.q,
                format!("{:?}", case.tile),
                format!("{:?}", case.kernels),
                conv.launch_count(),
                best * 1e3,
                gflops,
                peak.map(|p| format!(" {:>5.1}% of peak", 100.0 * gflops / p)).unwrap_or_default()
            );
        }
        rows.push(row);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("json"));
    }
}
