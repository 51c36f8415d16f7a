//! The training forward of the layers without parameters: the steps the plan lowers them
//! to (`plan::lower_layer`), run on the CPU executor's kernels (`cpu::step::run_op`). Their
//! forward pass is written once, for inference and training alike; `train/` keeps only
//! their backward pass.

use std::collections::HashMap;

use super::buffers;
use super::tape::Tensor;
use crate::cpu::step::run_op;
use crate::error::{Error, Result};
use crate::plan::{LayerSteps, TensorId};

/// Runs `lowered` (layer `layer`) on the tape's `values`; the layer's output.
pub(crate) fn run(lowered: &LayerSteps, layer: &str, values: &HashMap<String, Tensor>) -> Result<Tensor> {
    let inputs = lowered.inputs.len();
    let mut written: Vec<Option<Vec<f32>>> = (0..lowered.tensors.len()).map(|_| None).collect();
    for step in &lowered.steps {
        let out = &lowered.tensors[step.output];
        // Every kernel writes its whole output (the executor reuses buffers as well).
        let mut dst = buffers::scratch(out.len());
        {
            let data = |t: TensorId| -> &[f32] {
                let info = &lowered.tensors[t];
                let s = info.storage;
                let all = if s < inputs {
                    &values[&lowered.inputs[s]].data
                } else {
                    written[s].as_ref().expect("written")
                };
                &all[..info.len()]
            };
            let arg = |k: usize| data(step.inputs[k]);
            if !run_op(&step.op, step.inputs.len(), &arg, out.batch, &mut dst, true) {
                return Err(Error::InvalidArgument(format!(
                    "layer '{layer}': its training forward lowered to a {} step",
                    step.op.kernel()
                )));
            }
        }
        written[step.output] = Some(dst);
    }
    let out = &lowered.tensors[lowered.output];
    let s = out.storage;
    let data = if s < inputs {
        buffers::copied(&values[&lowered.inputs[s]].data)
    } else {
        written[s].take().expect("the output is written")
    };
    for v in written.into_iter().flatten() {
        buffers::recycle(v);
    }
    Ok(Tensor { shape: [out.batch, out.channels, out.height, out.width], data })
}
