//! info, run, eval, search, finetune, train and experiment.

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn};
use perforate::cpu::CpuExecutor;
use perforate::gpu::{GpuContext, GpuExecutor};
use perforate::network::zoo::{self, ZooConfig};
use perforate::network::{PerforationPlan, PerforationReport};
use perforate::plan::{Plan, PlanOptions};
use perforate::train::{
    self, Cost, ExperimentConfig, LrSchedule, Method, SearchConfig, SearchStrategy, TrainConfig,
};
use perforate::Interpolation;
use serde_json::json;

use crate::inputs::{self, Split};
use crate::{CostArg, Device, Failure};

/// `eval`: top-1/top-5 error and loss of a model (and plan) on a data set's test split.
pub fn eval(
    model: &str,
    plan: Option<&Path>,
    data: &str,
    limit: Option<usize>,
    json_out: bool,
) -> Result<(), Failure> {
    let net = inputs::model_with_plan(model, plan)?;
    let mut d = inputs::dataset(data, Split::Test)?;
    if let Some(n) = limit {
        d = d.take(n);
    }
    inputs::fits(&net, &d)?;
    let e = train::evaluate(&net, &d, 256).map_err(|e| Failure::input(e, ""))?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&e).unwrap_or_default());
    } else {
        println!(
            "{} on {} images: loss {:.4}, top-1 error {:.2}%, top-5 error {:.2}% (accuracy {:.2}%)",
            net.name,
            e.images,
            e.loss,
            100.0 * e.top1_error,
            100.0 * e.top5_error,
            100.0 * (1.0 - e.top1_error)
        );
    }
    Ok(())
}

/// The settings of `search` besides the model and the data.
pub struct SearchArgs {
    /// Network-wide theoretical speedup to reach.
    pub target_speedup: f64,
    /// Mask strategy.
    pub strategy: SearchStrategy,
    /// Cost model.
    pub cost: CostArg,
    /// Images scoring the loss.
    pub images: usize,
    /// Where the plan goes.
    pub plan_out: PathBuf,
    /// Where the step log goes.
    pub log: PathBuf,
    /// Where the kept-fraction plot goes, if anywhere.
    pub plot: Option<PathBuf>,
}

/// `search`: the greedy network-wide search; writes the plan and the step log.
pub fn search(model: &str, data: &str, args: SearchArgs, json_out: bool) -> Result<(), Failure> {
    let SearchArgs { target_speedup, strategy, cost, images, plan_out, log, plot } = args;
    let net = inputs::model(model)?;
    let d = inputs::dataset(data, Split::Train)?;
    inputs::fits(&net, &d)?;
    let n = d.len();
    let d = d.subset(&(n.saturating_sub(images)..n).collect::<Vec<_>>());
    let cost = match cost {
        CostArg::Flops => Cost::Flops,
        CostArg::Cpu => Cost::Cpu { batch: 16 },
        CostArg::Gpu => Cost::Gpu {
            context: GpuContext::new().map_err(|e| Failure::runtime(e, "use --cost flops or cpu"))?,
            batch: 16,
        },
    };
    let config = SearchConfig {
        target_speedup,
        strategy,
        interpolation: Interpolation::Nearest,
        cost,
        batch: 250,
        seed: 1,
        max_steps: 1000,
    };
    let bar = indicatif::ProgressBar::new_spinner();
    let (perforated, steps) = train::greedy_search_with(&net, &d, &config, |s, _| {
        bar.set_message(format!(
            "step {}: {} -> speedup {:.2}, loss {:.4}",
            s.step, s.layer, s.speedup, s.loss
        ));
        bar.tick();
    })
    .map_err(|e| Failure::input(e, ""))?;
    bar.finish_and_clear();
    let plan = PerforationPlan::from_network(&perforated).map_err(|e| Failure::input(e, ""))?;
    plan.save(&plan_out).map_err(|e| Failure::input(e, ""))?;
    std::fs::write(&log, serde_json::to_string_pretty(&steps).unwrap_or_default())
        .map_err(|e| Failure::usage(format!("{}: cannot write: {e}", log.display())))?;
    let last = steps.last().expect("step 0 always exists");
    if let Some(path) = &plot {
        kept_plot(last, path)
            .map_err(|e| Failure::usage(format!("{}: plotting failed: {e}", path.display())))?;
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&json!({"plan": plan_out, "log": log, "steps": steps.len() - 1, "speedup": last.speedup, "loss": last.loss, "error": last.error})).unwrap_or_default());
    } else {
        println!("{:>4}  {:<24} {:>9} {:>8} {:>8}", "step", "layer", "speedup", "loss", "error %");
        for s in &steps {
            println!(
                "{:>4}  {:<24} {:>9.3} {:>8.4} {:>8.2}",
                s.step,
                s.layer,
                s.speedup,
                s.loss,
                100.0 * s.error
            );
        }
        println!("plan written to {}, log to {}", plan_out.display(), log.display());
    }
    Ok(())
}

/// `finetune`: trains a perforated model (masks fixed) and saves it with its plan.
pub fn finetune(
    model: &str,
    plan: &Path,
    data: &str,
    (epochs, lr, limit): (usize, f32, Option<usize>),
    out: &Path,
    json_out: bool,
) -> Result<(), Failure> {
    let mut net = inputs::model_with_plan(model, Some(plan))?;
    let mut tr = inputs::dataset(data, Split::Train)?;
    let te = inputs::dataset(data, Split::Test)?;
    if let Some(n) = limit {
        tr = tr.take(n);
    }
    inputs::fits(&net, &tr)?;
    let cfg = TrainConfig { epochs, lr, schedule: LrSchedule::Constant, ..Default::default() };
    let before = train::evaluate(&net, &te, 256).map_err(|e| Failure::input(e, ""))?;
    train_with_bar(&mut net, &tr, &te, &cfg, json_out)?;
    // The tuned network is saved dense; its plan file still applies (same layers).
    let weights = net.dense();
    std::fs::write(out, weights.to_json().map_err(|e| Failure::input(e, ""))?)
        .map_err(|e| Failure::usage(format!("{}: cannot write: {e}", out.display())))?;
    let tuned_plan = PerforationPlan::from_network(&net).map_err(|e| Failure::input(e, ""))?;
    let plan_path = out.with_extension("plan.json");
    tuned_plan.save(&plan_path).map_err(|e| Failure::input(e, ""))?;
    let after = train::evaluate(&net, &te, 256).map_err(|e| Failure::input(e, ""))?;
    if !json_out {
        println!(
            "top-1 error {:.2}% -> {:.2}%; wrote {} and its plan {}",
            100.0 * before.top1_error,
            100.0 * after.top1_error,
            out.display(),
            plan_path.display()
        );
    }
    Ok(())
}

/// The settings of `train`.
pub struct TrainArgs {
    /// Epochs.
    pub epochs: usize,
    /// Batch size.
    pub batch: usize,
    /// Learning rate.
    pub lr: f32,
    /// Channel width multiplier of the zoo network.
    pub width: f64,
    /// Training images used (all when `None`).
    pub limit: Option<usize>,
    /// Random-crop padding.
    pub crop: usize,
    /// Seed.
    pub seed: u64,
}

/// `train`: trains a zoo network from scratch on a data set.
pub fn train_zoo(name: &str, data: &str, out: &Path, args: TrainArgs, json_out: bool) -> Result<(), Failure> {
    let TrainArgs { epochs, batch, lr, width, limit, crop, seed } = args;
    if !zoo::FASHION.contains(&name) && !zoo::NAMES.contains(&name) {
        return Err(Failure::usage(format!(
            "unknown zoo network '{name}'; known: {}, {}",
            zoo::FASHION.join(", "),
            zoo::NAMES.join(", ")
        )));
    }
    let config = ZooConfig { width, resolution: Some(28), classes: Some(10), seed };
    let mut net = zoo::build(name, config).map_err(|e| Failure::input(e, ""))?;
    let mut tr = inputs::dataset(data, Split::Train)?;
    let te = inputs::dataset(data, Split::Test)?;
    if let Some(n) = limit {
        tr = tr.take(n);
    }
    inputs::fits(&net, &tr)?;
    let cfg = TrainConfig {
        epochs,
        batch_size: batch,
        lr,
        crop_padding: crop,
        flip: true,
        seed,
        checkpoint: Some(out.to_path_buf()),
        ..Default::default()
    };
    eprintln!("training {name} (width {width}) on {} images, testing on {}", tr.len(), te.len());
    train_with_bar(&mut net, &tr, &te, &cfg, json_out)?;
    std::fs::write(out, net.to_json().map_err(|e| Failure::input(e, ""))?)
        .map_err(|e| Failure::usage(format!("{}: cannot write: {e}", out.display())))?;
    Ok(())
}

/// `experiment`: every method at every speedup, before and after fine-tuning; the table,
/// rows and plot go to `out` (or are redrawn from saved `rows`).
pub fn experiment(
    model: &str,
    data: &str,
    out: &Path,
    (methods, finetune_images): (Vec<Method>, usize),
    rows: Option<&Path>,
    json_out: bool,
) -> Result<(), Failure> {
    let net = inputs::model(model)?;
    std::fs::create_dir_all(out).map_err(|e| Failure::usage(format!("{}: {e}", out.display())))?;
    let write = |name: &str, text: String| {
        std::fs::write(out.join(name), text).map_err(|e| Failure::usage(format!("{}: {e}", out.display())))
    };
    let (rows, skipped) = match rows {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("{}: cannot read: {e}", path.display())))?;
            let rows: Vec<train::ExperimentRow> = serde_json::from_str(&text)
                .map_err(|e| Failure::usage(format!("{}: not experiment rows: {e}", path.display())))?;
            (rows, Vec::new())
        }
        None => {
            let tr = inputs::dataset(data, Split::Train)?;
            let te = inputs::dataset(data, Split::Test)?;
            inputs::fits(&net, &tr)?;
            let mut config = ExperimentConfig { finetune_images, ..Default::default() };
            if !methods.is_empty() {
                config.methods = methods;
            }
            let mut done = Vec::new();
            let result = train::run_experiment(&net, &tr, &te, &config, |r| {
                eprintln!(
                    "{} {:.0}x: theoretical {:.2}, CPU {:.2}, error {:.2}% -> {:.2}% (dense {:.2}%)",
                    r.method,
                    r.target,
                    r.theoretical,
                    r.measured_cpu,
                    100.0 * r.error_before,
                    100.0 * r.error_after,
                    100.0 * r.dense_error
                );
                // Rows are saved as they come, so a failure later loses nothing.
                done.push(r.clone());
                std::fs::write(
                    out.join("rows.json"),
                    serde_json::to_string_pretty(&done).unwrap_or_default(),
                )
                .ok();
            })
            .map_err(|e| Failure::input(e, ""))?;
            write("rows.json", serde_json::to_string_pretty(&result.0).unwrap_or_default())?;
            result
        }
    };
    let table = train::experiment_table(&rows, &skipped);
    write("table.md", table.clone())?;
    train::plot_experiment(
        &rows,
        &format!("{}: error increase vs speedup", net.name),
        &out.join("error_vs_speedup.svg"),
    )
    .map_err(|e| Failure::input(e, ""))?;
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"rows": rows, "skipped": skipped})).unwrap_or_default()
        );
    } else {
        print!("{table}");
    }
    Ok(())
}

/// Kept fraction per layer after the search, as an SVG bar chart.
fn kept_plot(step: &train::SearchStep, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let layers: Vec<(&String, &f64)> = step.kept_fractions.iter().collect();
    let n = layers.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("kept fraction per layer at {:.2}x", step.speedup), ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(50)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..n as f64, 0.0..1.05)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i = x.floor() as usize;
            layers.get(i).map_or(String::new(), |l| l.0.clone())
        })
        .y_desc("kept fraction q")
        .draw()?;
    for (i, (_, &q)) in layers.iter().enumerate() {
        let x = i as f64;
        chart.draw_series([Rectangle::new([(x + 0.15, 0.0), (x + 0.85, q)], BLUE.filled())])?;
    }
    root.present()?;
    Ok(())
}

/// Training with a progress bar over the steps (hidden with `--json`) and a line per epoch.
fn train_with_bar(
    net: &mut perforate::network::Network,
    tr: &perforate::data::Dataset,
    te: &perforate::data::Dataset,
    cfg: &TrainConfig,
    json_out: bool,
) -> Result<(), Failure> {
    let bar = if json_out { indicatif::ProgressBar::hidden() } else { indicatif::ProgressBar::new(0) };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} steps, {msg}, eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    train::train_with(
        net,
        tr,
        Some(te),
        cfg,
        |log| bar.suspend(|| epoch_line(log, json_out)),
        |step, total, loss| {
            bar.set_length(total as u64);
            bar.set_position(step as u64);
            bar.set_message(format!("loss {loss:.4}"));
        },
    )
    .map_err(|e| Failure::input(e, ""))?;
    bar.finish_and_clear();
    Ok(())
}

fn epoch_line(log: &train::EpochLog, json_out: bool) {
    if json_out {
        println!("{}", serde_json::to_string(log).unwrap_or_default());
        return;
    }
    let test = log.test.map_or(String::new(), |t| {
        format!(
            "  test loss {:.4}  top-1 err {:5.2}%  top-5 err {:5.2}%",
            t.loss,
            100.0 * t.top1_error,
            100.0 * t.top5_error
        )
    });
    println!(
        "epoch {:>3}  lr {:.4}  train loss {:.4}  train err {:5.2}%{test}  {:.0} img/s",
        log.epoch,
        log.lr,
        log.train_loss,
        100.0 * log.train_error,
        log.images_per_second
    );
}

pub fn info(model: &str, plan: Option<&Path>, json_out: bool) -> Result<(), Failure> {
    let net = inputs::model_with_plan(model, plan)?;
    let compiled = Plan::compile(&net, 1, PlanOptions { fuse: false, ..Default::default() })
        .map_err(|e| Failure::input(e, ""))?;
    let eligible = net.eligible_convs().map_err(|e| Failure::input(e, ""))?;
    let report = PerforationReport::new(&net).map_err(|e| Failure::input(e, ""))?;
    let adapter = GpuContext::new().map(|c| c.describe()).unwrap_or_else(|e| format!("none ({e})"));
    // The opset and producer an ONNX file declares (it loaded above, so it loads again).
    let onnx = Path::new(model)
        .extension()
        .is_some_and(|e| e == "onnx")
        .then(|| perforate::onnx::load(model).ok())
        .flatten()
        .map(|m| (m.opset, m.producer));
    let mut rows = Vec::new();
    for l in &net.layers {
        let Some(t) = compiled.output_of(&l.name) else { continue };
        let conv = report.layers.iter().find(|r| r.layer == l.name);
        rows.push(json!({
            "layer": l.name,
            "op": l.op.kind(),
            "output": [t.channels, t.height, t.width],
            "dense_mflops": conv.map(|c| c.dense_flops as f64 / 1e6),
            "mflops": conv.map(|c| c.flops as f64 / 1e6),
            "perforable": eligible.contains(&l.name),
        }));
    }
    #[allow(clippy::cast_precision_loss)]
    let total = compiled.flops() as f64 / 1e6;
    if json_out {
        let out = json!({"name": net.name, "input": [net.input.channels, net.input.height, net.input.width], "layers": rows, "mflops": total, "perforable": eligible, "adapter": adapter, "onnx_opset": onnx.as_ref().map(|o| o.0), "onnx_producer": onnx.as_ref().map(|o| o.1.clone())});
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    println!(
        "{}: input {}x{}x{}, {:.1} MFLOP per image",
        net.name, net.input.channels, net.input.height, net.input.width, total
    );
    if let Some((opset, producer)) = &onnx {
        println!(
            "ONNX opset {opset}, produced by {}",
            if producer.is_empty() { "(unknown)" } else { producer }
        );
    }
    println!("{:<28} {:<16} {:>16} {:>12} {:>10}", "layer", "op", "output", "conv MFLOP", "perforable");
    for r in &rows {
        let shape = &r["output"];
        let mflops = r["mflops"].as_f64().map_or(String::new(), |v| format!("{v:.2}"));
        println!(
            "{:<28} {:<16} {:>16} {:>12} {:>10}",
            r["layer"].as_str().unwrap_or(""),
            r["op"].as_str().unwrap_or(""),
            format!("{}x{}x{}", shape[0], shape[1], shape[2]),
            mflops,
            if r["perforable"].as_bool() == Some(true) { "yes" } else { "" }
        );
    }
    println!("theoretical speedup of the current perforation: {:.2}", report.theoretical_speedup);
    println!("GPU adapter: {adapter}");
    Ok(())
}

/// Reads the inputs of `run` into one `[N, C, H, W]` batch.
fn read_inputs(paths: &[std::path::PathBuf], c: usize, h: usize, w: usize) -> Result<Vec<f32>, Failure> {
    let mut x = Vec::new();
    for p in paths {
        let name = p.display().to_string();
        if name.ends_with(".npy") {
            let a: ArrayD<f32> =
                perforate::data::read_npy_f32(p).map_err(|e| Failure::usage(e.to_string()))?;
            if a.ndim() != 4 || a.shape()[1..] != [c, h, w] {
                return Err(Failure::usage(format!(
                    "{name}: shape {:?}, the model takes [N, {c}, {h}, {w}]",
                    a.shape()
                )));
            }
            // A NaN or infinity would reach the output as confident-looking numbers through
            // layers that clamp (ReLU, max pooling): refuse it, saying where it is.
            if let Some((index, v)) = a.indexed_iter().find(|(_, v)| !v.is_finite()) {
                return Err(Failure::usage(format!(
                    "{name}: value {v} at index {:?} is not finite; inputs must be finite numbers",
                    ndarray::Dimension::slice(&index)
                )));
            }
            x.extend(a.iter());
        } else if name.contains("idx3") {
            let d = perforate::data::load_idx_images(p)
                .map_err(|e| Failure::input(e, "is it an IDX image file?"))?;
            if [d.channels, d.height, d.width] != [c, h, w] {
                return Err(Failure::usage(format!(
                    "{name}: {}x{}x{} images, the model takes {c}x{h}x{w}",
                    d.channels, d.height, d.width
                )));
            }
            x.extend(d.images.iter().map(|v| (v - inputs::FASHION_MEAN) / inputs::FASHION_STD));
        } else {
            let img =
                image::open(p).map_err(|e| Failure::usage(format!("{name}: not a readable image: {e}")))?;
            let img = img.resize_exact(
                u32::try_from(w).unwrap_or(1),
                u32::try_from(h).unwrap_or(1),
                image::imageops::FilterType::Triangle,
            );
            if c == 1 {
                // Fashion-MNIST is white garments on black: take luminance as is.
                x.extend(
                    img.to_luma8()
                        .pixels()
                        .map(|p| (f32::from(p.0[0]) / 255.0 - inputs::FASHION_MEAN) / inputs::FASHION_STD),
                );
            } else if c == 3 {
                let rgb = img.to_rgb8();
                for ch in 0..3 {
                    x.extend(rgb.pixels().map(|p| f32::from(p.0[ch]) / 255.0));
                }
            } else {
                return Err(Failure::usage(format!(
                    "{name}: images need a 1- or 3-channel model, this one takes {c}"
                )));
            }
        }
    }
    Ok(x)
}

pub fn classify(
    model: &str,
    paths: &[std::path::PathBuf],
    plan: Option<&Path>,
    device: Device,
    output: Option<&Path>,
    top: usize,
    json_out: bool,
) -> Result<(), Failure> {
    let (mut net, output_rank) = inputs::model_and_rank(model)?;
    inputs::apply_plan(&mut net, plan)?;
    let (c, h, w) = (net.input.channels, net.input.height, net.input.width);
    let x = read_inputs(paths, c, h, w)?;
    let n = x.len() / (c * h * w);
    let x = ArrayD::from_shape_vec(IxDyn(&[n, c, h, w]), x).map_err(|e| Failure::usage(e.to_string()))?;
    let compiled = Plan::compile(&net, n, PlanOptions::default()).map_err(|e| Failure::input(e, ""))?;
    let out = match device {
        Device::Cpu => CpuExecutor::new(&compiled).and_then(|e| e.run(x.view())),
        Device::Gpu | Device::All => {
            let ctx = GpuContext::new().map_err(|e| Failure::runtime(e, "use --device cpu"))?;
            GpuExecutor::new(&ctx, &compiled).and_then(|e| e.run(x.view()))
        }
    }
    .map_err(|e| Failure::runtime(e, ""))?;
    if let Some(i) = out.iter().position(|v| !v.is_finite()) {
        let v = out.iter().nth(i).copied().unwrap_or(f32::NAN);
        eprintln!(
            "warning: the output holds non-finite values (first at flat index {i}: {v}); the \
             weights or the inputs overflow somewhere"
        );
    }
    // An ONNX model's outputs keep the rank its graph declares ([N, classes] for most).
    let out = match (output_rank, out.shape()) {
        (Some(2), &[n, c, 1, 1]) => {
            out.into_shape_with_order(IxDyn(&[n, c])).map_err(|e| Failure::runtime(e, ""))?
        }
        _ => out,
    };
    if let Some(path) = output {
        ndarray_npy::write_npy(path, &out)
            .map_err(|e| Failure::usage(format!("{}: cannot write: {e}", path.display())))?;
    }
    let flat = out.as_slice().unwrap_or(&[]);
    let classes = flat.len() / n.max(1);
    let names: Option<&[&str]> =
        (classes == 10 && c == 1).then_some(&perforate::data::FASHION_MNIST_CLASSES[..]);
    let mut results = Vec::new();
    for (i, row) in flat.chunks_exact(classes.max(1)).enumerate() {
        let mut order: Vec<usize> = (0..classes).collect();
        order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        let best: Vec<_> = order
            .iter()
            .take(top)
            .map(|&k| json!({"class": k, "name": names.map(|n| n[k]), "score": row[k]}))
            .collect();
        results.push(json!({"image": i, "top": best}));
    }
    if json_out {
        println!("{}", serde_json::to_string_pretty(&results).unwrap_or_default());
    } else {
        for r in &results {
            let tops: Vec<String> = r["top"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|t| {
                            let label =
                                t["name"].as_str().map_or_else(|| t["class"].to_string(), String::from);
                            format!("{label} {:.3}", t["score"].as_f64().unwrap_or(0.0))
                        })
                        .collect()
                })
                .unwrap_or_default();
            println!("image {}: {}", r["image"], tops.join(", "));
        }
    }
    Ok(())
}
