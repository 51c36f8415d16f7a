//! The CPU path against a naive direct convolution accumulated in f64.

mod common;

use common::{assert_close, sweep, Keep, Problem};
use perforate::cpu::CpuConv;
use perforate::{ConvGeometry, ConvSettings, MapKind, OutputForm};

const TOL: f64 = 1e-4;

#[test]
fn sweep_dense_output_matches_naive_reference() {
    let problems = sweep();
    assert!(problems.len() > 140);
    for p in problems {
        let built = p.build();
        let conv = CpuConv::new(&built.layer, ConvSettings::default()).unwrap();
        let out = conv.run(built.input.view()).unwrap();
        assert_eq!(out.shape(), built.layer.dense_output_shape());
        assert_close(&p.label(), out.as_slice().unwrap(), &built.dense_ref, TOL);
    }
}

#[test]
fn sweep_compact_output_matches_naive_reference() {
    // A barycentric layer's ReLU must follow the interpolation: no compact output.
    for p in sweep().into_iter().filter(|p| !(p.relu && p.interp == MapKind::Barycentric)) {
        let built = p.build();
        let settings = ConvSettings { output: OutputForm::Compact, ..Default::default() };
        let out = CpuConv::new(&built.layer, settings).unwrap().run(built.input.view()).unwrap();
        assert_eq!(out.shape(), built.layer.compact_output_shape());
        assert_close(&p.label(), out.as_slice().unwrap(), &built.compact_ref, TOL);
    }
}

/// Microbatching and chunking change how columns are grouped into GEMMs (chunks may
/// straddle images), never the result.
#[test]
fn microbatching_and_chunking_do_not_change_results() {
    let cases = [
        ("5x5 groups", ConvGeometry::new(6, 17, 17, 8, 5, 5).with_padding(2).with_groups(2)),
        ("3x3", ConvGeometry::new(4, 13, 11, 6, 3, 3).with_padding(1)),
    ];
    for (name, g) in cases {
        for keep in [0.25, 0.5, 1.0] {
            let p = Problem {
                interp: MapKind::Nearest,
                in_interp: MapKind::Nearest,
                name,
                geometry: g.with_batch(5),
                keep: Keep::Frac(keep),
                compact_input: false,
                relu: true,
                seed: 9,
            };
            let built = p.build();
            let k = (g.k_per_group() * 4) as u64;
            for (images_per_gemm, max_chunk_bytes) in [
                (Some(1), None),
                (Some(2), None),
                (Some(5), None),
                (None, Some(4 * k)),
                (Some(5), Some(52 * k)),
            ] {
                let settings = ConvSettings { images_per_gemm, max_chunk_bytes, ..Default::default() };
                let conv = CpuConv::new(&built.layer, settings).unwrap();
                let label = format!("{} ipg={images_per_gemm:?} chunk={max_chunk_bytes:?}", p.label());
                if let Some(bytes) = max_chunk_bytes {
                    assert!(conv.schedule().chunk_cols as u64 <= bytes / k, "{label}: chunk not bounded");
                }
                let out = conv.run(built.input.view()).unwrap();
                assert_close(&label, out.as_slice().unwrap(), &built.dense_ref, TOL);
            }
        }
    }
}

/// The depthwise geometries of the sweep run through `depthwise_masked` by default; forced
/// onto per-group GEMMs they must give the same values.
#[test]
fn depthwise_forced_onto_gemms_matches_reference() {
    for p in common::sweep().into_iter().filter(|p| p.name.contains("depthwise")) {
        let built = p.build();
        let auto = CpuConv::new(&built.layer, ConvSettings::default()).unwrap();
        assert!(auto.schedule().depthwise.is_some() && auto.schedule().steps.is_empty(), "{}", p.label());
        let settings = ConvSettings { kernels: perforate::ConvKernels::Im2colGemm, ..Default::default() };
        let gemm = CpuConv::new(&built.layer, settings).unwrap();
        assert!(gemm.schedule().depthwise.is_none(), "{}", p.label());
        let out = gemm.run(built.input.view()).unwrap();
        assert_close(&p.label(), out.as_slice().unwrap(), &built.dense_ref, TOL);
    }
}

#[test]
fn default_microbatch_is_floor_of_inverse_kept_fraction() {
    let g = ConvGeometry::new(2, 8, 8, 2, 3, 3).with_padding(1).with_batch(8);
    for (q, expected) in [(1.0, 1), (0.5, 2), (0.3, 3), (0.25, 4), (0.1, 8)] {
        let layer = perforate::ConvLayer::new(g, vec![0.0; g.weight_len()], None)
            .unwrap()
            .with_uniform_perforation(q, 3)
            .unwrap();
        let conv = CpuConv::new(&layer, ConvSettings::default()).unwrap();
        assert_eq!(conv.schedule().images_per_gemm, expected, "q = {q}");
        assert_eq!(conv.schedule().chunk_cols, expected * layer.mask().len(), "q = {q}");
    }
}

#[test]
fn one_compiled_layer_runs_many_inputs() {
    common::check_independent_runs(|layer| {
        let conv = CpuConv::new(layer, ConvSettings::default()).unwrap();
        move |x| conv.run(x).unwrap()
    });
}

/// Products at most 8 columns wide (fully connected layers and small planes, one image per
/// GEMM) are scheduled on `matmul_narrow`, whose CPU twin reduces as the shader does.
#[test]
fn narrow_products_run_on_matmul_narrow_and_match_reference() {
    let cases = [
        ("fc", ConvGeometry::new(300, 1, 1, 37, 1, 1)),
        ("fc_deep", ConvGeometry::new(1100, 1, 1, 9, 1, 1)),
        ("2x2_plane", ConvGeometry::new(16, 3, 3, 20, 2, 2)),
    ];
    for (seed, (name, g)) in cases.into_iter().enumerate() {
        for batch in [1, 3, 8, 9] {
            for relu in [false, true] {
                let p = Problem {
                    name,
                    geometry: g.with_batch(batch),
                    keep: Keep::Frac(1.0),
                    compact_input: false,
                    relu,
                    seed: seed as u64 + 40,
                    interp: MapKind::Nearest,
                    in_interp: MapKind::Nearest,
                };
                let built = p.build();
                let conv = CpuConv::new(&built.layer, ConvSettings::default()).unwrap();
                // One GEMM per image (dense: one image per GEMM), at most 4 columns each.
                let steps = &conv.schedule().steps;
                assert!(!steps.is_empty() && steps.iter().all(|s| s.narrow), "{}", p.label());
                let out = conv.run(built.input.view()).unwrap();
                assert_close(&p.label(), out.as_slice().unwrap(), &built.dense_ref, TOL);
            }
        }
    }
}
