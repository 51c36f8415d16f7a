//! GPU against CPU: every problem of the sweep, dense and compact outputs, microbatching
//! and forced chunking. Skips (with a printed reason) without an adapter unless
//! `PERFORATE_REQUIRE_GPU=1`.

mod common;

use common::{assert_close, gpu_or_skip, sweep, to_f64, Keep, Problem};
use perforate::cpu::CpuConv;
use perforate::gpu::GpuConv;
use perforate::{ConvGeometry, ConvKernels, ConvSettings, GemmTile, MapKind, OutputForm};

const TOL: f64 = 1e-4;

fn check(ctx: &perforate::gpu::GpuContext, p: &Problem, settings: ConvSettings) {
    let built = p.build();
    let cpu = CpuConv::new(&built.layer, settings).unwrap().run(built.input.view()).unwrap();
    let gpu = GpuConv::new(ctx, &built.layer, settings).unwrap();
    let out = gpu.run(built.input.view()).unwrap();
    assert_eq!(out.shape(), cpu.shape());
    let label = format!("{} {settings:?}", p.label());
    assert_close(&label, out.as_slice().unwrap(), &to_f64(cpu.as_slice().unwrap()), TOL);
    // And directly against the f64 reference, so that a shared CPU/GPU mistake cannot hide.
    let reference = match settings.output {
        OutputForm::Dense => &built.dense_ref,
        OutputForm::Compact => &built.compact_ref,
    };
    assert_close(&label, out.as_slice().unwrap(), reference, TOL);
}

/// The property test of `fast_conv`'s random geometries on the GPU: each against the CPU
/// twin and the naive f64 reference (with NaN and infinities planted in two of three).
#[test]
fn random_geometries_gpu_matches_cpu_and_reference() {
    let Some(ctx) = gpu_or_skip("random_geometries_gpu_matches_cpu_and_reference") else {
        return;
    };
    let problems = common::random_problems(2016, 60);
    assert!(problems.len() > 40, "only {} random geometries were valid", problems.len());
    for p in &problems {
        check(&ctx, p, ConvSettings::default());
    }
}

#[test]
fn sweep_dense_output_gpu_matches_cpu() {
    let Some(ctx) = gpu_or_skip("sweep_dense_output_gpu_matches_cpu") else {
        return;
    };
    for p in sweep() {
        check(&ctx, &p, ConvSettings::default());
    }
}

#[test]
fn sweep_compact_output_gpu_matches_cpu() {
    let Some(ctx) = gpu_or_skip("sweep_compact_output_gpu_matches_cpu") else {
        return;
    };
    for p in
        sweep().into_iter().filter(|p| p.geometry.batch == 3 && !(p.relu && p.interp == MapKind::Barycentric))
    {
        check(&ctx, &p, ConvSettings { output: OutputForm::Compact, ..Default::default() });
    }
}

#[test]
fn chunked_and_microbatched_gpu_matches_cpu() {
    let Some(ctx) = gpu_or_skip("chunked_and_microbatched_gpu_matches_cpu") else {
        return;
    };
    let g = ConvGeometry::new(6, 17, 17, 8, 5, 5).with_padding(2).with_groups(2).with_batch(3);
    let k = (g.k_per_group() * 4) as u64;
    for keep in [0.25, 1.0] {
        for compact_input in [false, true] {
            let p = Problem {
                interp: MapKind::Nearest,
                in_interp: MapKind::Nearest,
                name: "5x5 groups",
                geometry: g,
                keep: Keep::Frac(keep),
                compact_input,
                relu: true,
                seed: 31,
            };
            for (images_per_gemm, max_chunk_bytes) in
                [(Some(1), None), (Some(3), None), (None, Some(40 * k)), (Some(3), Some(100 * k))]
            {
                let settings = ConvSettings { images_per_gemm, max_chunk_bytes, ..Default::default() };
                if let Some(bytes) = max_chunk_bytes {
                    let conv = GpuConv::new(&ctx, &p.build().layer, settings).unwrap();
                    assert!(conv.schedule().steps.len() > 2 * g.groups, "chunking was not forced");
                    assert!(conv.schedule().chunk_cols as u64 <= bytes / k);
                }
                check(&ctx, &p, settings);
            }
        }
    }
}

/// A depthwise layer runs as one `depthwise_masked` launch by default and as per-group
/// GEMMs when forced; both match the CPU and the f64 reference, dense and compact inputs.
#[test]
fn depthwise_both_kernels_gpu_matches_cpu() {
    let Some(ctx) = gpu_or_skip("depthwise_both_kernels_gpu_matches_cpu") else {
        return;
    };
    let g = ConvGeometry::new(5, 12, 11, 10, 3, 3).with_padding(1).with_groups(5).with_batch(2);
    for (keep, compact_input) in [(1.0, false), (0.5, false), (0.5, true)] {
        let p = Problem {
            interp: MapKind::Nearest,
            in_interp: MapKind::Zeros,
            name: "depthwise x2",
            geometry: g,
            keep: Keep::Frac(keep),
            compact_input,
            relu: true,
            seed: 41,
        };
        for kernels in [ConvKernels::Auto, ConvKernels::Im2colGemm] {
            let settings = ConvSettings { kernels, ..Default::default() };
            let conv = GpuConv::new(&ctx, &p.build().layer, settings).unwrap();
            let direct = kernels == ConvKernels::Auto;
            assert_eq!(conv.schedule().depthwise.is_some(), direct, "{kernels:?}");
            assert_eq!(conv.schedule().steps.is_empty(), direct, "{kernels:?}");
            check(&ctx, &p, settings);
        }
    }
}

/// A tile-sized GEMM: more than one tile of either variant in both directions (140 rows,
/// 288 columns), k not a multiple of 16, so partial tiles, the register prefetch and the
/// zero-padded vec4 loads are exercised; both `matmul_tiled` variants forced and chosen.
#[test]
fn multi_tile_gemm_gpu_matches_cpu() {
    let Some(ctx) = gpu_or_skip("multi_tile_gemm_gpu_matches_cpu") else {
        return;
    };
    let g = ConvGeometry::new(7, 12, 12, 140, 3, 3).with_padding(1).with_batch(2);
    for keep in [1.0, 0.6] {
        let p = Problem {
            interp: MapKind::Nearest,
            in_interp: MapKind::Nearest,
            name: "140 channels",
            geometry: g,
            keep: Keep::Frac(keep),
            compact_input: false,
            relu: false,
            seed: 77,
        };
        for gemm_tile in [GemmTile::Auto, GemmTile::Medium, GemmTile::Large] {
            check(&ctx, &p, ConvSettings { gemm_tile, ..Default::default() });
        }
    }
}

/// Apps run layers from several threads on one context: every run must still get its
/// own, correct result (regression test for a readback race between pollers).
#[test]
fn concurrent_runs_on_one_context_are_correct() {
    let Some(ctx) = gpu_or_skip("concurrent_runs_on_one_context_are_correct") else {
        return;
    };
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let ctx = ctx.clone();
            s.spawn(move || {
                let g = ConvGeometry::new(3, 11, 11, 5, 3, 3).with_padding(1).with_batch(2);
                let p = Problem {
                    interp: MapKind::Nearest,
                    in_interp: MapKind::Nearest,
                    name: "threads",
                    geometry: g,
                    keep: Keep::Frac(0.5),
                    compact_input: t % 2 == 1,
                    relu: false,
                    seed: 100 + t,
                };
                let built = p.build();
                let conv = GpuConv::new(&ctx, &built.layer, ConvSettings::default()).unwrap();
                for _ in 0..15 {
                    let out = conv.run(built.input.view()).unwrap();
                    assert_close(&p.label(), out.as_slice().unwrap(), &built.dense_ref, TOL);
                }
            });
        }
    });
}

#[test]
fn gpu_layer_runs_many_inputs() {
    let Some(ctx) = gpu_or_skip("gpu_layer_runs_many_inputs") else {
        return;
    };
    common::check_independent_runs(|layer| {
        let conv = GpuConv::new(&ctx, layer, ConvSettings::default()).unwrap();
        move |x| conv.run(x).unwrap()
    });
}

/// Fully connected layers (1×1 convolutions of 1×1 maps) at batch 1 to 9: products 1 to 8
/// columns wide run `matmul_narrow`, 9 runs `matmul_tiled`; k is not a multiple of 4 and
/// there are more rows than one workgroup reduces.
#[test]
fn fully_connected_products_of_every_width() {
    let Some(ctx) = gpu_or_skip("fully_connected_products_of_every_width") else { return };
    for batch in 1..=9 {
        let g = ConvGeometry::new(1001, 1, 1, 300, 1, 1).with_batch(batch);
        let p = Problem {
            interp: MapKind::Nearest,
            in_interp: MapKind::Nearest,
            name: "fc",
            geometry: g,
            keep: Keep::Frac(1.0),
            compact_input: false,
            relu: batch % 2 == 0,
            seed: batch as u64,
        };
        check(&ctx, &p, ConvSettings { images_per_gemm: Some(batch), ..Default::default() });
    }
}

/// `conv_fused` (forced: the implicit GEMM computes each B value from the input through
/// the mask and map where the tile loads it) on every problem of the sweep and on the
/// random geometries (groups, strides, dilation, every map kind, compact inputs, NaN and
/// infinities), against the CPU twin and the f64 reference; a schedule of several chunks
/// and both tile variants on a multi-tile product. No column matrix is allocated.
#[test]
fn fused_conv_gpu_matches_cpu_and_reference() {
    let Some(ctx) = gpu_or_skip("fused_conv_gpu_matches_cpu_and_reference") else {
        return;
    };
    let fused = ConvSettings { kernels: ConvKernels::Fused, ..Default::default() };
    for p in sweep().into_iter().filter(|p| p.geometry.batch == 3).chain(common::random_problems(77, 30)) {
        let conv = GpuConv::new(&ctx, &p.build().layer, fused).unwrap();
        assert!(conv.schedule().fused && conv.schedule().col_len == 0, "{}", p.label());
        check(&ctx, &p, fused);
    }
    let g = ConvGeometry::new(7, 12, 12, 140, 3, 3).with_padding(1).with_batch(2);
    for keep in [1.0, 0.6] {
        let p = Problem {
            interp: MapKind::Nearest,
            in_interp: MapKind::Nearest,
            name: "140 channels fused",
            geometry: g,
            keep: Keep::Frac(keep),
            compact_input: false,
            relu: true,
            seed: 78,
        };
        for gemm_tile in [GemmTile::Medium, GemmTile::Large] {
            check(&ctx, &p, ConvSettings { gemm_tile, ..fused });
        }
        let chunked = ConvSettings { max_chunk_bytes: Some(4 * 63 * 64), ..fused };
        let conv = GpuConv::new(&ctx, &p.build().layer, chunked).unwrap();
        assert!(conv.schedule().steps.len() > 2, "several chunks");
        check(&ctx, &p, chunked);
    }
}
