//! One forward pass: the training model's forward (evaluation mode) equals the CPU
//! executor's on every zoo network and every ONNX fixture, dense and perforated with every
//! way of filling skipped outputs. Training runs its convs on the executor's kernels; the
//! other layers are held to the executor here, so the two cannot drift apart.

mod common;

use std::path::Path;

use common::{assert_close, to_f64};
use ndarray::{ArrayD, IxDyn};
use perforate::cpu::CpuExecutor;
use perforate::network::zoo::{self, ZooConfig};
use perforate::network::Network;
use perforate::plan::{Plan, PlanOptions};
use perforate::rng::SeededRng;
use perforate::train::{Mode, Model, Tensor};
use perforate::Interpolation;

const B: usize = 2;

fn networks() -> Vec<(String, Network)> {
    let mut nets = Vec::new();
    for name in zoo::NAMES.iter().chain(&zoo::FASHION) {
        let config = ZooConfig { width: 0.125, resolution: Some(32), classes: Some(10), seed: 7 };
        let config = if *name == "alexnet" { ZooConfig { resolution: Some(67), ..config } } else { config };
        nets.push((name.to_string(), zoo::build(name, config).unwrap()));
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onnx");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_suffix(".onnx").map(String::from))
        .collect();
    files.sort();
    assert!(files.len() > 60, "the ONNX fixtures are there ({})", files.len());
    for name in files {
        let model = perforate::onnx::load(dir.join(format!("{name}.onnx"))).unwrap();
        nets.push((name, model.network));
    }
    nets
}

#[test]
fn training_forward_equals_the_cpu_executor_dense_and_perforated() {
    let fills = [
        None,
        Some(Interpolation::Nearest),
        Some(Interpolation::Zeros),
        Some(Interpolation::Barycentric),
        Some(Interpolation::Stride),
    ];
    let mut checked = 0;
    for (name, net) in networks() {
        let i = &net.input;
        let shape = [B, i.channels, i.height, i.width];
        let data = SeededRng::new(5).vec_f32(shape.iter().product(), -1.0, 1.0);
        for fill in fills {
            let mut net = net.clone();
            if let Some(fill) = fill {
                if net.perforate_all(0.5, 3).map_or(true, |p| p.is_empty()) {
                    continue;
                }
                net.set_interpolation(fill);
            }
            let label = format!("{name} ({fill:?})");
            let Ok(plan) = Plan::compile(&net, B, PlanOptions::default()) else {
                // A fill the plan refuses for this network (a barycentric map before a
                // layer that cannot take it); nothing to compare.
                assert!(fill.is_some(), "{label}: the dense network compiles");
                continue;
            };
            let x = ArrayD::from_shape_vec(IxDyn(&shape), data.clone()).unwrap();
            let expected = CpuExecutor::new(&plan).unwrap().run(x.view()).unwrap();
            let model = Model::new(net.clone()).unwrap_or_else(|e| panic!("{label}: {e}"));
            let tape = model
                .forward(Tensor::new(shape, data.clone()).unwrap(), Mode::Eval)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            let got = &tape.value(&net.output).expect("the output is on the tape").data;
            assert_close(&label, got, &to_f64(expected.as_slice().unwrap()), 1e-4);
            checked += 1;
        }
    }
    eprintln!("{checked} network and fill pairs equal");
    assert!(checked > 150, "{checked}");
}
