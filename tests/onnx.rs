//! ONNX import against onnxruntime: each fixture of tests/fixtures/onnx (written by its
//! generate.py) loads, its CPU output matches onnxruntime's, and the GPU matches the CPU,
//! dense and perforated. Malformed and unsupported models give clear errors.
#![allow(clippy::cast_possible_truncation)] // random offsets below a file length

mod common;

use std::path::{Path, PathBuf};

use common::{assert_close, gpu_or_skip, to_f64};
use ndarray::ArrayD;
use perforate::cpu::CpuExecutor;
use perforate::gpu::GpuExecutor;
use perforate::onnx::{self, proto};
use perforate::plan::{Plan, PlanOptions};
use prost::Message;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx")
}

fn npy(path: &Path) -> ArrayD<f32> {
    ndarray_npy::read_npy(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const MODELS: [&str; 12] = [
    "nin_opset9",
    "nin_opset13",
    "nin_opset21",
    "alexnet_like",
    "vgg_like",
    "resnet_like",
    "resnet_like_external",
    "auto_pad_same_upper",
    "ceil_mode",
    "count_include_pad_0",
    "count_include_pad_1",
    "gemm_trans_b",
];

const MORE: [&str; 8] = [
    "clip_relu6",
    "clip_opset9",
    "operators_mix",
    "non_finite",
    "compare_where",
    "fold_mod",
    "einsum",
    "channels_last_output",
];

/// Exported by torch.onnx.export (export_torch.py): TorchScript and torch.export exporters.
const TORCH: [&str; 8] = [
    "torch_nin",
    "torch_alexnet",
    "torch_vgg",
    "torch_resnet",
    "torch_dynamo_nin",
    "torch_dynamo_alexnet",
    "torch_dynamo_vgg",
    "torch_dynamo_resnet",
];

/// torchvision model classes at narrow widths (export_zoo.py), from the TorchScript exporter
/// at opsets 9 to 17 and the torch.export exporter at 18: constant folding of shape
/// arithmetic, squeeze-excitation, Hardswish, SiLU, GELU, channel shuffle, split, layer
/// norms over channels, dense blocks, ReLU6, vision transformers (ViT, Swin, SwinV2).
const ZOO: [&str; 33] = [
    "zoo_mobilenet_v3_ts11",
    "zoo_mobilenet_v3_ts17",
    "zoo_mobilenet_v3_dynamo18",
    "zoo_efficientnet_ts13",
    "zoo_efficientnet_ts17",
    "zoo_efficientnet_dynamo18",
    "zoo_shufflenet_ts9",
    "zoo_shufflenet_ts11",
    "zoo_shufflenet_ts17",
    "zoo_shufflenet_dynamo18",
    "zoo_regnet_y_ts17",
    "zoo_regnet_y_dynamo18",
    "zoo_resnet_view_ts9",
    "zoo_resnet_view_ts13",
    "zoo_resnet_view_ts17",
    "zoo_gelu_mlp_ts11",
    "zoo_gelu_mlp_ts17",
    "zoo_gelu_mlp_dynamo18",
    "zoo_convnext_ts11",
    "zoo_convnext_ts17",
    "zoo_convnext_dynamo18",
    "zoo_densenet_ts9",
    "zoo_densenet_ts17",
    "zoo_mobilenet_v2_ts9",
    "zoo_mobilenet_v2_dynamo18",
    "zoo_vit_ts14",
    "zoo_vit_ts17",
    "zoo_vit_dynamo18",
    "zoo_swin_ts17",
    "zoo_swin_v2_ts17",
    "zoo_swin_v2_dynamo18",
    "zoo_maxvit_ts14",
    "zoo_maxvit_dynamo18",
];

#[test]
fn torch_export_patterns_left_unmapped_are_clear_errors() {
    // torch.export writes softplus's threshold as Greater + Where on the activation: a
    // comparison of two activations, or a Where whose operands differ in shape, is refused.
    let mut m = decoded("zoo_gelu_mlp_dynamo18");
    let g = m.graph.as_mut().unwrap();
    let greater = g.node.iter().position(|n| n.op_type == "Greater").unwrap();
    let x = g.node[greater].input[0].clone();
    g.node[greater].input[1] = x;
    let e = err(&m.encode_to_vec());
    assert!(e.contains("comparing two activations is not supported"), "{e}");
    // torch.export writes ConvNeXt's flatten as a Gather of whole images from the flattened
    // batch (as_strided); a Gather from it that does not take whole images is refused.
    let mut m = decoded("zoo_convnext_dynamo18");
    let g = m.graph.as_mut().unwrap();
    let gather = g.node.iter_mut().find(|n| n.op_type == "Gather").unwrap();
    gather.attribute.iter_mut().find(|a| a.name == "axis").unwrap().i = 1;
    let e = err(&m.encode_to_vec());
    assert!(e.contains("does not take whole images"), "{e}");
    // Attention's tensors: a softmax over the batch axis is refused by name.
    let mut m = decoded("zoo_vit_ts17");
    let g = m.graph.as_mut().unwrap();
    let softmax = g.node.iter_mut().find(|n| n.op_type == "Softmax").unwrap();
    softmax.attribute.iter_mut().find(|a| a.name == "axis").unwrap().i = 0;
    let e = err(&m.encode_to_vec());
    assert!(e.contains("'Softmax' node") && e.contains("axis 0 holds the batch"), "{e}");
}

#[test]
fn einsum_forms_left_unmapped_are_clear_errors() {
    // Each equation replaces the fixture's "gram" node (operands [N,6,6,4] twice).
    for (equation, expect) in [
        ("nhwc,nhwd->nhc", "'d' is summed within the second operand"),
        ("nhwc,nhww->nhcw", "repeated label 'w'"),
        ("nhwc,nhwd->hcd", "the batch sits on label 'n'"),
        ("nhwc,nhwd,nhwe->nhcde", "3 operands (one or two are supported)"),
        ("nhwc,nhwd,nhwe->nhcde!", "'!' is not a label"),
        ("nhwc,nhwd->nhcx", "output label 'x' is in no operand"),
        ("nhwc,hnwd->nhcd", "different sizes"),
        ("nhw,nhwd->nhd", "3 labels for an operand of rank 4"),
    ] {
        let mut m = decoded("einsum");
        let g = m.graph.as_mut().unwrap();
        let gram = g.node.iter_mut().find(|n| n.name.starts_with("gram")).unwrap();
        gram.attribute[0].s = equation.as_bytes().to_vec();
        if equation.matches(',').count() == 2 {
            let first = gram.input[0].clone();
            gram.input.push(first);
        }
        let e = err(&m.encode_to_vec());
        assert!(e.contains("'Einsum' node 'gram") && e.contains(expect), "{equation}: {e}");
    }
}

#[test]
fn every_fixture_matches_onnxruntime_and_gpu_matches_cpu() {
    let ctx = gpu_or_skip("every_fixture_matches_onnxruntime_and_gpu_matches_cpu");
    for name in MODELS.iter().chain(&MORE).chain(&TORCH).chain(&ZOO) {
        let model =
            onnx::load(fixtures().join(format!("{name}.onnx"))).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(model.input_shape[0], None, "{name}: the batch is dynamic");
        let x = npy(&fixtures().join(format!("{name}.input.npy")));
        let expected = npy(&fixtures().join(format!("{name}.out.npy")));
        let plan = Plan::compile(&model.network, x.shape()[0], PlanOptions::default()).unwrap();
        let cpu = CpuExecutor::new(&plan).unwrap().run(x.view()).unwrap();
        assert_eq!(cpu.len(), expected.len(), "{name}: output size");
        assert_close(
            &format!("{name} CPU vs onnxruntime"),
            cpu.as_slice().unwrap(),
            &to_f64(expected.as_slice().unwrap()),
            1e-4,
        );
        if let Some(ctx) = &ctx {
            let gpu = GpuExecutor::new(ctx, &plan).unwrap().run(x.view()).unwrap();
            assert_close(
                &format!("{name} GPU vs CPU"),
                gpu.as_slice().unwrap(),
                &to_f64(cpu.as_slice().unwrap()),
                1e-4,
            );
        }
    }
}

#[test]
fn folded_shapes_follow_the_compiled_batch() {
    // Shape arithmetic on the batch dimension stays symbolic: one image gives the first row.
    for name in ZOO {
        let model = onnx::load(fixtures().join(format!("{name}.onnx"))).unwrap();
        let x = npy(&fixtures().join(format!("{name}.input.npy")));
        let expected = npy(&fixtures().join(format!("{name}.out.npy")));
        let one = x.slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..1)).to_owned();
        let plan = Plan::compile(&model.network, 1, PlanOptions::default()).unwrap();
        let cpu = CpuExecutor::new(&plan).unwrap().run(one.view()).unwrap();
        let row = expected.slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..1)).to_owned();
        assert_close(
            &format!("{name} batch 1"),
            cpu.as_slice().unwrap(),
            &to_f64(row.as_slice().unwrap()),
            1e-4,
        );
    }
}

/// At batch 1 the fast CPU executor writes a concat's parts straight into its output (its
/// producers' outputs placed at their channel offsets): on every fixture with a Concat,
/// dense and perforated (parts produced by convs, gathers, pools), it equals the reference
/// twins, which copy every part.
#[test]
fn concats_at_batch_one_match_the_reference_dense_and_perforated() {
    let mut tried = 0;
    for name in MODELS.iter().chain(&MORE).chain(&TORCH).chain(&ZOO) {
        let model = onnx::load(fixtures().join(format!("{name}.onnx"))).unwrap();
        if !model.network.layers.iter().any(|l| matches!(l.op, perforate::network::Op::Concat)) {
            continue;
        }
        let x = npy(&fixtures().join(format!("{name}.input.npy")));
        let one = x.slice_axis(ndarray::Axis(0), ndarray::Slice::from(0..1)).to_owned();
        for perforated in [false, true] {
            let mut net = model.network.clone();
            if perforated && net.perforate_all(0.5, 7).unwrap().is_empty() {
                continue;
            }
            let plan = Plan::compile(&net, 1, PlanOptions::default()).unwrap();
            let fast = CpuExecutor::new(&plan).unwrap().run(one.view()).unwrap();
            let twins = CpuExecutor::reference(&plan).unwrap().run(one.view()).unwrap();
            assert_close(
                &format!("{name} batch 1, perforated {perforated}: fast vs twins"),
                fast.as_slice().unwrap(),
                &to_f64(twins.as_slice().unwrap()),
                1e-4,
            );
        }
        tried += 1;
    }
    assert!(tried >= 5, "fixtures with a Concat: {tried}");
}

#[test]
fn perforated_imports_run_on_both_executors() {
    let ctx = gpu_or_skip("perforated_imports_run_on_both_executors");
    let fixtures_list = [
        "nin_opset13",
        "alexnet_like",
        "vgg_like",
        "resnet_like",
        "torch_resnet",
        "torch_dynamo_vgg",
        "non_finite",
    ];
    for name in fixtures_list.iter().chain(&ZOO) {
        let mut model = onnx::load(fixtures().join(format!("{name}.onnx"))).unwrap();
        let perforated = model.network.perforate_all(0.5, 3).unwrap();
        assert!(!perforated.is_empty(), "{name}");
        let x = npy(&fixtures().join(format!("{name}.input.npy")));
        let plan = Plan::compile(&model.network, 2, PlanOptions::default()).unwrap();
        let cpu = CpuExecutor::new(&plan).unwrap().run(x.view()).unwrap();
        let dense = npy(&fixtures().join(format!("{name}.out.npy")));
        assert_ne!(
            cpu.as_slice().unwrap(),
            dense.as_slice().unwrap(),
            "{name}: perforation changes the output"
        );
        if let Some(ctx) = &ctx {
            let gpu = GpuExecutor::new(ctx, &plan).unwrap().run(x.view()).unwrap();
            assert_close(
                &format!("{name} perforated GPU vs CPU"),
                gpu.as_slice().unwrap(),
                &to_f64(cpu.as_slice().unwrap()),
                1e-4,
            );
        }
    }
}

#[test]
fn import_reports_inputs_outputs_and_opset() {
    let m = onnx::load(fixtures().join("resnet_like.onnx")).unwrap();
    assert_eq!(m.input_name, "input");
    assert_eq!(m.input_shape, [None, Some(3), Some(16), Some(16)]);
    assert_eq!(m.opset, 15);
    assert_eq!(m.output_names.len(), 1);
    assert_eq!(m.output_rank, Some(2));
    assert!(m.producer.starts_with("perforate-fixtures"));
    assert_eq!(onnx::load(fixtures().join("nin_opset21.onnx")).unwrap().opset, 21);
}

fn err(bytes: &[u8]) -> String {
    onnx::load_bytes(bytes, None).unwrap_err().to_string()
}

/// A valid model's bytes, decoded for editing.
fn decoded(name: &str) -> proto::ModelProto {
    let bytes = std::fs::read(fixtures().join(format!("{name}.onnx"))).unwrap();
    proto::ModelProto::decode(&bytes[..]).unwrap()
}

#[test]
fn malformed_files_are_clear_errors() {
    let bytes = std::fs::read(fixtures().join("vgg_like.onnx")).unwrap();
    for cut in [1, 10, bytes.len() / 2, bytes.len() - 1] {
        let e = err(&bytes[..cut]);
        assert!(e.contains("not a valid ONNX protobuf") || e.contains("model:"), "cut at {cut}: {e}");
    }
    let e = err(b"this is not a model at all, just text");
    assert!(e.contains("not a valid ONNX protobuf"), "{e}");
    let e = onnx::load(fixtures().join("missing.onnx")).unwrap_err().to_string();
    assert!(e.contains("missing.onnx: cannot read the model file"), "{e}");
    let e = err(&proto::ModelProto::default().encode_to_vec());
    assert!(e.contains("the model has no graph"), "{e}");
}

#[test]
fn unsupported_and_inconsistent_models_name_the_node() {
    let mut m = decoded("nin_opset13");
    m.graph.as_mut().unwrap().node[1].op_type = "RoiAlign".into();
    let e = err(&m.encode_to_vec());
    assert!(e.contains("1 unsupported operator type(s)") && e.contains("supported: Conv, Relu"), "{e}");
    assert!(e.contains("RoiAlign (1 node(s): 'RoiAlign' node '"), "names the node: {e}");
    assert!(e.contains("opset 13"), "names the opset: {e}");

    // Every unsupported operator in one message, with its nodes.
    let mut m = decoded("nin_opset13");
    let g = m.graph.as_mut().unwrap();
    for k in [1, 3, 5] {
        g.node[k].op_type = "RoiAlign".into();
    }
    g.node[2].op_type = "GridSample".into();
    g.node[4].domain = "com.microsoft".into();
    let e = err(&m.encode_to_vec());
    assert!(e.contains("3 unsupported operator type(s)"), "{e}");
    assert!(e.contains("RoiAlign (3 node(s): ") && e.contains("GridSample (1 node(s): "), "{e}");
    assert!(e.contains("(domain 'com.microsoft')"), "{e}");

    let mut m = decoded("nin_opset13");
    let g = m.graph.as_mut().unwrap();
    let w = g.node[0].input[1].clone();
    g.initializer.retain(|t| t.name != w);
    let e = err(&m.encode_to_vec());
    assert!(e.contains(&format!("weight '{w}' is missing")), "{e}");

    let mut m = decoded("nin_opset13");
    let g = m.graph.as_mut().unwrap();
    let w = g.node[0].input[1].clone();
    let t = g.initializer.iter_mut().find(|t| t.name == w).unwrap();
    t.dims[1] = 4; // the input has 3 channels
    let e = err(&m.encode_to_vec());
    assert!(e.contains("initializer") || e.contains("do not fit a 3-channel input"), "{e}");

    let mut m = decoded("torch_dynamo_nin");
    let g = m.graph.as_mut().unwrap();
    let mean = g.node.iter().find(|n| n.op_type == "ReduceMean").unwrap();
    let axes = mean.input[1].clone();
    let t = g.initializer.iter_mut().find(|t| t.name == axes).unwrap();
    (t.dims, t.raw_data) = (vec![1], 0i64.to_le_bytes().to_vec());
    // The exporter stores the weights as external data beside the model.
    let e = onnx::load_bytes(&m.encode_to_vec(), Some(&fixtures())).unwrap_err().to_string();
    assert!(e.contains("over the batch axis is not supported"), "{e}");

    let mut m = decoded("nin_opset13");
    m.opset_import[0].version = 7;
    let e = err(&m.encode_to_vec());
    assert!(e.contains("opset 7 is not supported (opsets 9 to 21 are)"), "{e}");

    let mut m = decoded("vgg_like");
    let g = m.graph.as_mut().unwrap();
    let reshape = g.node.iter().position(|n| n.op_type == "Reshape").unwrap();
    let shape = g.node[reshape].input[1].clone();
    let t = g.initializer.iter_mut().find(|t| t.name == shape).unwrap();
    t.raw_data = [4i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
    let e = err(&m.encode_to_vec());
    assert!(e.contains("reshape to [4, -1] merges or moves the batch dimension"), "{e}");
}

#[test]
fn external_data_is_read_beside_the_model_and_checked() {
    // Loading from bytes has no folder to resolve external data against.
    let bytes = std::fs::read(fixtures().join("resnet_like_external.onnx")).unwrap();
    let e = err(&bytes);
    assert!(e.contains("external data needs the model's folder"), "{e}");

    let mut m = proto::ModelProto::decode(&bytes[..]).unwrap();
    let t = &mut m.graph.as_mut().unwrap().initializer[0];
    t.external_data.iter_mut().find(|e| e.key == "location").unwrap().value = "../../Cargo.toml".into();
    let e = onnx::load_bytes(&m.encode_to_vec(), Some(&fixtures())).unwrap_err().to_string();
    assert!(e.contains("leaves the model's folder"), "{e}");

    let mut m = proto::ModelProto::decode(&bytes[..]).unwrap();
    let t = &mut m.graph.as_mut().unwrap().initializer[0];
    let offset = t.external_data.iter_mut().find(|e| e.key == "offset").expect("offset entry");
    offset.value = "99999999".into();
    let e = onnx::load_bytes(&m.encode_to_vec(), Some(&fixtures())).unwrap_err().to_string();
    assert!(e.contains("past the end of"), "{e}");
}

/// Corrupted bytes (random flips and truncations of a real model) give an error or a
/// model, never a panic.
#[test]
fn corrupted_models_never_panic() {
    for file in ["alexnet_like", "zoo_shufflenet_ts11", "zoo_mobilenet_v3_ts17"] {
        corrupt_and_load(file);
    }
}

fn corrupt_and_load(file: &str) {
    let original = std::fs::read(fixtures().join(format!("{file}.onnx"))).unwrap();
    let mut rng = perforate::rng::SeededRng::new(11);
    for round in 0..400 {
        let mut bytes = original.clone();
        for _ in 0..1 + round % 4 {
            let at = (rng.next_u64() % bytes.len() as u64) as usize;
            bytes[at] = (rng.next_u64() & 0xff) as u8;
        }
        let cut = if round % 5 == 0 { (rng.next_u64() % bytes.len() as u64) as usize } else { bytes.len() };
        let loaded = std::panic::catch_unwind(|| {
            onnx::load_bytes(&bytes[..cut], None)
                .map(|m| Plan::compile(&m.network, 1, PlanOptions::default()))
        });
        assert!(loaded.is_ok(), "{file} round {round}: the importer panicked");
    }
}

/// The fixtures of generate.py's `resample()`: one conv then Resize / Upsample (every
/// mode and coordinate transformation), Pad (every mode, crops, axes), Slice of H and W,
/// or a reduction over some axes.
fn resample_fixtures() -> Vec<String> {
    let prefixes = ["resize_", "upsample_", "pad_", "slice_spatial", "reduce_"];
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".onnx").map(String::from))
        .filter(|n| prefixes.iter().any(|p| n.starts_with(p)))
        .collect();
    names.sort();
    assert_eq!(names.len(), 41, "resample fixtures found: {names:?}");
    names
}

#[test]
fn resize_pad_slice_and_reductions_match_onnxruntime_dense_and_perforated() {
    let ctx = gpu_or_skip("resize_pad_slice_and_reductions_match_onnxruntime_dense_and_perforated");
    for name in resample_fixtures() {
        let mut model =
            onnx::load(fixtures().join(format!("{name}.onnx"))).unwrap_or_else(|e| panic!("{name}: {e}"));
        let x = npy(&fixtures().join(format!("{name}.input.npy")));
        let expected = npy(&fixtures().join(format!("{name}.out.npy")));
        for perforate in [false, true] {
            if perforate {
                assert!(!model.network.perforate_all(0.5, 3).unwrap().is_empty(), "{name}");
            }
            let plan = Plan::compile(&model.network, x.shape()[0], PlanOptions::default()).unwrap();
            // A flat [N, C] output is [N, C, 1, 1] in the plan (the ONNX rank is reported
            // separately, as `output_rank`).
            let shape = &plan.output_shape()[..model.output_rank.unwrap_or(4)];
            assert_eq!(shape, expected.shape(), "{name}: output shape");
            let cpu = CpuExecutor::new(&plan).unwrap().run(x.view()).unwrap();
            if !perforate {
                let what = format!("{name} CPU vs onnxruntime");
                assert_close(&what, cpu.as_slice().unwrap(), &to_f64(expected.as_slice().unwrap()), 1e-4);
            }
            if let Some(ctx) = &ctx {
                let gpu = GpuExecutor::new(ctx, &plan).unwrap().run(x.view()).unwrap();
                let what = format!("{name} (perforated: {perforate}) GPU vs CPU");
                assert_close(&what, gpu.as_slice().unwrap(), &to_f64(cpu.as_slice().unwrap()), 1e-4);
            }
        }
    }
}
