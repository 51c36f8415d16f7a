//! demo, bench and parity: the commands that compare executors and report speedups.

use std::path::Path;

use ndarray::{ArrayD, IxDyn};
use perforate::cpu::CpuExecutor;
use perforate::gpu::{GpuContext, GpuExecutor};
use perforate::network::zoo::{self, ZooConfig};
use perforate::network::{Network, Op};
use perforate::plan::{Plan, PlanOptions};
use perforate::rng::SeededRng;
use perforate::train::{self, Cost, SearchConfig, SearchStrategy};
use perforate::Interpolation;
use plotters::prelude::*;
use serde_json::json;

use crate::inputs::{self, Split};
use crate::{Device, Failure};

/// The trained model the demo perforates (committed with the repository).
const DEMO_MODEL: &str = "experiments/models/fashion_vgg.json";

/// The same model perforated to 2x by the impact search over 1,000 training images and
/// fine-tuned with its masks fixed for two epochs over the 60,000 (EXPERIMENTS.md,
/// "Targets"): what the method achieves, shown beside the demo's quick live run.
const SHIPPED_MODEL: &str = "experiments/models/fashion_vgg_impact_2x_ft.json";
const SHIPPED_PLAN: &str = "experiments/models/fashion_vgg_impact_2x_ft.plan.json";

fn input_for(plan: &Plan, seed: u64) -> ArrayD<f32> {
    let shape = plan.input_shape();
    let n = shape.iter().product();
    ArrayD::from_shape_vec(IxDyn(&shape), SeededRng::new(seed).vec_f32(n, -1.0, 1.0))
        .expect("shape and length agree")
}

fn latency(net: &Network, batch: usize, runs: usize, gpu: Option<&GpuContext>) -> Result<f64, Failure> {
    train::measure_latency(net, batch, runs, gpu)
        .map_err(|e| Failure::input(e, "the model may not fit this device"))
}

/// Largest and mean |CPU − GPU| of the network output over a batch.
fn output_parity(net: &Network, batch: usize, ctx: &GpuContext) -> Result<(f64, f64), Failure> {
    let plan = Plan::compile(net, batch, PlanOptions::default()).map_err(|e| Failure::input(e, ""))?;
    let x = input_for(&plan, 9);
    let cpu = CpuExecutor::new(&plan).and_then(|e| e.run(x.view())).map_err(|e| Failure::runtime(e, ""))?;
    let gpu =
        GpuExecutor::new(ctx, &plan).and_then(|e| e.run(x.view())).map_err(|e| Failure::runtime(e, ""))?;
    let diffs: Vec<f64> = cpu.iter().zip(gpu.iter()).map(|(a, b)| f64::from((a - b).abs())).collect();
    let max = diffs.iter().copied().fold(0.0, f64::max);
    Ok((max, diffs.iter().sum::<f64>() / diffs.len().max(1) as f64))
}

/// The README's main job.
pub fn demo(data: Option<&str>, json_out: bool) -> Result<(), Failure> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let net = inputs::model(&root.join(DEMO_MODEL).display().to_string())?;
    let shipped = inputs::model_with_plan(
        &root.join(SHIPPED_MODEL).display().to_string(),
        Some(&root.join(SHIPPED_PLAN)),
    )?;
    let spec = data.unwrap_or(if Path::new(perforate::data::FASHION_MNIST_DIR).is_dir() {
        "fashion"
    } else {
        "sample"
    });
    let test = inputs::dataset(spec, Split::Test)?;
    let train_split = inputs::dataset(spec, Split::Train)?;
    let n = train_split.len();
    let search_data = train_split.subset(&(n.saturating_sub(500)..n).collect::<Vec<_>>());
    eprintln!("model {} ({}), data '{spec}': {} test images", net.name, DEMO_MODEL, test.len());
    let dense_eval = train::evaluate(&net, &test, 250).map_err(|e| Failure::input(e, ""))?;
    eprintln!("searching a 2x perforation (impact masks, 500 training images score the loss) ...");
    let config = SearchConfig {
        target_speedup: 2.0,
        strategy: SearchStrategy::Impact,
        interpolation: Interpolation::Nearest,
        cost: Cost::Flops,
        batch: 250,
        seed: 1,
        max_steps: 200,
    };
    let (perforated, steps) =
        train::greedy_search(&net, &search_data, &config).map_err(|e| Failure::input(e, ""))?;
    let perf_eval = train::evaluate(&perforated, &test, 250).map_err(|e| Failure::input(e, ""))?;
    // A short fine-tuning with the masks fixed: one pass over 3,000 training images.
    let tune_set = train_split.take(3000);
    eprintln!("fine-tuning the perforated network on {} training images ...", tune_set.len());
    let mut tuned = perforated.clone();
    let tune = train::TrainConfig {
        epochs: 1,
        lr: 1e-3,
        schedule: train::LrSchedule::Constant,
        ..Default::default()
    };
    train::train(&mut tuned, &tune_set, None, &tune, |_| {}).map_err(|e| Failure::input(e, ""))?;
    let tuned_eval = train::evaluate(&tuned, &test, 250).map_err(|e| Failure::input(e, ""))?;
    let theoretical = steps.last().map_or(1.0, |s| s.speedup);
    let shipped_eval = train::evaluate(&shipped, &test, 250).map_err(|e| Failure::input(e, ""))?;
    let shipped_theoretical = shipped.theoretical_speedup().map_err(|e| Failure::input(e, ""))?;
    let cpu = (latency(&net, 64, 5, None)?, latency(&perforated, 64, 5, None)?);
    let cpu_shipped = latency(&shipped, 64, 5, None)?;
    let gpu_ctx = GpuContext::new();
    let gpu = match &gpu_ctx {
        Ok(ctx) => Some((
            latency(&net, 64, 5, Some(ctx))?,
            latency(&perforated, 64, 5, Some(ctx))?,
            output_parity(&net, 16, ctx)?,
            output_parity(&perforated, 16, ctx)?,
            ctx.describe(),
        )),
        Err(_) => None,
    };
    let gpu_shipped = match &gpu_ctx {
        Ok(ctx) => Some(latency(&shipped, 64, 5, Some(ctx))?),
        Err(_) => None,
    };
    if json_out {
        let g = gpu.as_ref().map(|(d, p, pd, pp, name)| {
            json!({"adapter": name, "dense_ms": d * 1e3, "perforated_ms": p * 1e3, "speedup": d / p,
                   "max_abs_diff_dense": pd.0, "max_abs_diff_perforated": pp.0})
        });
        let out = json!({
            "model": net.name, "data": spec, "test_images": test.len(), "steps": steps.len() - 1,
            "dense": dense_eval, "perforated": perf_eval, "perforated_finetuned": tuned_eval, "theoretical_speedup": theoretical,
            "cpu": {"dense_ms": cpu.0 * 1e3, "perforated_ms": cpu.1 * 1e3, "speedup": cpu.0 / cpu.1},
            "gpu": g,
            "shipped": {"model": SHIPPED_MODEL, "plan": SHIPPED_PLAN, "eval": shipped_eval,
                        "theoretical_speedup": shipped_theoretical, "cpu_ms": cpu_shipped * 1e3,
                        "gpu_ms": gpu_shipped.map(|t| t * 1e3)},
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    println!("\n{} on {} Fashion-MNIST test images, perforated to {theoretical:.2}x theoretical in {} greedy steps", net.name, test.len(), steps.len() - 1);
    println!(
        "{:<28} {:>10} {:>10} {:>12} {:>14} {:>14}",
        "", "top-1 acc", "top-5 acc", "theoretical", "CPU ms (b64)", "GPU ms (b64)"
    );
    let ms = |t: Option<f64>| t.map_or("-".to_string(), |t| format!("{:.2}", t * 1e3));
    let rows = [
        ("dense", dense_eval, 1.0, cpu.0, gpu.as_ref().map(|g| g.0)),
        ("perforated (live search)", perf_eval, theoretical, cpu.1, gpu.as_ref().map(|g| g.1)),
        ("+ quick fine-tuning", tuned_eval, theoretical, cpu.1, gpu.as_ref().map(|g| g.1)),
        ("shipped 2x, fine-tuned", shipped_eval, shipped_theoretical, cpu_shipped, gpu_shipped),
    ];
    for (name, e, speedup, t, g) in rows {
        println!(
            "{name:<28} {:>9.2}% {:>9.2}% {:>11.2}x {:>14.2} {:>14}",
            100.0 * (1.0 - e.top1_error),
            100.0 * (1.0 - e.top5_error),
            speedup,
            t * 1e3,
            ms(g)
        );
    }
    println!("(latency: one batch of 64 images, best of 5 runs; fine-tuning changes weights, not cost)");
    println!(
        "measured speedup: CPU {:.2}x{}",
        cpu.0 / cpu.1,
        gpu.as_ref().map_or(String::new(), |g| format!(", GPU {:.2}x", g.0 / g.1))
    );
    match &gpu {
        Some((_, _, pd, pp, name)) => println!(
            "CPU/GPU parity (max |diff| of the output probabilities): dense {:.1e}, perforated {:.1e} on {name}",
            pd.0, pp.0
        ),
        None => println!("GPU: not available ({}); CPU results only", gpu_ctx.err().map(|e| e.to_string()).unwrap_or_default()),
    }
    println!(
        "top-1 error increase: {:+.2} points after the live search, {:+.2} after one quick fine-tuning pass over {} images",
        100.0 * (perf_eval.top1_error - dense_eval.top1_error),
        100.0 * (tuned_eval.top1_error - dense_eval.top1_error),
        tune_set.len()
    );
    println!(
        "shipped: {:+.2} points at {shipped_theoretical:.2}x, from the same method with a fuller budget (impact search \
         scored on 1,000 images, two fine-tuning epochs over 60,000: EXPERIMENTS.md, {SHIPPED_MODEL})",
        100.0 * (shipped_eval.top1_error - dense_eval.top1_error),
    );
    Ok(())
}

/// The standard suite: zoo networks scaled to run anywhere in seconds.
fn suite() -> Vec<Network> {
    let scaled = |name: &str, r: usize| {
        zoo::build(name, ZooConfig { width: 0.25, resolution: Some(r), ..Default::default() })
    };
    [("nin", 32), ("alexnet", 115), ("vgg16", 112), ("resnet18", 112), ("resnet50", 112)]
        .iter()
        .filter_map(|(n, r)| scaled(n, *r).ok())
        .collect()
}

/// What `bench` measures: kept fraction, batch, timed runs, and the peak for percentages.
pub struct BenchCase {
    /// Kept fraction of every perforable conv.
    pub q: f64,
    /// Images per run.
    pub batch: usize,
    /// Timed runs (best reported).
    pub runs: usize,
    /// fp32 peak in GFLOP/s, if known.
    pub peak_gflops: Option<f64>,
}

/// The portable benchmark.
pub fn bench(
    model: Option<&str>,
    device: Device,
    case: BenchCase,
    plot: Option<&Path>,
    json_out: bool,
) -> Result<(), Failure> {
    let BenchCase { q, batch, runs, peak_gflops } = case;
    let nets = match model {
        Some(m) => vec![inputs::model(m)?],
        None => suite(),
    };
    let ctx = match device {
        Device::Cpu => None,
        _ => match GpuContext::new() {
            Ok(c) => Some(c),
            Err(e) if device == Device::Gpu => return Err(Failure::runtime(e, "use --device cpu")),
            Err(e) => {
                eprintln!("GPU skipped: {e}");
                None
            }
        },
    };
    let mut executors: Vec<(&str, Option<&GpuContext>)> = Vec::new();
    if device != Device::Gpu {
        executors.push(("cpu", None));
    }
    if let Some(c) = &ctx {
        executors.push(("gpu", Some(c)));
    }
    let mut rows = Vec::new();
    for net in &nets {
        let mut perforated = net.clone();
        perforated.perforate_all(q, 1).map_err(|e| Failure::input(e, ""))?;
        let theoretical = perforated.theoretical_speedup().map_err(|e| Failure::input(e, ""))?;
        let flops = |n: &Network| {
            Plan::compile(n, batch, PlanOptions::default())
                .map(|p| p.flops() as f64)
                .map_err(|e| Failure::input(e, ""))
        };
        let (dense_flops, perf_flops) = (flops(net)?, flops(&perforated)?);
        for (exec, gpu) in &executors {
            let dense = latency(net, batch, runs, *gpu)?;
            let perf = latency(&perforated, batch, runs, *gpu)?;
            let (dense_gflops, perf_gflops) = (dense_flops / dense / 1e9, perf_flops / perf / 1e9);
            let percent = |g: f64| peak_gflops.map(|p| 100.0 * g / p);
            rows.push(json!({"network": net.name, "executor": exec, "batch": batch, "q": q,
                "dense_ms": dense * 1e3, "perforated_ms": perf * 1e3, "theoretical": theoretical, "measured": dense / perf,
                "dense_gflops": dense_gflops, "perforated_gflops": perf_gflops,
                "dense_percent_of_peak": percent(dense_gflops), "perforated_percent_of_peak": percent(perf_gflops)}));
        }
    }
    let adapter = ctx.as_ref().map(|c| c.describe());
    let cpu_threads = rayon::current_num_threads();
    let kern = perforate::cpu::gemm::Microkernel::detect();
    let cpu_kernel = format!("{} {}x{}", kern.name, kern.mr, kern.nr);
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"adapter": adapter, "cpu_threads": cpu_threads, "cpu_kernel": cpu_kernel, "rows": rows})
            )
            .unwrap_or_default()
        );
    } else {
        println!(
            "GPU adapter: {}; CPU threads: {cpu_threads}; CPU microkernel: {cpu_kernel}",
            adapter.as_deref().unwrap_or("none")
        );
        println!(
            "{:<12} {:<4} {:>10} {:>14} {:>12} {:>9} {:>6} {:>13}{}",
            "network",
            "exec",
            "dense ms",
            "perforated ms",
            "theoretical",
            "measured",
            "ratio",
            "dense GFLOP/s",
            if peak_gflops.is_some() { "  % peak" } else { "" }
        );
        for r in &rows {
            let (t, m) = (r["theoretical"].as_f64().unwrap_or(1.0), r["measured"].as_f64().unwrap_or(1.0));
            println!(
                "{:<12} {:<4} {:>10.2} {:>14.2} {:>12.2} {:>9.2} {:>6.2} {:>13.1}{}",
                r["network"].as_str().unwrap_or(""),
                r["executor"].as_str().unwrap_or(""),
                r["dense_ms"].as_f64().unwrap_or(0.0),
                r["perforated_ms"].as_f64().unwrap_or(0.0),
                t,
                m,
                m / t,
                r["dense_gflops"].as_f64().unwrap_or(0.0),
                r["dense_percent_of_peak"].as_f64().map(|p| format!(" {p:>7.1}%")).unwrap_or_default()
            );
        }
    }
    if let Some(path) = plot {
        latency_plot(&rows, path)
            .map_err(|e| Failure::usage(format!("{}: plotting failed: {e}", path.display())))?;
    }
    Ok(())
}

fn latency_plot(rows: &[serde_json::Value], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let top = rows.iter().filter_map(|r| r["dense_ms"].as_f64()).fold(1.0, f64::max) * 1.1;
    let n = rows.len();
    let mut chart = ChartBuilder::on(&root)
        .caption("latency: dense (grey) vs perforated (blue)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(60)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..n as f64, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i = x.floor() as usize;
            rows.get(i).map_or(String::new(), |r| {
                format!("{} {}", r["network"].as_str().unwrap_or(""), r["executor"].as_str().unwrap_or(""))
            })
        })
        .y_desc("ms per batch")
        .draw()?;
    for (i, r) in rows.iter().enumerate() {
        let x = i as f64;
        let d = r["dense_ms"].as_f64().unwrap_or(0.0);
        let p = r["perforated_ms"].as_f64().unwrap_or(0.0);
        chart.draw_series([Rectangle::new(
            [(x + 0.1, 0.0), (x + 0.45, d)],
            RGBColor(150, 150, 150).filled(),
        )])?;
        chart.draw_series([Rectangle::new([(x + 0.5, 0.0), (x + 0.85, p)], BLUE.filled())])?;
    }
    root.present()?;
    Ok(())
}

/// Per-layer CPU vs GPU differences.
pub fn parity(model: &str, plan: Option<&Path>, batch: usize, json_out: bool) -> Result<(), Failure> {
    let net = inputs::model_with_plan(model, plan)?;
    let ctx = GpuContext::new().map_err(|e| Failure::runtime(e, "parity needs a GPU adapter"))?;
    let mut rows = Vec::new();
    let order = Plan::compile(&net, batch, PlanOptions::default()).map_err(|e| Failure::input(e, ""))?;
    for layer in &net.layers {
        if order.output_of(&layer.name).is_none() || matches!(layer.op, Op::Dropout { .. }) {
            continue;
        }
        let mut head = net.clone();
        head.output = layer.name.clone();
        let (max, mean) = output_parity(&head, batch, &ctx)?;
        rows.push(
            json!({"layer": layer.name, "op": layer.op.kind(), "max_abs_diff": max, "mean_abs_diff": mean}),
        );
    }
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"adapter": ctx.describe(), "layers": rows}))
                .unwrap_or_default()
        );
    } else {
        println!("CPU vs {} on {batch} random images, output of each layer:", ctx.describe());
        println!("{:<28} {:<16} {:>12} {:>12}", "layer", "op", "max |diff|", "mean |diff|");
        for r in &rows {
            println!(
                "{:<28} {:<16} {:>12.2e} {:>12.2e}",
                r["layer"].as_str().unwrap_or(""),
                r["op"].as_str().unwrap_or(""),
                r["max_abs_diff"].as_f64().unwrap_or(0.0),
                r["mean_abs_diff"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}
