//! The perforation report: per conv layer, its kept fraction, strategy, interpolation and
//! FLOPs, and the network's theoretical speedup, as a table or JSON.

use serde::Serialize;

use super::{Network, Op};
use crate::error::{Error, Result};
use crate::plan::{Plan, PlanOptions, StepOp};

/// One conv layer of a [`PerforationReport`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerReport {
    /// Layer name.
    pub layer: String,
    /// Output map `[height, width]`.
    pub output_size: [usize; 2],
    /// Kept fraction actually realised (N / H'W').
    pub kept_fraction: f64,
    /// Mask strategy (`dense` when the layer is not perforated).
    pub strategy: String,
    /// Interpolation of skipped positions.
    pub interpolation: String,
    /// FLOPs of the dense layer for one image.
    pub dense_flops: u64,
    /// FLOPs with the mask for one image.
    pub flops: u64,
    /// `dense_flops / flops`.
    pub speedup: f64,
}

/// Per-layer perforation and the network's theoretical speedup (cost model of
/// METHOD.md §1, all layers counted).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PerforationReport {
    /// Network name.
    pub network: String,
    /// One row per conv layer (fully connected layers are not listed).
    pub layers: Vec<LayerReport>,
    /// FLOPs of the dense network for one image.
    pub dense_flops: u64,
    /// FLOPs of the perforated network for one image.
    pub flops: u64,
    /// `dense_flops / flops`.
    pub theoretical_speedup: f64,
}

impl PerforationReport {
    /// Reports `net`'s current perforation.
    pub fn new(net: &Network) -> Result<Self> {
        // The same plans (fusion on) as Network::theoretical_speedup, so totals agree.
        let options = PlanOptions::default();
        let plan = Plan::compile(net, 1, options)?;
        let dense = Plan::compile(&net.dense(), 1, options)?;
        let mut layers = Vec::new();
        for l in &net.layers {
            let Op::Conv(c) = &l.op else { continue };
            let conv_of = |p: &Plan| {
                p.steps().iter().find_map(|s| match &s.op {
                    StepOp::Conv { layer, .. } if s.layer == l.name => Some(layer.clone()),
                    _ => None,
                })
            };
            let (Some(conv), Some(dense_conv)) = (conv_of(&plan), conv_of(&dense)) else { continue };
            let strategy = c.perforation.as_ref().map_or("dense", |p| {
                if p.positions.is_some() {
                    "explicit"
                } else {
                    p.strategy.name()
                }
            });
            let mask = conv.mask();
            layers.push(LayerReport {
                layer: l.name.clone(),
                output_size: [mask.height(), mask.width()],
                kept_fraction: mask.kept_fraction(),
                strategy: strategy.to_string(),
                interpolation: c.perforation.as_ref().map_or("-", |p| p.interpolation.name()).into(),
                dense_flops: dense_conv.flops(),
                flops: conv.flops(),
                speedup: conv.theoretical_speedup(),
            });
        }
        let (dense_flops, flops) = (dense.flops(), plan.flops());
        Ok(PerforationReport {
            network: net.name.clone(),
            layers,
            dense_flops,
            flops,
            theoretical_speedup: dense_flops as f64 / flops as f64,
        })
    }

    /// A human-readable table.
    pub fn to_table(&self) -> String {
        use std::fmt::Write;
        let mut t = String::new();
        let _ = writeln!(
            t,
            "{:<24} {:>9} {:>6} {:<18} {:<13} {:>12} {:>12} {:>8}",
            "layer", "map", "kept", "strategy", "interpolation", "dense MFLOP", "MFLOP", "speedup"
        );
        for r in &self.layers {
            let _ = writeln!(
                t,
                "{:<24} {:>9} {:>6.3} {:<18} {:<13} {:>12.1} {:>12.1} {:>8.2}",
                r.layer,
                format!("{}x{}", r.output_size[0], r.output_size[1]),
                r.kept_fraction,
                r.strategy,
                r.interpolation,
                r.dense_flops as f64 / 1e6,
                r.flops as f64 / 1e6,
                r.speedup
            );
        }
        let _ = writeln!(
            t,
            "network '{}': {:.1} -> {:.1} MFLOP per image, theoretical speedup {:.2}",
            self.network,
            self.dense_flops as f64 / 1e6,
            self.flops as f64 / 1e6,
            self.theoretical_speedup
        );
        t
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Model(format!("serialising the report: {e}")))
    }
}
