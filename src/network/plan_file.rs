//! Perforation plans on disk: which conv layers are perforated and exactly how, tied to a
//! model by a hash of its weights, so that model + plan reproduce the same outputs.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Network, Op, Perforation};
use crate::error::{Error, Result};
use crate::plan::{Plan, PlanOptions, StepOp};
use crate::strategy::{Interpolation, MaskStrategy};

/// The plan file format this build writes and reads.
pub const PLAN_VERSION: u32 = 1;

/// One perforated conv layer of a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerPlan {
    /// Layer name.
    pub layer: String,
    /// How the mask was chosen (`uniform`, or another strategy's name).
    pub strategy: String,
    /// Kept fraction q.
    pub kept_fraction: f64,
    /// Seed of the strategy and of the interpolation map's tie-breaks.
    pub seed: u64,
    /// Output map `[height, width]` the positions index.
    pub output_size: [usize; 2],
    /// The kept positions `y·W' + x`, sorted.
    pub positions: Vec<u32>,
    /// How skipped positions are filled (`nearest` when absent).
    #[serde(default)]
    pub interpolation: Interpolation,
}

/// A saved perforation configuration (JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PerforationPlan {
    /// File format version ([`PLAN_VERSION`]).
    pub version: u32,
    /// [`weights_hash`] of the model the plan was made for.
    pub model_hash: String,
    /// The perforated layers.
    pub layers: Vec<LayerPlan>,
}

/// FNV-1a 64 of the layer names, kinds and every weight of the network (perforation
/// settings excluded), as 16 hex digits.
pub fn weights_hash(net: &Network) -> String {
    fn feed(h: &mut u64, bytes: &[u8]) {
        for &b in bytes {
            *h = (*h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for layer in &net.layers {
        feed(&mut h, layer.name.as_bytes());
        feed(&mut h, layer.op.kind().as_bytes());
        let tensors: Vec<&[f32]> = match &layer.op {
            Op::Conv(c) => vec![&c.weights, c.bias.as_deref().unwrap_or(&[])],
            Op::Linear(l) => vec![&l.weights, l.bias.as_deref().unwrap_or(&[])],
            Op::BatchNorm(b) => vec![&b.scale, &b.shift, &b.mean, &b.var],
            _ => vec![],
        };
        for v in tensors.into_iter().flatten() {
            feed(&mut h, &v.to_le_bytes());
        }
    }
    format!("{h:016x}")
}

impl PerforationPlan {
    /// The plan of `net`'s current perforation, with every mask written out.
    pub fn from_network(net: &Network) -> Result<Self> {
        let plan = Plan::compile(net, 1, PlanOptions { fuse: false, ..Default::default() })?;
        let mut layers = Vec::new();
        for l in &net.layers {
            let Op::Conv(c) = &l.op else { continue };
            let Some(p) = &c.perforation else { continue };
            let step = plan.steps().iter().find(|s| s.layer == l.name && matches!(s.op, StepOp::Conv { .. }));
            let Some(StepOp::Conv { layer, .. }) = step.map(|s| &s.op) else { continue };
            let mask = layer.mask();
            layers.push(LayerPlan {
                layer: l.name.clone(),
                strategy: p.strategy.name().into(),
                kept_fraction: p.kept_fraction,
                seed: p.seed,
                output_size: [mask.height(), mask.width()],
                positions: mask.positions().to_vec(),
                interpolation: p.interpolation,
            });
        }
        Ok(PerforationPlan { version: PLAN_VERSION, model_hash: weights_hash(net), layers })
    }

    /// Applies the plan to `net` (which must be the model it was made for): every listed
    /// layer gets exactly the recorded mask; other layers are left unperforated.
    pub fn apply(&self, net: &mut Network) -> Result<()> {
        if self.version != PLAN_VERSION {
            return Err(Error::Model(format!(
                "perforation plan version {} is not supported (this build reads version {PLAN_VERSION})",
                self.version
            )));
        }
        let hash = weights_hash(net);
        if hash != self.model_hash {
            return Err(Error::Model(format!(
                "this perforation plan was made for a model with weights hash {}, but '{}' has {hash}",
                self.model_hash, net.name
            )));
        }
        net.clear_perforation();
        for l in &self.layers {
            let conv = net.conv_mut(&l.layer)?;
            // The positions are the mask; the strategy is kept for the record (a weights
            // strategy's weights are not stored, its positions are).
            let strategy = match l.strategy.as_str() {
                "grid" => MaskStrategy::Grid,
                "pooling_structure" => MaskStrategy::PoolingStructure,
                "weights" => MaskStrategy::Weights { weights: vec![] },
                "impact" => MaskStrategy::Impact { weights: vec![] },
                "iterative_impact" => MaskStrategy::IterativeImpact { weights: vec![] },
                _ => MaskStrategy::Uniform,
            };
            let positions = Some(l.positions.clone());
            let base = Perforation::uniform(l.kept_fraction, l.seed);
            conv.perforation =
                Some(Perforation { positions, strategy, interpolation: l.interpolation, ..base });
        }
        // Check every mask against its layer now rather than at the first compile.
        Plan::compile(net, 1, PlanOptions::default()).map(|_| ())
    }

    /// The plan as JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| Error::Model(format!("serialising the plan: {e}")))
    }

    /// A plan from JSON.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Model(format!("not a perforation plan: {e}")))
    }

    /// Writes the plan to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_json()?)
            .map_err(|e| Error::Model(format!("{}: cannot write: {e}", path.display())))
    }

    /// Reads a plan from `path`.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Model(format!("{}: cannot read: {e}", path.display())))?;
        Self::from_json(&text).map_err(|e| Error::Model(format!("{}: {e}", path.display())))
    }
}
