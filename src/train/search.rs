//! Greedy network-wide perforation (METHOD.md §3): starting dense, each step moves the one
//! conv layer whose next rung on the kept-fraction ladder costs the least loss per unit of
//! cost saved, until the network reaches the target speedup.

use std::collections::BTreeMap;
use std::time::Instant;

use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

use super::impact::{impact, restrict_to_mask};
use super::sgd::evaluate;
use crate::cpu::CpuExecutor;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuExecutor};
use crate::network::{Network, Op, Perforation, PerforationPlan};
use crate::plan::{Plan, PlanOptions};
use crate::rng::SeededRng;
use crate::strategy::{Interpolation, MaskStrategy};

/// The per-layer kept-fraction ladder: 1, 1/1.5, 1/2, 1/3, …, 1/20.
pub fn ladder() -> Vec<f64> {
    let mut q = vec![1.0, 1.0 / 1.5];
    q.extend((2..=20).map(|d| 1.0 / f64::from(d)));
    q
}

/// Which mask each candidate layer gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchStrategy {
    /// Seeded uniform-random masks.
    Uniform,
    /// Fractional-max-pooling grids.
    Grid,
    /// Window counts of the following pooling layer.
    PoolingStructure,
    /// Impact on the unperforated network, computed once.
    Impact,
    /// Impact recomputed on the current network after every step; masks nest.
    IterativeImpact,
}

impl SearchStrategy {
    /// Every strategy, in the order the paper lists them.
    pub const ALL: [SearchStrategy; 5] = [
        SearchStrategy::Uniform,
        SearchStrategy::Grid,
        SearchStrategy::PoolingStructure,
        SearchStrategy::Impact,
        SearchStrategy::IterativeImpact,
    ];

    /// The name the CLI and logs use.
    pub fn name(self) -> &'static str {
        match self {
            SearchStrategy::Uniform => "uniform",
            SearchStrategy::Grid => "grid",
            SearchStrategy::PoolingStructure => "pooling_structure",
            SearchStrategy::Impact => "impact",
            SearchStrategy::IterativeImpact => "iterative_impact",
        }
    }

    /// Parses a strategy name as the CLI and logs spell it.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
            Error::InvalidArgument(format!("unknown strategy '{name}'; known: {}", known.join(", ")))
        })
    }
}

impl std::str::FromStr for SearchStrategy {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        Self::parse(name)
    }
}

impl std::fmt::Display for SearchStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A cost function supplied by the caller (see [`Cost::Custom`]).
pub type CostFn = std::sync::Arc<dyn Fn(&Network) -> Result<f64> + Send + Sync>;

/// What a candidate costs.
#[derive(Clone)]
pub enum Cost {
    /// Theoretical FLOPs of the compiled plan.
    Flops,
    /// Measured latency of a batch on the CPU executor (best of a few runs).
    Cpu {
        /// Images per timed batch.
        batch: usize,
    },
    /// Measured latency of a batch on a GPU executor.
    Gpu {
        /// The device.
        context: GpuContext,
        /// Images per timed batch.
        batch: usize,
    },
    /// Any cost the caller computes: a latency model, a cost table measured once, or a
    /// deterministic stand-in for measured latency in tests (measured costs follow the
    /// machine's load, so a test must not depend on them).
    Custom(CostFn),
}

impl std::fmt::Debug for Cost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cost::Flops => f.write_str("Flops"),
            Cost::Cpu { batch } => f.debug_struct("Cpu").field("batch", batch).finish(),
            Cost::Gpu { batch, .. } => f.debug_struct("Gpu").field("batch", batch).finish_non_exhaustive(),
            Cost::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl Cost {
    /// The cost of `net`: FLOPs, or seconds per batch (best of 3 timed runs).
    pub fn of(&self, net: &Network) -> Result<f64> {
        match self {
            Cost::Flops => Ok(flops(&Plan::compile(net, 1, PlanOptions::default())?)),
            Cost::Cpu { batch } => measure_latency(net, *batch, 3, None),
            Cost::Gpu { context, batch } => measure_latency(net, *batch, 3, Some(context)),
            Cost::Custom(f) => match f(net)? {
                c if c.is_finite() && c > 0.0 => Ok(c),
                c => {
                    Err(Error::InvalidArgument(format!("a custom cost must be finite and positive, got {c}")))
                }
            },
        }
    }
}

/// [`Cost::Flops`] of a compiled batch-1 plan.
#[allow(clippy::cast_precision_loss)]
fn flops(plan: &Plan) -> f64 {
    plan.flops() as f64
}

/// Seconds per batch of `batch` seeded random images through `net`: the executor (CPU, or
/// GPU when `gpu` is given) is built once, run once to warm up, then the best of `runs`
/// timed runs is returned.
pub fn measure_latency(net: &Network, batch: usize, runs: usize, gpu: Option<&GpuContext>) -> Result<f64> {
    let plan = Plan::compile(net, batch, PlanOptions::default())?;
    let shape = plan.input_shape();
    let x =
        ArrayD::from_shape_vec(IxDyn(&shape), SeededRng::new(3).vec_f32(shape.iter().product(), -1.0, 1.0))
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let best_of = |run: &dyn Fn() -> Result<()>| -> Result<f64> {
        run()?;
        let mut best = f64::INFINITY;
        for _ in 0..runs.max(1) {
            let start = Instant::now();
            run()?;
            best = best.min(start.elapsed().as_secs_f64());
        }
        Ok(best)
    };
    match gpu {
        None => {
            let exec = CpuExecutor::new(&plan)?;
            best_of(&|| exec.run(x.view()).map(|_| ()))
        }
        Some(ctx) => {
            let exec = GpuExecutor::new(ctx, &plan)?;
            best_of(&|| exec.execute(x.view()).map(|_| ()))
        }
    }
}

/// Settings of a greedy search.
#[derive(Clone, Debug)]
pub struct SearchConfig {
    /// Stop once dense cost / cost reaches this.
    pub target_speedup: f64,
    /// Mask strategy.
    pub strategy: SearchStrategy,
    /// How skipped positions are filled (`Stride` is the stride baseline).
    pub interpolation: Interpolation,
    /// Cost model.
    pub cost: Cost,
    /// Images per evaluation batch.
    pub batch: usize,
    /// Seed of the masks.
    pub seed: u64,
    /// Upper bound on steps.
    pub max_steps: usize,
}

/// One step of the search log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchStep {
    /// Step number (0: the dense network).
    pub step: usize,
    /// The layer moved one rung this step (empty at step 0).
    pub layer: String,
    /// Kept fraction of every candidate layer after the step.
    pub kept_fractions: BTreeMap<String, f64>,
    /// Cost after the step (FLOPs or seconds per batch).
    pub cost: f64,
    /// Dense cost / cost.
    pub speedup: f64,
    /// Loss on the search data.
    pub loss: f64,
    /// Top-1 error on the search data.
    pub error: f64,
    /// (loss increase) / (cost saved) of the chosen candidate.
    pub score: f64,
}

/// The greedy search on `net` (dense or already perforated layers are reset), scoring
/// loss on `data` (a held-out part of the training set). Returns the perforated network
/// and the per-step log; the network's perforation can be saved with
/// [`PerforationPlan::from_network`].
pub fn greedy_search(
    net: &Network,
    data: &Dataset,
    config: &SearchConfig,
) -> Result<(Network, Vec<SearchStep>)> {
    greedy_search_with(net, data, config, |_, _| {})
}

/// [`greedy_search`], calling `on_step` with every step and the network it produced.
pub fn greedy_search_with(
    net: &Network,
    data: &Dataset,
    config: &SearchConfig,
    mut on_step: impl FnMut(&SearchStep, &Network),
) -> Result<(Network, Vec<SearchStep>)> {
    if config.target_speedup.is_nan() || config.target_speedup < 1.0 {
        return Err(Error::InvalidArgument(format!(
            "target speedup must be at least 1, got {}",
            config.target_speedup
        )));
    }
    let base = net.dense();
    let layers = base.eligible_convs()?;
    if layers.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "'{}' has no conv layer that can be perforated",
            net.name
        )));
    }
    let rungs = ladder();
    let mut rung: BTreeMap<String, usize> = layers.iter().map(|l| (l.clone(), 0)).collect();
    let once_impact = match config.strategy {
        SearchStrategy::Impact => Some(impact(&base, &layers, data, config.batch)?),
        _ => None,
    };
    let mut current = base.clone();
    let t_dense = config.cost.of(&base)?;
    let first = evaluate(&base, data, config.batch)?;
    let (mut t0, mut e0) = (t_dense, first.loss);
    let fractions =
        |rung: &BTreeMap<String, usize>| rung.iter().map(|(l, &r)| (l.clone(), rungs[r])).collect();
    let mut log = vec![SearchStep {
        step: 0,
        layer: String::new(),
        kept_fractions: fractions(&rung),
        cost: t0,
        speedup: 1.0,
        loss: e0,
        error: first.top1_error,
        score: 0.0,
    }];
    let mut step = 0;
    while t_dense / t0 < config.target_speedup && step < config.max_steps {
        step += 1;
        let iterative = match config.strategy {
            SearchStrategy::IterativeImpact => Some(impact(&current, &layers, data, config.batch)?),
            _ => None,
        };
        // The current masks: only iterative impact restricts its weights to them.
        let masks = match config.strategy {
            SearchStrategy::IterativeImpact => Some(PerforationPlan::from_network(&current)?),
            _ => None,
        };
        // Pointwise convs that inherit their compact input's map are not candidates while
        // they do (METHOD.md §3).
        let inheriting = current.inheriting_pointwise()?;
        let mut best: Option<(f64, String, Network, f64, f64, f64)> = None;
        for layer in &layers {
            let r = rung[layer];
            if r + 1 >= rungs.len() || inheriting.contains(layer) {
                continue;
            }
            let q = rungs[r + 1];
            let strategy = match config.strategy {
                SearchStrategy::Uniform => MaskStrategy::Uniform,
                SearchStrategy::Grid => MaskStrategy::Grid,
                SearchStrategy::PoolingStructure => MaskStrategy::PoolingStructure,
                SearchStrategy::Impact => {
                    MaskStrategy::Impact { weights: once_impact.as_ref().expect("computed")[layer].clone() }
                }
                SearchStrategy::IterativeImpact => {
                    let imp = &iterative.as_ref().expect("computed")[layer];
                    let kept = masks
                        .as_ref()
                        .and_then(|m| m.layers.iter().find(|l| &l.layer == layer))
                        .map(|l| l.positions.clone());
                    let weights = match kept {
                        Some(k) => restrict_to_mask(imp, &k),
                        None => imp.clone(),
                    };
                    MaskStrategy::IterativeImpact { weights }
                }
            };
            let mut candidate = current.clone();
            if let Some(Op::Conv(c)) =
                candidate.layers.iter_mut().find(|l| &l.name == layer).map(|l| &mut l.op)
            {
                let seed =
                    config.seed.wrapping_add(layers.iter().position(|l| l == layer).unwrap_or(0) as u64);
                c.perforation = Some(Perforation {
                    strategy,
                    interpolation: config.interpolation,
                    ..Perforation::uniform(q, seed)
                });
            }
            // A candidate that does not compile (a stride baseline shrinking the input of a
            // fully connected layer) or does not save cost is never chosen; a failure past
            // compiling (a lost GPU, out of memory, a broken custom cost) ends the search
            // with its error rather than passing for "no candidate left".
            let Ok(plan) = Plan::compile(&candidate, 1, PlanOptions::default()) else { continue };
            let t = match config.cost {
                Cost::Flops => flops(&plan),
                _ => config.cost.of(&candidate)?,
            };
            if t >= t0 {
                continue;
            }
            let eval = evaluate(&candidate, data, config.batch)?;
            let score = (eval.loss - e0) / (t0 - t);
            if best.as_ref().is_none_or(|b| score < b.0) {
                best = Some((score, layer.clone(), candidate, t, eval.loss, eval.top1_error));
            }
        }
        let Some((score, layer, candidate, t, e, err)) = best else { break };
        *rung.get_mut(&layer).expect("candidate layer") += 1;
        current = candidate;
        (t0, e0) = (t, e);
        log.push(SearchStep {
            step,
            layer,
            kept_fractions: fractions(&rung),
            cost: t,
            speedup: t_dense / t,
            loss: e,
            error: err,
            score,
        });
        on_step(log.last().expect("just pushed"), &current);
    }
    Ok((current, log))
}
