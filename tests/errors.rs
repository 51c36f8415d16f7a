//! Bad input gives a clear error naming what is wrong, never a panic.
#![allow(clippy::cast_possible_truncation)] // test sizes are tiny

mod common;

use ndarray::ArrayD;
use perforate::cpu::CpuConv;
use perforate::gpu::GpuConv;
use perforate::{ConvGeometry, ConvLayer, ConvSettings, Mask};

fn layer(g: ConvGeometry) -> ConvLayer {
    ConvLayer::new(g, vec![0.1; g.weight_len()], None).unwrap()
}

fn err<T: std::fmt::Debug>(r: perforate::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn geometry_errors_name_the_problem() {
    let g = ConvGeometry::new(4, 8, 8, 6, 3, 3);
    assert!(err(ConvLayer::new(g.with_groups(4), vec![0.0; 100], None)).contains("divisible by groups 4"));
    assert!(err(ConvLayer::new(g.with_stride(0), vec![], None)).contains("stride_h must be at least 1"));
    let big = ConvGeometry::new(1, 4, 4, 1, 7, 7);
    assert!(
        err(ConvLayer::new(big, vec![0.0; 49], None)).contains("smaller than the dilated kernel extent 7")
    );
    let dil = ConvGeometry::new(1, 5, 5, 1, 3, 3).with_dilation(3);
    assert!(err(ConvLayer::new(dil, vec![0.0; 9], None)).contains("dilated kernel extent 7"));
    let huge = ConvGeometry::new(1 << 20, 1 << 20, 1 << 20, 1, 1, 1);
    assert!(err(ConvLayer::new(huge, vec![], None)).contains("exceed 2^30 elements"));
}

#[test]
fn weight_and_bias_lengths_are_checked() {
    let g = ConvGeometry::new(4, 8, 8, 6, 3, 3).with_groups(2);
    let e = err(ConvLayer::new(g, vec![0.0; 10], None));
    assert!(e.contains("conv weights [6, 2, 3, 3]") && e.contains("expected 108, got 10"), "{e}");
    let e = err(ConvLayer::new(g, vec![0.0; 108], Some(vec![0.0; 5])));
    assert!(e.contains("conv bias") && e.contains("expected 6, got 5"), "{e}");
}

#[test]
fn masks_that_do_not_fit_are_rejected() {
    let l = layer(ConvGeometry::new(2, 9, 9, 2, 3, 3)); // 7x7 output
    let e = err(l.clone().with_mask(Mask::dense(9, 9).unwrap(), 0));
    assert!(e.contains("mask is 9x9 but the layer's output map is 7x7"), "{e}");
    let e = err(l.clone().with_input_map(Mask::dense(7, 7).unwrap().interpolation_map(0)));
    assert!(e.contains("input interpolation map is 7x7 but the layer's input is 9x9"), "{e}");
    for q in [0.0, 1.01, -1.0, f64::NAN] {
        assert!(err(l.clone().with_uniform_perforation(q, 0)).contains("kept fraction must lie in (0, 1]"));
    }
}

#[test]
fn wrong_input_shape_is_an_error_on_both_executors() {
    let l =
        layer(ConvGeometry::new(2, 9, 9, 2, 3, 3).with_batch(2)).with_uniform_perforation(0.5, 1).unwrap();
    let wrong = ArrayD::<f32>::zeros(vec![2, 3, 9, 9]);
    let e = err(CpuConv::new(&l, ConvSettings::default()).unwrap().run(wrong.view()));
    assert!(e.contains("conv input") && e.contains("[2, 2, 9, 9]") && e.contains("[2, 3, 9, 9]"), "{e}");
    // A compact input must come with its map, and vice versa.
    let compact =
        l.clone().with_input_map(Mask::uniform(9, 9, 0.5, 2).unwrap().interpolation_map(0)).unwrap();
    let dense_input = ArrayD::<f32>::zeros(vec![2, 2, 9, 9]);
    let e = err(CpuConv::new(&compact, ConvSettings::default()).unwrap().run(dense_input.view()));
    assert!(e.contains("expected [2, 2, 40]"), "{e}");
    if let Some(ctx) = common::gpu_or_skip("wrong_input_shape_is_an_error_on_both_executors") {
        let e = err(GpuConv::new(&ctx, &l, ConvSettings::default()).unwrap().run(wrong.view()));
        assert!(e.contains("GPU conv input") && e.contains("[2, 3, 9, 9]"), "{e}");
    }
}

#[test]
fn settings_are_validated() {
    let l = layer(ConvGeometry::new(2, 9, 9, 2, 3, 3));
    let s = ConvSettings { images_per_gemm: Some(0), ..Default::default() };
    assert!(err(CpuConv::new(&l, s)).contains("images_per_gemm must be at least 1"));
    let s = ConvSettings { max_chunk_bytes: Some(16), ..Default::default() };
    assert!(err(CpuConv::new(&l, s)).contains("cannot hold 4 im2col columns of 18 values"));
}

#[test]
fn a_tensor_beyond_the_binding_limit_is_too_large_not_a_crash() {
    let Some(ctx) = common::gpu_or_skip("a_tensor_beyond_the_binding_limit_is_too_large_not_a_crash") else {
        return;
    };
    // One input channel plane bigger than any storage binding the device allows.
    let side = ((ctx.max_binding_bytes() / 4) as f64).sqrt() as usize + 64;
    let g = ConvGeometry::new(1, side, side, 1, 1, 1);
    match ConvLayer::new(g, vec![1.0], None) {
        Err(e) => assert!(e.to_string().contains("too large"), "{e}"),
        Ok(l) => {
            let e = err(GpuConv::new(&ctx, &l, ConvSettings::default()));
            assert!(e.contains("too large") && e.contains("per storage binding"), "{e}");
        }
    }
}

/// A device that goes away (here destroyed on purpose) turns into error values on the
/// next run and the next build, never a panic; the app can fall back to the CPU or build a
/// new context and executor and carry on.
#[test]
fn a_lost_device_is_an_error_value() {
    if common::gpu_or_skip("a_lost_device_is_an_error_value").is_none() {
        return;
    }
    let ctx = perforate::gpu::GpuContext::new().unwrap();
    let l = layer(ConvGeometry::new(2, 9, 9, 2, 3, 3)).with_uniform_perforation(0.5, 1).unwrap();
    let conv = GpuConv::new(&ctx, &l, ConvSettings::default()).unwrap();
    let x = ArrayD::<f32>::zeros(l.input_shape());
    assert!(conv.run(x.view()).is_ok());
    ctx.device().destroy();
    let e = conv.run(x.view()).unwrap_err();
    assert!(matches!(e, perforate::Error::DeviceLost(_)), "{e}");
    assert!(e.to_string().contains("fall back to the CPU"), "{e}");
    let e = GpuConv::new(&ctx, &l, ConvSettings::default()).unwrap_err();
    assert!(matches!(e, perforate::Error::DeviceLost(_)), "{e}");
    // The CPU path is unaffected, and a new context and executor carry on with the same
    // result as before the loss.
    let shape = l.input_shape();
    let n = shape.iter().product();
    let x = ArrayD::from_shape_vec(shape, perforate::rng::SeededRng::new(4).vec_f32(n, -1.0, 1.0)).unwrap();
    let cpu = CpuConv::new(&l, ConvSettings::default()).unwrap().run(x.view()).unwrap();
    let fresh = perforate::gpu::GpuContext::new().unwrap();
    let again = GpuConv::new(&fresh, &l, ConvSettings::default()).unwrap().run(x.view()).unwrap();
    assert_eq!(again.shape(), cpu.shape());
    assert!(again.iter().zip(cpu.iter()).all(|(a, b)| (a - b).abs() <= 1e-5 * (1.0 + b.abs())));
}

/// A plan that needs more GPU memory than the context allows is refused before anything
/// is allocated, with the numbers; the same context then builds an executor that fits and
/// runs it to the CPU's result.
#[test]
fn a_plan_past_the_memory_budget_is_refused_with_the_numbers() {
    use perforate::cpu::CpuExecutor;
    use perforate::gpu::GpuExecutor;
    use perforate::network::zoo::{self, ZooConfig};
    use perforate::plan::{Plan, PlanOptions};

    let Some(ctx) = common::gpu_or_skip("a_plan_past_the_memory_budget_is_refused_with_the_numbers") else {
        return;
    };
    let mut net = zoo::build("fashion_vgg", ZooConfig::default()).unwrap();
    net.perforate_all(0.5, 3).unwrap();
    let plan = Plan::compile(&net, 4, PlanOptions::default()).unwrap();
    let need = GpuExecutor::memory_needed(&ctx, &plan).unwrap();
    // The parts are the plan's own numbers: its activation slots, and at least every weight.
    let slots: u64 = plan.slot_sizes().iter().map(|&n| 4 * n as u64).sum();
    assert!(need.activations >= slots && need.activations < slots + 16 * plan.slot_sizes().len() as u64);
    let weights: u64 = plan
        .steps()
        .iter()
        .filter_map(|s| match &s.op {
            perforate::plan::StepOp::Conv { layer, .. } => Some(4 * layer.weights().len() as u64),
            _ => None,
        })
        .sum();
    assert!(need.parameters >= weights, "{need}");
    assert!(need.workspace > 0 && need.readback >= 4 * 4 * 10, "{need}");

    let e = GpuExecutor::new(&ctx.with_memory_budget(need.total() - 1), &plan).unwrap_err();
    assert!(matches!(e, perforate::Error::OutOfMemory(_)), "{e}");
    let text = e.to_string();
    for part in ["fashion_vgg", "batch 4", "activations", "weights and tables", "MiB", "with_memory_budget"] {
        assert!(text.contains(part), "'{part}' missing from: {text}");
    }
    // Exactly the need fits, on the same device.
    let x = ndarray::ArrayD::from_shape_vec(
        plan.input_shape(),
        perforate::rng::SeededRng::new(6).vec_f32(plan.input_shape().iter().product(), 0.0, 1.0),
    )
    .unwrap();
    let gpu = GpuExecutor::new(&ctx.with_memory_budget(need.total()), &plan).unwrap().run(x.view()).unwrap();
    let cpu = CpuExecutor::new(&plan).unwrap().run(x.view()).unwrap();
    common::assert_close(
        "after the refusal",
        gpu.as_slice().unwrap(),
        &common::to_f64(cpu.as_slice().unwrap()),
        1e-4,
    );
}

/// Inputs the fuzzers (`fuzz/run.sh`) found to crash an earlier version: each must now be
/// an error naming the problem. File names say the reader and what went wrong.
#[test]
fn fuzzer_findings_are_errors_not_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&path).unwrap();
        let e = if name.starts_with("onnx_") {
            perforate::onnx::load_bytes(&bytes, None).map(|_| ()).unwrap_err()
        } else if name.starts_with("npy_") {
            perforate::data::npy_f32_from_bytes(&bytes, &name).map(|_| ()).unwrap_err()
        } else if name.starts_with("idx_") {
            perforate::data::idx_images_from_bytes(bytes, &path).map(|_| ()).unwrap_err()
        } else if name.starts_with("plan_") {
            let text = String::from_utf8_lossy(&bytes);
            let mut net =
                perforate::network::zoo::build("fashion_vgg", perforate::network::zoo::ZooConfig::default())
                    .unwrap();
            perforate::network::PerforationPlan::from_json(&text).and_then(|p| p.apply(&mut net)).unwrap_err()
        } else {
            panic!("{name}: unknown reader prefix");
        };
        assert!(!e.to_string().is_empty(), "{name}");
        eprintln!("{name}: {e}");
        checked += 1;
    }
    assert!(checked >= 1);
}

/// `network::load` (what the bindings load): zoo names at their sizes, files by extension,
/// anything else refused naming the choices.
#[test]
fn model_specs_load_or_name_the_choices() {
    let fashion = perforate::network::load("fashion_vgg").unwrap();
    assert_eq!((fashion.input.channels, fashion.input.height), (1, 28));
    assert_eq!(perforate::network::load("nin").unwrap().input.height, 32);
    let json =
        perforate::network::load(concat!(env!("CARGO_MANIFEST_DIR"), "/experiments/models/fashion_nin.json"));
    assert_eq!(json.unwrap().input.width, 28);
    let onnx = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/onnx/resnet_like.onnx");
    assert_eq!(perforate::network::load(onnx).unwrap().input.height, 16);
    let e = perforate::network::load("resnet19").unwrap_err().to_string();
    assert!(e.contains("'resnet19'") && e.contains("resnet18") && e.contains("fashion_vgg"), "{e}");
    let e = perforate::network::load("missing.json").unwrap_err().to_string();
    assert!(e.contains("missing.json: cannot read"), "{e}");
}
