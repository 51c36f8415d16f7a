//! Impact estimation (METHOD.md §2): for every output position of a conv, the mean over a
//! data set of Σ_t |∂L/∂V(y,x,t) · V(y,x,t)|, V the conv's output and L the per-image
//! softmax cross-entropy: a first-order estimate of the loss change from removing it.

use std::collections::HashMap;

use super::loss::softmax_cross_entropy;
use super::model::Model;
use super::tape::{Mode, Tensor};
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::network::{Network, Op};

/// The impact of every output position of each conv in `layers`, on `net` as it is
/// (perforated layers included: their V is the interpolated output), averaged over `data`
/// in batches of `batch`.
pub fn impact(
    net: &Network,
    layers: &[String],
    data: &Dataset,
    batch: usize,
) -> Result<HashMap<String, Vec<f64>>> {
    if data.is_empty() || batch == 0 {
        return Err(Error::InvalidArgument("impact needs images and a positive batch size".into()));
    }
    for name in layers {
        if !net.layers.iter().any(|l| &l.name == name && matches!(l.op, Op::Conv(_))) {
            return Err(Error::InvalidArgument(format!("'{name}' is not a conv layer of '{}'", net.name)));
        }
    }
    let model = Model::new(net.clone())?;
    let mut total: HashMap<String, Vec<f64>> = HashMap::new();
    let (c, h, w) = (data.channels, data.height, data.width);
    for start in (0..data.len()).step_by(batch) {
        let idx: Vec<usize> = (start..(start + batch).min(data.len())).collect();
        let (x, labels) = data.gather(&idx);
        let tape = model.forward(Tensor::new([idx.len(), c, h, w], x)?, Mode::Eval)?;
        let logits = &tape.value(model.logits_name()).expect("logits are on the tape").data;
        let classes = logits.len() / idx.len();
        // Per-image loss: gradient scale 1, not 1/batch.
        let (_, grad, _, _) = softmax_cross_entropy(logits, &labels, classes, 1.0);
        let grads = model.backward_params(&tape, grad, layers)?;
        for (name, v) in grads.impact {
            let acc = total.entry(name).or_insert_with(|| vec![0.0; v.len()]);
            acc.iter_mut().zip(&v).for_each(|(a, b)| *a += b);
        }
    }
    let n = data.len() as f64;
    total.values_mut().for_each(|v| v.iter_mut().for_each(|x| *x /= n));
    Ok(total)
}

/// Iterative-impact weights for a layer whose current mask keeps `kept` (sorted
/// positions): its impact where kept, −1 elsewhere, so that the top-N of the result is a
/// subset of `kept` for any N ≤ |kept|.
pub fn restrict_to_mask(impact: &[f64], kept: &[u32]) -> Vec<f64> {
    let mut w = vec![-1.0; impact.len()];
    for &p in kept {
        w[p as usize] = impact[p as usize].max(0.0);
    }
    w
}
