//! One layer lowered on its own, for dense inputs of given shapes: the same steps, params
//! and checks as in a compiled plan (`Builder::lower`), without fusion. The training
//! forward runs these steps on the executor's kernels (`cpu::step::run_op`), so a layer
//! without parameters has one forward implementation for inference and training.

use std::collections::HashMap;

use super::compile::Builder;
use super::graph::layer_error;
use super::{Form, PlanOptions, Step, StepOp, TensorId, TensorInfo};
use crate::error::{Error, Result};
use crate::network::{Layer, Network};

/// The steps of one layer (see [`lower_layer`]).
#[derive(Clone, Debug)]
pub(crate) struct LayerSteps {
    /// The layer's distinct inputs (tensors `0..inputs.len()`, in this order), then the
    /// tensors its steps write.
    pub tensors: Vec<TensorInfo>,
    /// The names of the distinct inputs.
    pub inputs: Vec<String>,
    /// The steps, in order (none when the layer is a view of its input).
    pub steps: Vec<Step>,
    /// The layer's output: a tensor a step writes, or (a view) one of the inputs.
    pub output: TensorId,
}

impl LayerSteps {
    /// The one step `layer` lowered to (an error naming the layer if it lowered to
    /// several, or to none).
    pub(crate) fn single_op(&self, layer: &Layer) -> Result<&StepOp> {
        match self.steps.as_slice() {
            [only] => Ok(&only.op),
            steps => {
                Err(layer_error(layer, format!("lowered to {} steps where one was expected", steps.len())))
            }
        }
    }
}

/// Lowers `layer` of `net` for `batch` images whose inputs are dense, `shape(name)`
/// giving each input's `[C, H, W]`. Fusion is off: the steps compute the layer alone.
pub(crate) fn lower_layer(
    net: &Network,
    layer: &Layer,
    batch: usize,
    shape: impl Fn(&str) -> Option<[usize; 3]>,
) -> Result<LayerSteps> {
    let options = PlanOptions { reuse_buffers: false, fuse: false, ..PlanOptions::default() };
    let mut b = Builder::new(net, batch, options, HashMap::new());
    let mut inputs = Vec::new();
    for name in &layer.inputs {
        if b.names.contains_key(name) {
            continue;
        }
        let [c, h, w] = shape(name).ok_or_else(|| {
            Error::InvalidArgument(format!("layer '{}' reads '{name}', which has no value", layer.name))
        })?;
        let t = b.tensor(name, c, h, w, Form::Dense);
        b.names.insert(name.clone(), t);
        inputs.push(name.clone());
    }
    b.lower(layer)?;
    let output = b.names[layer.name.as_str()];
    Ok(LayerSteps { tensors: b.tensors, inputs, steps: b.steps, output })
}
