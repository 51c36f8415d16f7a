//! What a training forward pass records for its backward pass, and what the backward
//! returns: tensors, the tape, gradients.

use std::collections::HashMap;

use super::batch_norm::BnBatch;
use super::buffers;
use crate::error::{Error, Result};

/// An activation `[batch, channels, height, width]` (flat tensors have height = width = 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// `[B, C, H, W]`.
    pub shape: [usize; 4],
    /// Values, NCHW.
    pub data: Vec<f32>,
}

impl Tensor {
    /// A tensor from its shape and data; checks the length.
    pub fn new(shape: [usize; 4], data: Vec<f32>) -> Result<Self> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(Error::shape(
                format!("tensor {shape:?}"),
                shape.iter().product::<usize>(),
                data.len(),
            ));
        }
        Ok(Tensor { shape, data })
    }

    pub(super) fn plane(&self) -> usize {
        self.shape[2] * self.shape[3]
    }
}

/// Training mode (batch statistics in BatchNorm, dropout active, seeded by `seed`) or
/// evaluation mode (running statistics, dropout off).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Training, with this step's dropout seed.
    Train {
        /// Seed of this step's dropout masks.
        seed: u64,
    },
    /// Evaluation.
    Eval,
}

/// What a layer's forward keeps besides its output.
pub(super) enum Aux {
    None,
    Bn(Option<BnBatch>),
    Dropout(Vec<f32>),
}

/// What a forward pass keeps for the backward pass: every layer's output and its
/// auxiliary data (batch statistics, dropout masks).
pub struct Tape {
    pub(super) values: HashMap<String, Tensor>,
    pub(super) aux: HashMap<String, Aux>,
    /// A layer whose ReLU was applied in its own output pass (see `Model`'s `fused_relu`)
    /// has no tensor of its own: it reads the ReLU's.
    pub(super) aliases: HashMap<String, String>,
}

impl Drop for Tape {
    /// The activations go back to the buffer pool for the next step.
    fn drop(&mut self) {
        for (_, t) in self.values.drain() {
            buffers::recycle(t.data);
        }
    }
}

impl Tape {
    /// The output of layer `name` (or the input). A conv or BatchNorm whose only reader is
    /// a ReLU shares that ReLU's tensor (the ReLU ran in its output pass), so its value
    /// here is after the ReLU.
    pub fn value(&self, name: &str) -> Option<&Tensor> {
        self.values.get(self.aliases.get(name).map_or(name, String::as_str))
    }

    /// [`Tape::value`] of a layer the pass recorded.
    #[track_caller]
    pub(super) fn at(&self, name: &str) -> &Tensor {
        self.value(name).expect("every layer's value is on the tape")
    }

    /// The batch statistics a training-mode BatchNorm layer saw: `(mean, biased var)`.
    pub fn bn_batch_stats(&self, name: &str) -> Option<(&[f32], &[f32])> {
        match self.aux.get(name) {
            Some(Aux::Bn(Some(b))) => Some((&b.mean, &b.var)),
            _ => None,
        }
    }
}

/// Gradients of one backward pass.
#[derive(Clone, Debug, Default)]
pub struct Grads {
    /// Per layer with parameters, in [`super::Model::param_names`] order: conv/linear `[weights,
    /// bias]` (bias only when present), BatchNorm `[scale, shift]`.
    pub params: HashMap<String, Vec<Vec<f32>>>,
    /// Gradient of the network input.
    pub input: Vec<f32>,
    /// Per requested conv: Σ over the batch and channels of |∂L/∂V · V| per output
    /// position (METHOD.md §2, impact), V the conv's output.
    pub impact: HashMap<String, Vec<f64>>,
}
