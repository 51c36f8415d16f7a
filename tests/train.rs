//! Learning end to end on the committed Fashion-MNIST sample (1,000 test-split images):
//! training lowers the loss, fine-tuning keeps masks fixed, evaluation matches a direct
//! computation, and the greedy search reaches its target without ever adding cost.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use perforate::cpu::CpuExecutor;
use perforate::data::{self, Dataset};
use perforate::network::zoo::{self, ZooConfig};
use perforate::network::{Network, PerforationPlan};
use perforate::plan::{Plan, PlanOptions};
use perforate::train::{self, Cost, LrSchedule, SearchConfig, SearchStrategy, TrainConfig};
use perforate::Interpolation;

fn sample() -> Dataset {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-sample");
    let mut d =
        data::load_idx(&dir.join("t10k-images-idx3-ubyte.gz"), &dir.join("t10k-labels-idx1-ubyte.gz"))
            .unwrap();
    let (mean, std) = d.channel_stats();
    d.normalize(&mean, &std).unwrap();
    d
}

fn small(name: &str) -> Network {
    zoo::build(name, ZooConfig { width: 0.25, resolution: Some(28), classes: Some(10), seed: 3 }).unwrap()
}

#[test]
fn training_lowers_the_loss() {
    let d = sample();
    let (train_set, test_set) = (d.take(768), d.subset(&(768..1000).collect::<Vec<_>>()));
    for name in ["fashion_vgg", "fashion_resnet"] {
        let mut net = small(name);
        let before = train::evaluate(&net, &test_set, 128).unwrap();
        let cfg = TrainConfig {
            epochs: 3,
            batch_size: 32,
            lr: 0.05,
            crop_padding: 1,
            flip: true,
            ..Default::default()
        };
        let logs = train::train(&mut net, &train_set, Some(&test_set), &cfg, |_| {}).unwrap();
        let first = logs[0].train_loss;
        let last = logs.last().unwrap();
        let after = last.test.unwrap();
        eprintln!(
            "{name}: train loss {first:.3} -> {:.3}; test loss {:.3} -> {:.3}, top-1 error {:.3} -> {:.3}",
            last.train_loss, before.loss, after.loss, before.top1_error, after.top1_error
        );
        assert!(last.train_loss < 0.8 * first, "{name}: training loss falls");
        assert!(
            after.loss < before.loss && after.top1_error < before.top1_error,
            "{name}: held-out loss and error fall"
        );
        assert!(logs.iter().all(|l| l.images_per_second > 0.0));
    }
}

#[test]
fn fine_tuning_keeps_the_masks() {
    let d = sample().take(256);
    let mut net = small("fashion_nin");
    net.perforate_all(0.5, 4).unwrap();
    net.set_interpolation(Interpolation::Barycentric);
    let before = PerforationPlan::from_network(&net).unwrap();
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 64,
        lr: 0.01,
        schedule: LrSchedule::Constant,
        ..Default::default()
    };
    let weights_before = net.clone();
    train::train(&mut net, &d, None, &cfg, |_| {}).unwrap();
    let after = PerforationPlan::from_network(&net).unwrap();
    assert_eq!(before.layers, after.layers, "masks and interpolation unchanged");
    assert_ne!(before.model_hash, after.model_hash, "weights changed");
    assert_ne!(weights_before, net);
}

#[test]
fn evaluation_matches_a_direct_computation() {
    let d = sample().take(50);
    let net = small("fashion_vgg");
    let eval = train::evaluate(&net, &d, 16).unwrap();
    // Probabilities from one plan over all 50 images; loss and errors by hand.
    let plan = Plan::compile(&net, 50, PlanOptions::default()).unwrap();
    let x = ArrayD::from_shape_vec(IxDyn(&[50, 1, 28, 28]), d.images.clone()).unwrap();
    let p = CpuExecutor::new(&plan).unwrap().run(x.view()).unwrap();
    let p = p.as_slice().unwrap();
    let (mut loss, mut top1, mut top5) = (0.0f64, 0, 0);
    for (i, &l) in d.labels.iter().enumerate() {
        let row = &p[i * 10..(i + 1) * 10];
        loss -= f64::from(row[l as usize]).ln();
        let rank = row.iter().filter(|&&v| v > row[l as usize]).count();
        top1 += usize::from(rank == 0);
        top5 += usize::from(rank < 5);
    }
    assert!((eval.loss - loss / 50.0).abs() < 1e-4, "loss {} vs {}", eval.loss, loss / 50.0);
    assert!((eval.top1_error - (1.0 - top1 as f64 / 50.0)).abs() < 1e-12);
    assert!((eval.top5_error - (1.0 - top5 as f64 / 50.0)).abs() < 1e-12);
    // A data set of the wrong shape is a clear error.
    let wrong = d.resized(32, 32).unwrap();
    let e = train::evaluate(&net, &wrong, 16).unwrap_err();
    assert!(e.to_string().contains("32x32"), "{e}");
}

#[test]
fn greedy_search_reaches_its_target_and_never_adds_cost() {
    let d = sample().take(128);
    for strategy in [SearchStrategy::Uniform, SearchStrategy::IterativeImpact] {
        let net = small("fashion_vgg");
        let config = SearchConfig {
            target_speedup: 2.0,
            strategy,
            interpolation: Interpolation::Nearest,
            cost: Cost::Flops,
            batch: 64,
            seed: 1,
            max_steps: 100,
        };
        let (perforated, log) = train::greedy_search(&net, &d, &config).unwrap();
        let last = log.last().unwrap();
        assert!(last.speedup >= 2.0, "{strategy:?}: reached {:.2}", last.speedup);
        assert!(log.len() > 2, "{strategy:?}: took several steps");
        for w in log.windows(2) {
            assert!(w[1].cost < w[0].cost, "{strategy:?}: step {} adds cost", w[1].step);
            let moved = &w[1].layer;
            assert!(
                w[1].kept_fractions[moved] < w[0].kept_fractions[moved],
                "the step's layer moved up the ladder"
            );
        }
        let theoretical = perforated.theoretical_speedup().unwrap();
        assert!((theoretical - last.speedup).abs() < 1e-6 * theoretical, "{theoretical} vs {}", last.speedup);
        // Iterative impact: every layer's mask only ever loses positions.
        if strategy == SearchStrategy::IterativeImpact {
            let mut masks: HashMap<String, Vec<u32>> = HashMap::new();
            let mut replay = net.dense();
            for step in &log[1..] {
                // Rebuild by replaying the search with max_steps = step.step.
                let cfg = SearchConfig { max_steps: step.step, ..config.clone() };
                let (partial, _) = train::greedy_search(&net, &d, &cfg).unwrap();
                for l in PerforationPlan::from_network(&partial).unwrap().layers {
                    if let Some(prev) = masks.get(&l.layer) {
                        assert!(
                            l.positions.iter().all(|p| prev.binary_search(p).is_ok()),
                            "{} mask nests",
                            l.layer
                        );
                    }
                    masks.insert(l.layer.clone(), l.positions);
                }
                replay = partial;
                if step.step >= 4 {
                    break;
                }
            }
            assert!(replay.theoretical_speedup().unwrap() > 1.0);
        }
    }
}

/// The measured-cost search, with a deterministic stand-in for latency injected through
/// [`Cost::Custom`] (a fixed overhead per layer plus time per FLOP, so cost is not
/// proportional to FLOPs, as measured latency is not): the log must record exactly the
/// cost of the network each step produced, and the search must stop at the target.
#[test]
fn greedy_search_with_an_injected_latency_model_logs_its_costs() {
    let d = sample().take(64);
    let net = small("fashion_nin");
    let model = |n: &Network| -> perforate::Result<f64> {
        let plan = Plan::compile(n, 1, PlanOptions::default())?;
        Ok(2e-5 * plan.steps().len() as f64 + 1e-9 * plan.flops() as f64)
    };
    let config = SearchConfig {
        target_speedup: 1.3,
        strategy: SearchStrategy::Uniform,
        interpolation: Interpolation::Nearest,
        cost: Cost::Custom(std::sync::Arc::new(model)),
        batch: 64,
        seed: 1,
        max_steps: 100,
    };
    let mut produced = Vec::new();
    let (perforated, log) = train::greedy_search_with(&net, &d, &config, |s, n| {
        produced.push((s.step, model(n).unwrap()));
    })
    .unwrap();
    assert!(log.len() >= 2, "the search took a step");
    assert_eq!(log[0].cost, model(&net.dense()).unwrap());
    assert_eq!(produced.len(), log.len() - 1);
    for (s, (step, cost)) in log[1..].iter().zip(&produced) {
        assert_eq!((s.step, s.cost), (*step, *cost), "the log records the produced network's cost");
        assert!((s.speedup - log[0].cost / s.cost).abs() < 1e-12);
    }
    for w in log.windows(2) {
        assert!(w[1].cost < w[0].cost, "step {} adds cost", w[1].step);
    }
    let last = log.last().unwrap();
    assert!(last.speedup >= 1.3 && log[log.len() - 2].speedup < 1.3, "stops at the target");
    assert_eq!(model(&perforated).unwrap(), last.cost);
    // A custom cost that is not a positive number is an error, not a silent step.
    let bad = SearchConfig { cost: Cost::Custom(std::sync::Arc::new(|_: &_| Ok(f64::NAN))), ..config };
    let e = train::greedy_search(&net, &d, &bad).unwrap_err().to_string();
    assert!(e.contains("finite and positive"), "{e}");
    // A cost that fails for the candidates (a GPU lost mid-search) ends the search with that
    // error; it is not read as "no candidate fits" and returned as a finished search.
    let dense_flops = Plan::compile(&net.dense(), 1, PlanOptions::default()).unwrap().flops();
    let lost = move |n: &Network| -> perforate::Result<f64> {
        let flops = Plan::compile(n, 1, PlanOptions::default())?.flops();
        if flops < dense_flops {
            return Err(perforate::Error::DeviceLost("destroyed by the test".into()));
        }
        Ok(flops as f64)
    };
    let lost = SearchConfig { cost: Cost::Custom(std::sync::Arc::new(lost)), ..config };
    let e = train::greedy_search(&net, &d, &lost).unwrap_err();
    assert!(matches!(e, perforate::Error::DeviceLost(_)), "{e}");
}
