//! The paper's Figure-4-style comparison on one trained network: for every mask strategy
//! and baseline, test error against theoretical and measured CPU speedup at the requested
//! speedups, before and after fine-tuning, as rows (JSON, Markdown) and an SVG plot.

use serde::{Deserialize, Serialize};

use super::search::{greedy_search_with, measure_latency, Cost, SearchConfig, SearchStrategy};
use super::sgd::{evaluate, train, LrSchedule, TrainConfig};
use crate::data::Dataset;
use crate::error::Result;
use crate::network::Network;
use crate::plan::{Plan, PlanOptions};
use crate::strategy::Interpolation;

/// What to run.
#[derive(Clone, Debug)]
pub struct ExperimentConfig {
    /// Speedups to report (theoretical, network-wide).
    pub speedups: Vec<f64>,
    /// Methods: the mask strategies and the baselines.
    pub methods: Vec<Method>,
    /// Images of the training set used for the search's loss (taken from its end).
    pub search_images: usize,
    /// Images used for fine-tuning (from the start of the training set).
    pub finetune_images: usize,
    /// Fine-tuning epochs over those images.
    pub finetune_epochs: usize,
    /// Fine-tuning learning rate.
    pub finetune_lr: f32,
    /// Seed.
    pub seed: u64,
}

impl Default for ExperimentConfig {
    fn default() -> Self {
        ExperimentConfig {
            speedups: vec![2.0, 3.0, 4.0],
            methods: Method::all(),
            search_images: 1000,
            finetune_images: 5000,
            finetune_epochs: 1,
            finetune_lr: 1e-3,
            seed: 1,
        }
    }
}

/// A way to reach a speedup: a mask strategy searched greedily, or a baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Perforation with masks of this strategy (nearest-neighbour interpolation).
    Strategy(SearchStrategy),
    /// The stride baseline: grid masks, the kept positions form a smaller output map.
    Stride,
    /// Perforation with uniform masks whose skipped outputs are zeros.
    Zeros,
    /// The whole input downscaled (the network's resolution baseline).
    Resize,
}

impl Method {
    /// Every strategy, then the baselines.
    pub fn all() -> Vec<Method> {
        let mut v: Vec<Method> = SearchStrategy::ALL.into_iter().map(Method::Strategy).collect();
        v.extend([Method::Stride, Method::Zeros, Method::Resize]);
        v
    }

    /// The greedy search's mask strategy and fill for this method (`None` for the resize
    /// baseline, which searches nothing).
    pub fn search(self) -> Option<(SearchStrategy, Interpolation)> {
        match self {
            Method::Strategy(s) => Some((s, Interpolation::Nearest)),
            Method::Stride => Some((SearchStrategy::Grid, Interpolation::Stride)),
            Method::Zeros => Some((SearchStrategy::Uniform, Interpolation::Zeros)),
            Method::Resize => None,
        }
    }

    /// The name rows, logs and the CLI use.
    pub fn name(self) -> &'static str {
        match self {
            Method::Strategy(s) => s.name(),
            Method::Stride => "stride",
            Method::Zeros => "zeros",
            Method::Resize => "resize",
        }
    }
}

impl std::str::FromStr for Method {
    type Err = crate::error::Error;

    fn from_str(name: &str) -> Result<Self> {
        Method::all().into_iter().find(|m| m.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Method::all().iter().map(|m| m.name()).collect();
            crate::error::Error::InvalidArgument(format!(
                "unknown method '{name}'; known: {}",
                known.join(", ")
            ))
        })
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Methods that do not apply to a network, with the reason.
pub type Skipped = Vec<(String, String)>;

/// One point of the comparison.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExperimentRow {
    /// Method (strategy or baseline).
    pub method: String,
    /// Requested speedup.
    pub target: f64,
    /// Theoretical speedup reached.
    pub theoretical: f64,
    /// Measured CPU speedup (batch 64, best of 3).
    pub measured_cpu: f64,
    /// Test top-1 error of the dense network.
    pub dense_error: f64,
    /// Test top-1 error before fine-tuning.
    pub error_before: f64,
    /// Test top-1 error after fine-tuning.
    pub error_after: f64,
}

/// A network at a requested speedup, with its own (resized) fine-tuning and test sets
/// when the method changes the input size.
type Point = (f64, Network, Option<(Dataset, Dataset)>);

/// Runs the comparison for `net` (trained on `train_set`), reporting errors on `test`.
/// `progress` receives a line per finished point.
pub fn run_experiment(
    net: &Network,
    train_set: &Dataset,
    test: &Dataset,
    config: &ExperimentConfig,
    mut progress: impl FnMut(&ExperimentRow),
) -> Result<(Vec<ExperimentRow>, Skipped)> {
    let dense = net.dense();
    let dense_error = evaluate(&dense, test, 256)?.top1_error;
    let dense_time = measure_latency(&dense, 64, 3, None)?;
    let n = train_set.len();
    let search_data = train_set.subset(&(n.saturating_sub(config.search_images)..n).collect::<Vec<_>>());
    let tune_data = train_set.take(config.finetune_images);
    let tune = TrainConfig {
        epochs: config.finetune_epochs,
        batch_size: 64,
        lr: config.finetune_lr,
        schedule: LrSchedule::Constant,
        seed: config.seed,
        ..Default::default()
    };
    let max = config.speedups.iter().copied().fold(1.0, f64::max);
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    for &method in &config.methods {
        // The networks at each requested speedup, with the data they read.
        let mut points: Vec<Point> = Vec::new();
        if method == Method::Resize {
            for &s in &config.speedups {
                let resized = match dense.resized_for_speedup(s) {
                    Ok(r) => r,
                    // A classifier sized for the native input: the baseline does not apply.
                    Err(e) => {
                        skipped.push((method.name().to_string(), e.to_string()));
                        break;
                    }
                };
                let (h, w) = (resized.input.height, resized.input.width);
                let data = (tune_data.resized(h, w)?, test.resized(h, w)?);
                points.push((s, resized, Some(data)));
            }
        } else {
            let Some((strategy, interpolation)) = method.search() else { continue };
            let search = SearchConfig {
                target_speedup: max,
                strategy,
                interpolation,
                cost: Cost::Flops,
                batch: 250,
                seed: config.seed,
                max_steps: 500,
            };
            // The network at the first step past each target.
            let mut pending: Vec<f64> = config.speedups.clone();
            greedy_search_with(&dense, &search_data, &search, |step, net| {
                while let Some(&s) = pending.first().filter(|&&s| step.speedup >= s) {
                    points.push((s, net.clone(), None));
                    pending.remove(0);
                }
            })?;
            if points.is_empty() {
                skipped.push((
                    method.name().to_string(),
                    "the search found no step that compiles and saves cost".into(),
                ));
            }
        }
        for (target, mut candidate, data) in points {
            let (tune_set, test_set) = match &data {
                Some((t, e)) => (t, e),
                None => (&tune_data, test),
            };
            let theoretical = {
                let base = Plan::compile(&dense, 1, PlanOptions::default())?.flops() as f64;
                base / Plan::compile(&candidate, 1, PlanOptions::default())?.flops() as f64
            };
            let measured_cpu = dense_time / measure_latency(&candidate, 64, 3, None)?;
            let error_before = evaluate(&candidate, test_set, 256)?.top1_error;
            train(&mut candidate, tune_set, None, &tune, |_| {})?;
            let error_after = evaluate(&candidate, test_set, 256)?.top1_error;
            let row = ExperimentRow {
                method: method.name().to_string(),
                target,
                theoretical,
                measured_cpu,
                dense_error,
                error_before,
                error_after,
            };
            progress(&row);
            rows.push(row);
        }
    }
    Ok((rows, skipped))
}

/// The rows as a Markdown table (errors in percent), with the methods that did not apply.
pub fn experiment_table(rows: &[ExperimentRow], skipped: &[(String, String)]) -> String {
    let mut s = String::from(
        "| method | target | theoretical | measured CPU | dense error % | error before FT % | error after FT % | increase after FT (points) |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.0}x | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:+.2} |\n",
            r.method,
            r.target,
            r.theoretical,
            r.measured_cpu,
            100.0 * r.dense_error,
            100.0 * r.error_before,
            100.0 * r.error_after,
            100.0 * (r.error_after - r.dense_error)
        ));
    }
    for (method, why) in skipped {
        s.push_str(&format!("\n{method}: not applicable ({why})\n"));
    }
    s
}
