//! Whole networks: zoo variants sized for lavapipe, GPU against CPU dense and perforated,
//! plan reuse, buffer reuse, memory and speedup accounting, and bad input.

mod common;

use common::{assert_close, gpu_or_skip, to_f64};
use ndarray::{ArrayD, IxDyn};
use perforate::cpu::CpuExecutor;
use perforate::gpu::GpuExecutor;
use perforate::network::zoo::{self, ZooConfig};
use perforate::network::{InputSpec, Network, Op};
use perforate::plan::{Executor, Plan, PlanOptions, StepOp};
use perforate::rng::SeededRng;
use perforate::Interpolation;

/// Small variants: an eighth of the channels, the smallest valid resolutions.
fn small(name: &str) -> Network {
    let resolution = match name {
        "alexnet" => 67,
        "nin" => 16,
        _ => 32,
    };
    zoo::build(name, ZooConfig { width: 0.125, resolution: Some(resolution), classes: Some(10), seed: 1 })
        .unwrap()
}

fn input_for(plan: &Plan, seed: u64) -> ArrayD<f32> {
    let shape = plan.input_shape();
    let n = shape.iter().product();
    ArrayD::from_shape_vec(IxDyn(&shape), SeededRng::new(seed).vec_f32(n, -1.0, 1.0)).unwrap()
}

/// Every eligible conv at a different kept fraction.
fn perforate_mixed(net: &mut Network) -> usize {
    let names = net.eligible_convs().unwrap();
    for (i, name) in names.iter().enumerate() {
        net.set_perforation(name, [0.25, 0.5, 0.75, 1.0][i % 4], i as u64).unwrap();
    }
    names.len()
}

/// The logits (the layer before the softmax) as the network output.
fn logits(mut net: Network) -> Network {
    let softmax = net.layers.iter().find(|l| matches!(l.op, Op::Softmax)).unwrap();
    net.output = softmax.inputs[0].clone();
    net
}

#[test]
fn zoo_networks_gpu_matches_cpu_dense_and_perforated() {
    let ctx = gpu_or_skip("zoo_networks_gpu_matches_cpu_dense_and_perforated");
    let variants =
        [None, Some(Interpolation::Nearest), Some(Interpolation::Zeros), Some(Interpolation::Barycentric)];
    for name in zoo::NAMES {
        for variant in variants {
            let mut net = small(name);
            if let Some(interpolation) = variant {
                assert!(perforate_mixed(&mut net) > 0, "{name} has eligible convs");
                net.set_interpolation(interpolation);
            }
            // Both outputs for dense and nearest; the logits for the other variants.
            let outputs = if variant.is_some_and(|v| v != Interpolation::Nearest) {
                vec![logits(net.clone())]
            } else {
                vec![logits(net.clone()), net.clone()]
            };
            for net in outputs {
                let plan = Plan::compile(&net, 2, PlanOptions::default()).unwrap();
                let x = input_for(&plan, 7);
                let cpu = CpuExecutor::new(&plan).unwrap().run(x.view()).unwrap();
                assert!(cpu.iter().all(|v| v.is_finite()));
                // Fusion decisions depend on the interpolation: unfused must agree.
                let unfused =
                    Plan::compile(&net, 2, PlanOptions { fuse: false, ..Default::default() }).unwrap();
                let plain = CpuExecutor::new(&unfused).unwrap().run(x.view()).unwrap();
                let label = format!("{name} {variant:?} output={}", net.output);
                assert_close(
                    &format!("{label} fused vs unfused"),
                    cpu.as_slice().unwrap(),
                    &to_f64(plain.as_slice().unwrap()),
                    1e-4,
                );
                let Some(ctx) = &ctx else { continue };
                let gpu = GpuExecutor::new(ctx, &plan).unwrap().run(x.view()).unwrap();
                assert_close(&label, gpu.as_slice().unwrap(), &to_f64(cpu.as_slice().unwrap()), 1e-4);
                // Every conv on the fused masked conv: the GPU and the CPU reference twins.
                let fused = PlanOptions { conv_kernels: perforate::ConvKernels::Fused, ..Default::default() };
                let plan = Plan::compile(&net, 2, fused).unwrap();
                let gpu = GpuExecutor::new(ctx, &plan).unwrap().run(x.view()).unwrap();
                let what = format!("{label} fused conv GPU");
                assert_close(&what, gpu.as_slice().unwrap(), &to_f64(cpu.as_slice().unwrap()), 1e-4);
                let twins = CpuExecutor::reference(&plan).unwrap().run(x.view()).unwrap();
                let what = format!("{label} fused conv CPU twins");
                assert_close(&what, twins.as_slice().unwrap(), &to_f64(cpu.as_slice().unwrap()), 1e-4);
            }
        }
    }
}

#[test]
fn perforating_nothing_is_bit_identical_to_dense() {
    for name in zoo::NAMES {
        let dense = small(name);
        let mut full = dense.clone();
        for conv in full.eligible_convs().unwrap() {
            full.set_perforation(&conv, 1.0, 3).unwrap();
        }
        let a = Plan::compile(&dense, 2, PlanOptions::default()).unwrap();
        let b = Plan::compile(&full, 2, PlanOptions::default()).unwrap();
        let x = input_for(&a, 1);
        let (ya, yb) = (
            CpuExecutor::new(&a).unwrap().run(x.view()).unwrap(),
            CpuExecutor::new(&b).unwrap().run(x.view()).unwrap(),
        );
        assert!(
            ya.iter().zip(yb.iter()).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{name}: q = 1 differs from dense"
        );
    }
}

#[test]
fn one_plan_runs_many_inputs() {
    let ctx = gpu_or_skip("one_plan_runs_many_inputs");
    let mut net = small("resnet18");
    perforate_mixed(&mut net);
    let plan = Plan::compile(&net, 2, PlanOptions::default()).unwrap();
    let (x1, x2) = (input_for(&plan, 1), input_for(&plan, 2));
    let mut executors: Vec<Box<dyn Executor>> = vec![Box::new(CpuExecutor::new(&plan).unwrap())];
    if let Some(ctx) = &ctx {
        executors.push(Box::new(GpuExecutor::new(ctx, &plan).unwrap()));
    }
    for e in executors {
        let first = e.run(x1.view()).unwrap();
        let second = e.run(x2.view()).unwrap();
        let again = e.run(x1.view()).unwrap();
        assert_eq!(first, again, "{}", e.describe());
        assert_ne!(first, second, "{}", e.describe());
        // The second result is what a fresh executor computes for x2.
        let fresh = CpuExecutor::new(&plan).unwrap().run(x2.view()).unwrap();
        assert_close(&e.describe(), second.as_slice().unwrap(), &to_f64(fresh.as_slice().unwrap()), 1e-4);
    }
}

/// One compiled plan run from 8 threads at once on each executor (and two GPU executors
/// sharing one context) gives every thread exactly the single-threaded result for its input.
#[test]
fn concurrent_runs_match_single_threaded_runs() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<CpuExecutor>();
    send_sync::<GpuExecutor>();
    send_sync::<perforate::gpu::GpuContext>();
    send_sync::<Plan>();
    let ctx = gpu_or_skip("concurrent_runs_match_single_threaded_runs");
    let mut net = small("resnet18");
    perforate_mixed(&mut net);
    let plan = Plan::compile(&net, 2, PlanOptions::default()).unwrap();
    let inputs: Vec<_> = (0..8).map(|t| input_for(&plan, 100 + t)).collect();
    let mut executors: Vec<Box<dyn Executor + Send + Sync>> =
        vec![Box::new(CpuExecutor::new(&plan).unwrap())];
    if let Some(ctx) = &ctx {
        executors.push(Box::new(GpuExecutor::new(ctx, &plan).unwrap()));
        executors.push(Box::new(GpuExecutor::new(ctx, &plan).unwrap()));
    }
    let alone: Vec<Vec<_>> =
        executors.iter().map(|e| inputs.iter().map(|x| e.run(x.view()).unwrap()).collect()).collect();
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (executors, inputs, alone) = (&executors, &inputs, &alone);
            scope.spawn(move || {
                for (k, e) in executors.iter().enumerate() {
                    let got = e.run(inputs[t].view()).unwrap();
                    assert_eq!(got, alone[k][t], "{} from thread {t}", e.describe());
                }
            });
        }
    });
}

/// Runs of separate CPU executors from several threads at once, many times over: every
/// run's pool workers spin for it and take any parallel work, including other runs' (see
/// `CpuExecutor::run_with`), and must neither deadlock nor mix results. A deadlock shows as
/// no answer within two minutes (the whole test takes well under a second).
#[test]
fn concurrent_runs_of_separate_executors_finish_and_agree() {
    let mut net = small("resnet18");
    perforate_mixed(&mut net);
    // Batch 8: layers large enough to run in parallel, so runs wait at joins and steal.
    let plan = Plan::compile(&net, 8, PlanOptions::default()).unwrap();
    let inputs: Vec<_> = (0..4).map(|t| input_for(&plan, 300 + t)).collect();
    let alone: Vec<_> = {
        let e = CpuExecutor::new(&plan).unwrap();
        inputs.iter().map(|x| e.run(x.view()).unwrap()).collect()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        std::thread::scope(|scope| {
            for t in 0..4 {
                let (plan, inputs, alone) = (&plan, &inputs, &alone);
                scope.spawn(move || {
                    let e = CpuExecutor::new(plan).unwrap();
                    for round in 0..40 {
                        let got = e.run(inputs[t].view()).unwrap();
                        assert_eq!(got, alone[t], "thread {t}, round {round}");
                    }
                });
            }
        });
        tx.send(()).unwrap();
    });
    match rx.recv_timeout(std::time::Duration::from_secs(120)) {
        Ok(()) => worker.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            // A thread panicked (a wrong result): report its message.
            if let Err(e) = worker.join() {
                std::panic::resume_unwind(e);
            }
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("concurrent runs did not finish within 120 s: deadlocked")
        }
    }
}

#[test]
fn buffer_reuse_never_aliases_live_tensors() {
    let ctx = gpu_or_skip("buffer_reuse_never_aliases_live_tensors");
    for name in zoo::NAMES {
        let mut net = logits(small(name));
        perforate_mixed(&mut net);
        let shared = Plan::compile(&net, 2, PlanOptions::default()).unwrap();
        let separate =
            Plan::compile(&net, 2, PlanOptions { reuse_buffers: false, ..Default::default() }).unwrap();
        assert!(
            shared.slot_sizes().len() < separate.slot_sizes().len() / 2,
            "{name}: reuse actually happens"
        );
        let x = input_for(&shared, 5);
        let a = CpuExecutor::new(&shared).unwrap().run(x.view()).unwrap();
        let b = CpuExecutor::new(&separate).unwrap().run(x.view()).unwrap();
        assert_eq!(a, b, "{name}: CPU with and without buffer reuse");
        if let Some(ctx) = &ctx {
            let a = GpuExecutor::new(ctx, &shared).unwrap().run(x.view()).unwrap();
            let b = GpuExecutor::new(ctx, &separate).unwrap().run(x.view()).unwrap();
            assert_eq!(a, b, "{name}: GPU with and without buffer reuse");
        }
    }
}

#[test]
fn async_gpu_run_gives_the_blocking_result() {
    let Some(ctx) = gpu_or_skip("async_gpu_run_gives_the_blocking_result") else { return };
    let plan = Plan::compile(&small("nin"), 3, PlanOptions::default()).unwrap();
    let exec = GpuExecutor::new(&ctx, &plan).unwrap();
    let x = input_for(&plan, 9);
    let blocking = exec.run(x.view()).unwrap();
    let future = exec.run_async(x.view());
    drop(x); // the future owns its copy of the input
    assert_eq!(pollster::block_on(future).unwrap(), blocking);
}

#[test]
fn memory_and_speedup_accounting() {
    let dense = small("vgg16");
    let mut half = dense.clone();
    let names = half.perforate_all(0.5, 1).unwrap();
    assert_eq!(names.len(), 13, "every VGG conv is eligible");
    let a = Plan::compile(&dense, 1, PlanOptions::default()).unwrap().memory_report();
    let b = Plan::compile(&half, 1, PlanOptions::default()).unwrap().memory_report();
    assert_eq!(a.peak_bytes, a.rows.iter().map(|r| r.live_bytes).max().unwrap());
    assert!(b.peak_bytes as f64 <= 0.7 * a.peak_bytes as f64, "{} vs {}", b.peak_bytes, a.peak_bytes);
    assert!(b.rows.iter().any(|r| r.compact) && !a.rows.iter().any(|r| r.compact));
    let table = a.comparison_table(&b, ["dense", "q=1/2"]);
    assert!(
        table.contains("conv1_1") && table.contains("peak: dense") && table.contains("(0.50x)"),
        "{table}"
    );
    // conv1_1 of the dense VGG at 32x32 with 8 channels: 1 x 8 x 32 x 32 floats.
    assert_eq!(a.rows[0].output_bytes, 8 * 32 * 32 * 4);
    assert_eq!(b.rows[0].shape, vec![1, 8, 512]);

    // One perforated conv alone: the speedup is exactly 1/q.
    let mut one = Network::new("one", InputSpec { name: "x".into(), channels: 2, height: 8, width: 8 });
    let conv = perforate::network::Conv::new(3, [3, 3], 1, vec![0.1; 54], None);
    one.push("c", Op::Conv(conv), &["x"]);
    one.set_perforation("c", 0.25, 0).unwrap();
    assert_eq!(one.theoretical_speedup().unwrap(), 4.0);
    let s = half.theoretical_speedup().unwrap();
    assert!(s > 1.3 && s < 2.0, "VGG at q = 1/2 with dense classifier layers: {s}");
}

#[test]
fn pointwise_convs_are_candidates_unless_they_inherit_a_map() {
    // NIN: the 1x1 layers after each spatial conv are candidates on the dense network, but
    // once that conv is perforated they run on its compact positions and are skipped.
    let mut nin = small("nin");
    let dense = nin.eligible_convs().unwrap();
    assert!(dense.len() > 3 && dense.contains(&"cccp1".to_string()), "{dense:?}");
    let done = nin.perforate_all(0.5, 1).unwrap();
    assert_eq!(done, ["conv1", "conv2", "conv3"]);
    assert_eq!(nin.eligible_convs().unwrap(), done, "inheriting 1x1 convs are not candidates");
    assert!(nin.inheriting_pointwise().unwrap().contains("cccp1"));
    let r18 = small("resnet18").eligible_convs().unwrap();
    assert!(r18.contains(&"layer2.0.downsample.0".to_string()), "strided 1x1 projections are eligible");
    // ResNet-50 (64x64, so the last stage has 2x2 maps): the first 1x1 conv of a bottleneck
    // reads the dense block input, so it is perforated; the last reads the perforated 3x3
    // conv's compact output and inherits it. Every conv then runs at q, and residual adds
    // read their compact operand through its map.
    let config = ZooConfig { width: 0.125, resolution: Some(64), classes: Some(10), seed: 1 };
    let dense = zoo::build("resnet50", config).unwrap();
    let mut r50 = dense.clone();
    let done = r50.perforate_all(0.5, 1).unwrap();
    assert!(done.contains(&"layer1.0.conv1".to_string()), "{done:?}");
    assert!(!done.contains(&"layer1.0.conv3".to_string()), "{done:?}");
    let speedup = r50.theoretical_speedup().unwrap();
    assert!(speedup >= 1.9, "ResNet-50 at q = 1/2 on every candidate: {speedup}");
    let peak = |n: &Network| Plan::compile(n, 2, PlanOptions::default()).unwrap().memory_report().peak_bytes;
    // The sum of a dense shortcut and a compact branch is dense, but it is written into the
    // shortcut's own buffer when that dies at the add (0.67x dense here and at full size).
    let (p, d) = (peak(&r50), peak(&dense));
    assert!(4 * p <= 3 * d, "peak activation memory {p} bytes vs {d} dense");
    let plan = Plan::compile(&r50, 2, PlanOptions::default()).unwrap();
    let in_place = plan
        .steps()
        .iter()
        .filter(|s| matches!(&s.op, StepOp::Gather { params, .. } if params.residual == 2))
        .count();
    // (An add of two operands with equal maps runs on the compact tensors instead.)
    let compact_adds = plan
        .steps()
        .iter()
        .filter(|s| matches!(s.op, StepOp::Add(_)) && plan.tensor(s.output).map().is_some())
        .count();
    assert_eq!(in_place + compact_adds, 16, "every bottleneck's residual add runs in place or compact");
    assert!(in_place >= 12, "{in_place} in place");
}

#[test]
fn networks_round_trip_through_json() {
    let mut net = small("resnet18");
    perforate_mixed(&mut net);
    let back = Network::from_json(&net.to_json().unwrap()).unwrap();
    assert_eq!(back, net);
    let e = Network::from_json("{\"name\": 3}").unwrap_err().to_string();
    assert!(e.contains("parsing network JSON"), "{e}");
}

#[test]
fn bad_networks_and_inputs_are_clear_errors() {
    let err = |r: perforate::Result<Plan>| r.unwrap_err().to_string();
    let net = small("nin");
    let plan = Plan::compile(&net, 2, PlanOptions::default()).unwrap();
    let wrong = ArrayD::<f32>::zeros(vec![2, 3, 16, 15]);
    let e = CpuExecutor::new(&plan).unwrap().run(wrong.view()).unwrap_err().to_string();
    assert!(
        e.contains("input of network 'nin'") && e.contains("[2, 3, 16, 16]") && e.contains("[2, 3, 16, 15]"),
        "{e}"
    );
    if let Some(ctx) = gpu_or_skip("bad_networks_and_inputs_are_clear_errors") {
        let e = GpuExecutor::new(&ctx, &plan).unwrap().run(wrong.view()).unwrap_err().to_string();
        assert!(e.contains("input of network 'nin'"), "{e}");
    }

    let mut n = net.clone();
    for q in [0.0, 1.5, -0.1, f64::NAN] {
        let e = n.set_perforation("conv1", q, 0).unwrap_err().to_string();
        assert!(e.contains("kept fraction for layer 'conv1' must lie in (0, 1]"), "{e}");
    }
    let e = n.set_perforation("conv9", 0.5, 0).unwrap_err().to_string();
    assert!(e.contains("no layer named 'conv9'"), "{e}");
    let e = n.set_perforation("pool1", 0.5, 0).unwrap_err().to_string();
    assert!(e.contains("layer 'pool1' is a max_pool"), "{e}");

    // A cycle: conv2 reads cccp6's output.
    let mut cyclic = net.clone();
    cyclic.layers.iter_mut().find(|l| l.name == "conv2").unwrap().inputs = vec!["relu_cccp6".into()];
    let e = err(Plan::compile(&cyclic, 1, PlanOptions::default()));
    assert!(e.contains("cycle through layers") && e.contains("conv2") && e.contains("cccp6"), "{e}");

    let mut dangling = net.clone();
    dangling.layers[3].inputs = vec!["nowhere".into()];
    let e = err(Plan::compile(&dangling, 1, PlanOptions::default()));
    assert!(e.contains("reads 'nowhere', which is neither a layer nor the input 'input'"), "{e}");

    let mut twice = net.clone();
    twice.layers[1].name = "conv1".into();
    assert!(err(Plan::compile(&twice, 1, PlanOptions::default())).contains("two layers are named 'conv1'"));

    let mut mismatched = small("resnet18");
    mismatched.layers.iter_mut().find(|l| l.name == "layer2.0.add").unwrap().inputs[1] =
        "layer1.1.relu".into();
    let e = err(Plan::compile(&mismatched, 1, PlanOptions::default()));
    assert!(e.contains("layer 'layer2.0.add' (add): inputs have different shapes"), "{e}");

    // Layers over tensors of any rank check their views against the input they read.
    let mut bad_view = net.clone();
    bad_view.push("view", Op::Reshape { shape: [7, 7, 7] }, &["conv1"]);
    let e = err(Plan::compile(&bad_view, 1, PlanOptions::default()));
    assert!(e.contains("layer 'view' (reshape): view 7x7x7"), "{e}");
    let mut past_end = net.clone();
    let strided =
        perforate::network::Strided { dims: vec![2, 4], strides: vec![1, 2100], offset: 0, shape: [8, 1, 1] };
    past_end.push("take", Op::Strided(strided), &["conv1"]);
    let e = err(Plan::compile(&past_end, 1, PlanOptions::default()));
    assert!(e.contains("layer 'take' (strided)") && e.contains("reads element 6301"), "{e}");
    let mut overlapping = net.clone();
    let mm = perforate::network::MatMul {
        batch: [1, 1],
        m: 4,
        k: 2,
        n: 4,
        a_strides: [0, 0, 2, 1],
        b_strides: [0, 0, 4, 1],
        out_strides: [0, 0, 1, 1],
        shape: [16, 1, 1],
    };
    overlapping.push("mm", Op::MatMul(mm), &["conv1", "conv1"]);
    let e = err(Plan::compile(&overlapping, 1, PlanOptions::default()));
    assert!(e.contains("layer 'mm' (matmul)") && e.contains("do not tile"), "{e}");

    let mut bad_weights = net.clone();
    if let Op::Conv(c) = &mut bad_weights.layers[0].op {
        c.weights = c.weights[..c.weights.len() - 1].into();
    }
    let e = err(Plan::compile(&bad_weights, 1, PlanOptions::default()));
    assert!(e.contains("layer 'conv1' (conv): weights hold"), "{e}");
    assert!(err(Plan::compile(&net, 0, PlanOptions::default())).contains("batch must be at least 1"));

    // An error from inside a layer keeps its cause: the layer wraps it, `root` finds it.
    let mut bad_mask = net.clone();
    bad_mask.set_perforation("conv1", 0.5, 1).unwrap();
    if let Op::Conv(c) = &mut bad_mask.layers[0].op {
        c.perforation.as_mut().unwrap().positions = Some(vec![3, 3]);
    }
    let e = Plan::compile(&bad_mask, 1, PlanOptions::default()).unwrap_err();
    assert!(matches!(&e, perforate::Error::Layer { layer, kind: "conv", .. } if layer == "conv1"), "{e:?}");
    assert!(matches!(e.root(), perforate::Error::Mask(m) if m.contains("appears twice")), "{e:?}");
    assert!(std::error::Error::source(&e).is_some(), "{e:?}");
    assert!(e.to_string().starts_with("layer 'conv1' (conv): invalid mask: position 3 appears twice"), "{e}");
    let e = zoo::build("lenet", ZooConfig::default()).unwrap_err().to_string();
    assert!(e.contains("unknown zoo network 'lenet'; known: nin, alexnet"), "{e}");
}

/// Absurd sizes in a network description are errors, not overflows.
#[test]
fn absurd_sizes_are_errors_not_panics() {
    let huge = Network::new(
        "huge",
        InputSpec { name: "x".into(), channels: 1 << 20, height: 1 << 20, width: 1 << 20 },
    );
    let e = Plan::compile(&huge, 1, PlanOptions::default()).unwrap_err().to_string();
    assert!(e.contains("exceeds 2^30 elements"), "{e}");
    let mut net = Network::new("n", InputSpec { name: "x".into(), channels: 2, height: 4, width: 4 });
    let conv = perforate::network::Conv::new(usize::MAX / 2, [3, 3], 1, vec![0.0; 18], None);
    net.push("c", Op::Conv(conv), &["x"]);
    let e = Plan::compile(&net, 1, PlanOptions::default()).unwrap_err().to_string();
    assert!(e.contains("layer 'c' (conv): weights hold 18 values"), "{e}");
    let mut fc = Network::new("f", InputSpec { name: "x".into(), channels: 2, height: 1, width: 1 });
    let linear =
        perforate::network::Linear { out_features: usize::MAX / 2, weights: vec![0.0; 4].into(), bias: None };
    fc.push("fc", Op::Linear(linear), &["x"]);
    let e = Plan::compile(&fc, 1, PlanOptions::default()).unwrap_err().to_string();
    assert!(e.contains("layer 'fc' (linear): weights hold 4 values"), "{e}");
}

/// Weight matrices larger than the storage-binding limit are split into row blocks (a
/// context with a 32 KiB limit here): plain, grouped (a block boundary inside the second
/// group), perforated and fully connected layers match the CPU and the unsplit GPU run; a
/// limit too small for the activations is a clear error naming it.
#[test]
fn weights_past_the_binding_limit_split_into_row_blocks() {
    use perforate::network::{Conv, Linear, Perforation};
    let Some(ctx) = gpu_or_skip("weights_past_the_binding_limit_split_into_row_blocks") else { return };
    let mut rng = SeededRng::new(18);
    let mut net = Network::new("split", InputSpec { name: "input".into(), channels: 3, height: 6, width: 6 });
    let mut conv = |cin: usize, cout: usize, groups: usize, perforation: Option<Perforation>| Conv {
        groups,
        perforation,
        ..Conv::new(
            cout,
            [3, 3],
            1,
            rng.vec_f32(cout * cin / groups * 9, -0.3, 0.3),
            Some(rng.vec_f32(cout, -0.2, 0.2)),
        )
    };
    // Rows of 28, 216 (blocks of 37 rows; in the grouped conv the boundary falls inside the
    // second group) and 1728 floats (blocks of 4 rows).
    let (c1, c2, c3) =
        (conv(3, 24, 1, None), conv(24, 48, 1, Some(Perforation::uniform(0.5, 3))), conv(48, 48, 2, None));
    net.push("c1", Op::Conv(c1), &["input"]);
    net.then("r1", Op::Relu);
    net.then("c2", Op::Conv(c2));
    net.then("c3", Op::Conv(c3));
    net.then("flat", Op::Flatten);
    let fc = Linear {
        out_features: 40,
        weights: rng.vec_f32(40 * 48 * 36, -0.05, 0.05).into(),
        bias: Some(rng.vec_f32(40, -0.1, 0.1)),
    };
    net.then("fc", Op::Linear(fc));
    // Batch 1: every activation and im2col chunk fits 32 KiB, the conv and fc weights do not.
    let plan = Plan::compile(&net, 1, PlanOptions::default()).unwrap();
    let x =
        ArrayD::from_shape_vec(IxDyn(&[1, 3, 6, 6]), SeededRng::new(5).vec_f32(3 * 36, -1.0, 1.0)).unwrap();
    let cpu = CpuExecutor::new(&plan).unwrap().run(x.view()).unwrap();
    let small = ctx.with_binding_limit(32 * 1024);
    assert_eq!(small.max_binding_bytes(), 32 * 1024);
    let split = GpuExecutor::new(&small, &plan).unwrap().run(x.view()).unwrap();
    let whole = GpuExecutor::new(&ctx, &plan).unwrap().run(x.view()).unwrap();
    assert_close("split GPU vs CPU", split.as_slice().unwrap(), &to_f64(cpu.as_slice().unwrap()), 1e-4);
    assert_close(
        "split GPU vs unsplit GPU",
        split.as_slice().unwrap(),
        &to_f64(whole.as_slice().unwrap()),
        1e-5,
    );
    let e = GpuExecutor::new(&ctx.with_binding_limit(1024), &plan).unwrap_err().to_string();
    assert!(e.contains("at most 1024 per storage binding"), "{e}");
}

/// Full-size AlexNet (fc6's 151 MB weight matrix is past lavapipe's 128 MiB binding limit
/// and WebGPU's default) runs on the GPU, dense and perforated, and matches the CPU.
#[test]
fn full_size_alexnet_runs_on_the_gpu() {
    let Some(ctx) = gpu_or_skip("full_size_alexnet_runs_on_the_gpu") else { return };
    let dense = zoo::build("alexnet", ZooConfig::default()).unwrap();
    let mut perforated = dense.clone();
    perforated.perforate_all(0.5, 1).unwrap();
    for (label, net) in [("dense", &dense), ("q = 1/2", &perforated)] {
        let plan = Plan::compile(net, 1, PlanOptions::default()).unwrap();
        let shape = plan.input_shape();
        let x = ArrayD::from_shape_vec(
            IxDyn(&shape),
            SeededRng::new(2).vec_f32(shape.iter().product(), -1.0, 1.0),
        )
        .unwrap();
        let cpu = CpuExecutor::new(&plan).unwrap().run(x.view()).unwrap();
        let gpu = GpuExecutor::new(&ctx, &plan).unwrap().run(x.view()).unwrap();
        assert_close(
            &format!("AlexNet {label}"),
            gpu.as_slice().unwrap(),
            &to_f64(cpu.as_slice().unwrap()),
            1e-4,
        );
    }
}

/// Executors built on one shared plan hold it (no copy of the plan or its weights) and run
/// it as executors with their own copies do: CPU bitwise, GPU within the parity tolerance.
#[test]
fn executors_share_one_plan() {
    let mut net = small("resnet18");
    perforate_mixed(&mut net);
    let plan = std::sync::Arc::new(Plan::compile(&net, 2, PlanOptions::default()).unwrap());
    let x = input_for(&plan, 41);
    let own = CpuExecutor::new(&plan).unwrap().run(x.view()).unwrap();
    let a = CpuExecutor::from_shared(std::sync::Arc::clone(&plan)).unwrap();
    let b = CpuExecutor::from_shared(a.shared_plan()).unwrap();
    assert_eq!(std::sync::Arc::strong_count(&plan), 3, "both executors hold the one plan");
    assert_eq!(a.run(x.view()).unwrap(), own);
    assert_eq!(b.run(x.view()).unwrap(), own);
    if let Some(ctx) = gpu_or_skip("executors_share_one_plan") {
        let g = GpuExecutor::from_shared(&ctx, b.shared_plan()).unwrap();
        assert_eq!(std::sync::Arc::strong_count(&plan), 4);
        let got = g.run(x.view()).unwrap();
        assert_close(
            "shared-plan GPU vs CPU",
            got.as_slice().unwrap(),
            &to_f64(own.as_slice().unwrap()),
            1e-4,
        );
        assert!(std::sync::Arc::ptr_eq(&g.shared_plan(), &plan));
    }
}
