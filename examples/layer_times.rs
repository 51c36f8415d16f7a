//! Where a CPU run spends its time, step by step: `cargo run --release --example
//! layer_times -- MODEL.onnx|ZOO_NAME [BATCH] [Q] [alternate]` prints each plan step's kernel, output shape and
//! best time over 20 runs (dense, or every perforable conv at kept fraction Q).

use std::time::Instant;

use ndarray::{ArrayD, IxDyn};
use perforate::cpu::CpuExecutor;
use perforate::plan::{Plan, PlanOptions, StepOp};

fn main() -> perforate::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("usage: layer_times MODEL.onnx [BATCH] [Q]");
    let batch: usize = args.get(2).map_or(1, |b| b.parse().expect("batch"));
    let q: f64 = args.get(3).map_or(1.0, |b| b.parse().expect("kept fraction"));
    // An ONNX file, or a zoo network by name at full size.
    let mut net = if path.ends_with(".onnx") {
        perforate::onnx::load(path)?.network
    } else {
        perforate::network::zoo::build(path, perforate::network::zoo::ZooConfig::default())?
    };
    // A fourth argument `alternate` perforates every other eligible conv only (dense convs
    // reading compact inputs and the reverse, as a searched plan has them).
    if q < 1.0 && args.get(4).is_some_and(|a| a == "alternate") {
        for (i, name) in net.eligible_convs()?.iter().enumerate().step_by(2) {
            net.set_perforation(name, q, 1 + i as u64)?;
        }
    } else if q < 1.0 {
        net.perforate_all(q, 1)?;
    }
    let plan = Plan::compile(&net, batch, PlanOptions::default())?;
    let exec = CpuExecutor::new(&plan)?;
    let shape = plan.input_shape();
    let x = ArrayD::from_shape_vec(IxDyn(&shape), vec![0.5f32; shape.iter().product()]).expect("shape");
    let mut best = vec![f64::INFINITY; plan.steps().len()];
    let mut total = f64::INFINITY;
    for _ in 0..20 {
        let start = Instant::now();
        let mut last = Instant::now();
        let mut i = 0;
        exec.run_with(x.view(), |_, _| {
            let now = Instant::now();
            best[i] = best[i].min((now - last).as_secs_f64());
            last = now;
            i += 1;
        })?;
        total = total.min(start.elapsed().as_secs_f64());
    }
    println!("{:<28} {:<28} {:>20} {:>9} {:>7}", "layer", "kernel", "output", "ms", "GFLOP/s");
    for (i, (step, t)) in plan.steps().iter().zip(&best).enumerate() {
        let kernel = match &step.op {
            StepOp::Conv { layer, .. } => {
                format!("{} {}", exec.conv_kernel(i).unwrap_or("conv"), layer.geometry())
            }
            other => other.kernel().to_string(),
        };
        let kernel: String = kernel.chars().take(28).collect();
        println!(
            "{:<28} {:<28} {:>20} {:>9.3} {:>7.1}",
            step.layer.chars().take(28).collect::<String>(),
            kernel,
            format!("{:?}", plan.tensor(step.output).shape()),
            t * 1e3,
            step.flops as f64 / t / 1e9
        );
    }
    println!(
        "total (best run) {:.3} ms; sum of per-step bests {:.3} ms",
        total * 1e3,
        best.iter().sum::<f64>() * 1e3
    );
    Ok(())
}
