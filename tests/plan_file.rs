//! Perforation plans on disk: save → load → identical outputs; plans are tied to their
//! model; bad versions and files are clear errors.

use ndarray::ArrayD;
use perforate::cpu::CpuExecutor;
use perforate::network::zoo::{self, ZooConfig};
use perforate::network::{weights_hash, Network, PerforationPlan, PLAN_VERSION};
use perforate::plan::{Plan, PlanOptions};
use perforate::rng::SeededRng;
use perforate::Interpolation;

fn net(seed: u64) -> Network {
    zoo::build("resnet18", ZooConfig { width: 0.125, resolution: Some(32), classes: Some(10), seed }).unwrap()
}

fn run(net: &Network) -> ArrayD<f32> {
    let plan = Plan::compile(net, 2, PlanOptions::default()).unwrap();
    let shape = plan.input_shape();
    let x =
        ArrayD::from_shape_vec(shape.clone(), SeededRng::new(4).vec_f32(shape.iter().product(), -1.0, 1.0))
            .unwrap();
    CpuExecutor::new(&plan).unwrap().run(x.view()).unwrap()
}

#[test]
fn save_load_apply_reproduces_the_outputs_exactly() {
    for interpolation in [Interpolation::Nearest, Interpolation::Zeros, Interpolation::Barycentric] {
        round_trip(interpolation);
    }
}

fn round_trip(interpolation: Interpolation) {
    let mut perforated = net(1);
    perforated.perforate_all(0.4, 9).unwrap();
    perforated.set_interpolation(interpolation);
    let expected = run(&perforated);
    let plan = PerforationPlan::from_network(&perforated).unwrap();
    assert_eq!(plan.version, PLAN_VERSION);
    assert_eq!(plan.layers.len(), perforated.eligible_convs().unwrap().len());
    let first = &plan.layers[0];
    assert_eq!(first.layer, "conv1");
    assert_eq!(first.output_size, [16, 16]);
    assert_eq!(first.positions.len(), 102, "⌊0.4 · 256⌋");
    assert_eq!(first.interpolation, interpolation);

    let path = std::env::temp_dir().join(format!("perforate-plan-{}.json", std::process::id()));
    plan.save(&path).unwrap();
    let loaded = PerforationPlan::load(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(loaded, plan);
    let mut fresh = net(1);
    loaded.apply(&mut fresh).unwrap();
    let got = run(&fresh);
    assert!(
        got.iter().zip(expected.iter()).all(|(a, b)| a.to_bits() == b.to_bits()),
        "bit-identical outputs ({interpolation:?})"
    );
    let dense = run(&net(1));
    assert!(got.iter().zip(dense.iter()).any(|(a, b)| a != b), "the plan perforates ({interpolation:?})");
}

#[test]
fn plans_are_tied_to_their_model_and_version() {
    let mut a = net(1);
    a.perforate_all(0.5, 2).unwrap();
    let plan = PerforationPlan::from_network(&a).unwrap();
    assert_eq!(plan.model_hash, weights_hash(&net(1)), "perforation does not change the hash");
    let mut other = net(2);
    let e = plan.apply(&mut other).unwrap_err().to_string();
    assert!(
        e.contains("was made for a model with weights hash") && e.contains(&weights_hash(&net(2))),
        "{e}"
    );

    let mut future = plan.clone();
    future.version = 2;
    let e = future.apply(&mut net(1)).unwrap_err().to_string();
    assert!(e.contains("perforation plan version 2 is not supported (this build reads version 1)"), "{e}");

    let mut wrong = plan.clone();
    wrong.layers[0].positions.push(100_000);
    let e = wrong.apply(&mut net(1)).unwrap_err().to_string();
    assert!(e.contains("layer 'conv1'") && e.contains("outside the 16x16 map"), "{e}");

    let e = PerforationPlan::from_json("{\"version\": 1}").unwrap_err().to_string();
    assert!(e.contains("not a perforation plan"), "{e}");
    let e = PerforationPlan::load("/nonexistent/plan.json").unwrap_err().to_string();
    assert!(e.contains("/nonexistent/plan.json: cannot read"), "{e}");
}
