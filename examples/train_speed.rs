//! Training against inference throughput on the CPU (issue 12's measure): `cargo run
//! --release --example train_speed -- [MODEL.json|ZOO_NAME] [BATCH] [Q]` prints the best of
//! 15 forward+backward steps (training mode) next to the best of 15 dense inference runs of
//! the CPU executor at the same batch (the two alternating), in images per second, with the
//! forward and the backward timed apart.

use std::time::Instant;

use ndarray::{ArrayD, IxDyn};
use perforate::cpu::CpuExecutor;
use perforate::plan::{Plan, PlanOptions};
use perforate::train::{Mode, Model, Tensor};

fn main() -> perforate::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let spec = args.get(1).map_or("experiments/models/fashion_vgg.json", String::as_str);
    let batch: usize = args.get(2).map_or(64, |b| b.parse().expect("batch"));
    let q: f64 = args.get(3).map_or(1.0, |b| b.parse().expect("kept fraction"));
    let mut net = perforate::network::load(spec)?;
    if q < 1.0 {
        net.perforate_all(q, 1)?;
    }
    let i = &net.input;
    let shape = [batch, i.channels, i.height, i.width];
    let data: Vec<f32> =
        (0..shape.iter().product::<usize>()).map(|k| ((k * 7919) % 997) as f32 / 997.0).collect();

    let plan = Plan::compile(&net, batch, PlanOptions::default())?;
    let exec = CpuExecutor::new(&plan)?;
    let x = ArrayD::from_shape_vec(IxDyn(&shape), data.clone()).expect("shape");
    let model = Model::new(net)?;
    // Inference and training steps alternate, so that a slow spell of a shared host
    // weighs on both sides of the ratio alike.
    let (mut infer, mut fwd, mut bwd) = (f64::INFINITY, f64::INFINITY, f64::INFINITY);
    for step in 0..15 {
        let t = Instant::now();
        exec.run(x.view())?;
        infer = infer.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let tape = model.forward(Tensor::new(shape, data.clone())?, Mode::Train { seed: step })?;
        let f = t.elapsed().as_secs_f64();
        let logits = tape.value(model.logits_name()).expect("logits").data.len();
        let t = Instant::now();
        model.backward_params(&tape, vec![1e-3; logits], &[])?;
        fwd = fwd.min(f);
        bwd = bwd.min(t.elapsed().as_secs_f64());
    }
    let ips = |s: f64| batch as f64 / s;
    println!(
        "{spec} batch {batch} q {q}: inference {:.0} img/s ({:.1} ms); training {:.0} img/s (forward {:.1} ms, backward {:.1} ms); ratio {:.2}",
        ips(infer),
        infer * 1e3,
        ips(fwd + bwd),
        fwd * 1e3,
        bwd * 1e3,
        (fwd + bwd) / infer
    );
    Ok(())
}
