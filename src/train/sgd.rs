//! Mini-batch SGD with momentum and weight decay, a learning-rate schedule, data
//! augmentation, per-epoch evaluation and checkpoints; and evaluation of a network on a
//! data set through the inference plan.

use std::path::PathBuf;
use std::time::Instant;

use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

use super::loss::softmax_cross_entropy;
use super::model::Model;
use super::tape::{Mode, Tensor};
use crate::cpu::CpuExecutor;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::network::{Network, Op};
use crate::plan::{Plan, PlanOptions};
use crate::rng::hash2;

/// How the learning rate moves over the epochs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// Cosine decay from the base rate to 0 over all steps.
    Cosine,
    /// Multiply by `gamma` every `every` epochs.
    Step {
        /// Epochs between decays.
        every: usize,
        /// Decay factor.
        gamma: f32,
    },
}

/// Training settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Base learning rate.
    pub lr: f32,
    /// Momentum.
    pub momentum: f32,
    /// L2 weight decay (on weights, not on biases or BatchNorm parameters).
    pub weight_decay: f32,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// Random crop after zero padding by this many pixels (0: off).
    pub crop_padding: usize,
    /// Random horizontal flips.
    pub flip: bool,
    /// Seed of shuffling, augmentation and dropout.
    pub seed: u64,
    /// Save the network (JSON) here after every epoch.
    pub checkpoint: Option<PathBuf>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 10,
            batch_size: 64,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            schedule: LrSchedule::Cosine,
            crop_padding: 0,
            flip: false,
            seed: 1,
            checkpoint: None,
        }
    }
}

/// Loss and error of a network on a data set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Images evaluated.
    pub images: usize,
    /// Mean softmax cross-entropy.
    pub loss: f64,
    /// Top-1 error, in [0, 1].
    pub top1_error: f64,
    /// Top-5 error, in [0, 1].
    pub top5_error: f64,
}

/// One epoch's record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Learning rate at the epoch's start.
    pub lr: f32,
    /// Mean training loss over the epoch.
    pub train_loss: f64,
    /// Training top-1 error over the epoch (augmented images, dropout on).
    pub train_error: f64,
    /// Evaluation on the held-out set, when one was given.
    pub test: Option<Evaluation>,
    /// Wall-clock seconds of the training part.
    pub seconds: f64,
    /// Training throughput.
    pub images_per_second: f64,
}

/// Loss, top-1 and top-5 error of `net` on `data`, run through a compiled CPU plan in
/// batches of `batch`. A network ending in Softmax is scored from its probabilities,
/// otherwise its output is taken as logits.
pub fn evaluate(net: &Network, data: &Dataset, batch: usize) -> Result<Evaluation> {
    data.check_fits(net)?;
    if data.is_empty() || batch == 0 {
        return Err(Error::InvalidArgument("evaluation needs images and a positive batch size".into()));
    }
    let probabilities = net.layers.iter().any(|l| l.name == net.output && matches!(l.op, Op::Softmax));
    let mut plans: Vec<(usize, CpuExecutor)> = Vec::new();
    let (mut loss, mut top1, mut top5) = (0.0f64, 0usize, 0usize);
    for start in (0..data.len()).step_by(batch) {
        let idx: Vec<usize> = (start..(start + batch).min(data.len())).collect();
        let (x, labels) = data.gather(&idx);
        let b = idx.len();
        if !plans.iter().any(|(pb, _)| *pb == b) {
            let plan = Plan::compile(net, b, PlanOptions::default())?;
            plans.push((b, CpuExecutor::new(&plan)?));
        }
        let exec = &plans.iter().find(|(pb, _)| *pb == b).expect("compiled above").1;
        let x = ArrayD::from_shape_vec(IxDyn(&[b, data.channels, data.height, data.width]), x)
            .map_err(|e| Error::Data(e.to_string()))?;
        let out = exec.run(x.view())?;
        let out = out.as_slice().ok_or_else(|| Error::Data("non-contiguous output".into()))?;
        let classes = out.len() / b;
        if classes != data.classes {
            return Err(Error::Data(format!(
                "'{}' outputs {classes} classes but the data set has {}",
                net.name, data.classes
            )));
        }
        let logits: Vec<f32> =
            if probabilities { out.iter().map(|p| p.max(1e-30).ln()).collect() } else { out.to_vec() };
        let (l, _, t1, t5) = softmax_cross_entropy(&logits, &labels, classes, 0.0);
        loss += l * b as f64;
        top1 += t1;
        top5 += t5;
    }
    let n = data.len() as f64;
    Ok(Evaluation {
        images: data.len(),
        loss: loss / n,
        top1_error: 1.0 - top1 as f64 / n,
        top5_error: 1.0 - top5 as f64 / n,
    })
}

/// Random crop (after zero padding) and flip of one CHW image, seeded per image.
fn augment(img: &[f32], c: usize, h: usize, w: usize, pad: usize, flip: bool, seed: u64) -> Vec<f32> {
    let r = hash2(seed, 0xA5);
    #[allow(clippy::cast_possible_truncation)]
    let (dy, dx) = ((r % (2 * pad as u64 + 1)) as usize, ((r >> 20) % (2 * pad as u64 + 1)) as usize);
    let mirror = flip && (r >> 40) & 1 == 1;
    let mut out = vec![0.0f32; c * h * w];
    for ch in 0..c {
        for y in 0..h {
            let sy = (y + dy).wrapping_sub(pad);
            if sy >= h {
                continue;
            }
            for x in 0..w {
                let xs = if mirror { w - 1 - x } else { x };
                let sx = (xs + dx).wrapping_sub(pad);
                if sx < w {
                    out[(ch * h + y) * w + x] = img[(ch * h + sy) * w + sx];
                }
            }
        }
    }
    out
}

/// Trains `net` on `train` with SGD (masks of perforated convs stay fixed, so this is
/// also fine-tuning), evaluating on `test` after each epoch; `on_epoch` sees each record.
pub fn train(
    net: &mut Network,
    train: &Dataset,
    test: Option<&Dataset>,
    config: &TrainConfig,
    on_epoch: impl FnMut(&EpochLog),
) -> Result<Vec<EpochLog>> {
    train_with(net, train, test, config, on_epoch, |_, _, _| {})
}

/// [`train`], also calling `on_step(step, total_steps, loss)` after every mini-batch (for
/// progress bars).
pub fn train_with(
    net: &mut Network,
    train: &Dataset,
    test: Option<&Dataset>,
    config: &TrainConfig,
    mut on_epoch: impl FnMut(&EpochLog),
    mut on_step: impl FnMut(usize, usize, f64),
) -> Result<Vec<EpochLog>> {
    train.check_fits(net)?;
    if let Some(t) = test {
        t.check_fits(net)?;
    }
    if config.batch_size == 0 || config.epochs == 0 || config.lr.is_nan() || config.lr <= 0.0 {
        return Err(Error::InvalidArgument(
            "training needs epochs, a batch size and a learning rate above 0".into(),
        ));
    }
    let _pool = super::buffers::Release;
    let mut model = Model::new(net.clone())?;
    let names = model.param_names();
    let mut velocity: Vec<Vec<Vec<f32>>> =
        names.iter().map(|n| model.params_mut(n).iter().map(|p| vec![0.0; p.len()]).collect()).collect();
    // Weight decay applies to the weight tensor (index 0) of convs and linears only,
    // decided once per layer rather than per step.
    let decays: Vec<bool> = names
        .iter()
        .map(|n| !matches!(net.layers.iter().find(|l| &l.name == n).map(|l| &l.op), Some(Op::BatchNorm(_))))
        .collect();
    let steps_per_epoch = train.len().div_ceil(config.batch_size);
    let total_steps = (steps_per_epoch * config.epochs) as f64;
    let (c, h, w) = (train.channels, train.height, train.width);
    let mut logs = Vec::new();
    let mut step = 0usize;
    for epoch in 1..=config.epochs {
        let start = Instant::now();
        let order = train.shuffled(hash2(config.seed, epoch as u64));
        let (mut loss_sum, mut hits) = (0.0f64, 0usize);
        let epoch_lr = lr_at(config, epoch, step as f64 / total_steps);
        for batch in order.chunks(config.batch_size) {
            let lr = lr_at(config, epoch, step as f64 / total_steps);
            let mut x = Vec::with_capacity(batch.len() * c * h * w);
            for &i in batch {
                if config.crop_padding > 0 || config.flip {
                    let seed = hash2(config.seed ^ (epoch as u64) << 32, i as u64);
                    x.extend(augment(train.image(i), c, h, w, config.crop_padding, config.flip, seed));
                } else {
                    x.extend_from_slice(train.image(i));
                }
            }
            let labels: Vec<u32> = batch.iter().map(|&i| train.labels[i]).collect();
            let tape = model.forward(
                Tensor::new([batch.len(), c, h, w], x)?,
                Mode::Train { seed: hash2(config.seed, step as u64) },
            )?;
            let logits = &tape.value(model.logits_name()).expect("logits are on the tape").data;
            let classes = logits.len() / batch.len();
            if classes != train.classes {
                return Err(Error::Data(format!(
                    "'{}' outputs {classes} classes but the data set has {}",
                    net.name, train.classes
                )));
            }
            #[allow(clippy::cast_precision_loss)]
            let (loss, grad, t1, _) =
                softmax_cross_entropy(logits, &labels, classes, 1.0 / batch.len() as f32);
            if !loss.is_finite() {
                return Err(Error::InvalidArgument(format!(
                    "training diverged at epoch {epoch}, step {step} (loss {loss}); lower the learning rate"
                )));
            }
            loss_sum += loss * batch.len() as f64;
            hits += t1;
            let grads = model.backward_params(&tape, grad, &[])?;
            model.update_bn_stats(&tape, 0.1);
            for ((name, vel), &decays) in names.iter().zip(velocity.iter_mut()).zip(&decays) {
                let Some(g) = grads.params.get(name) else { continue };
                for (t, (p, v)) in model.params_mut(name).into_iter().zip(vel.iter_mut()).enumerate() {
                    let decay = if t == 0 && decays { config.weight_decay } else { 0.0 };
                    for ((p, v), g) in p.iter_mut().zip(v.iter_mut()).zip(&g[t]) {
                        *v = config.momentum * *v + g + decay * *p;
                        *p -= lr * *v;
                    }
                }
            }
            step += 1;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            on_step(step, total_steps as usize, loss);
        }
        let seconds = start.elapsed().as_secs_f64();
        let eval = match test {
            Some(t) => Some(evaluate(model.network(), t, 256)?),
            None => None,
        };
        let n = train.len() as f64;
        let log = EpochLog {
            epoch,
            lr: epoch_lr,
            train_loss: loss_sum / n,
            train_error: 1.0 - hits as f64 / n,
            test: eval,
            seconds,
            images_per_second: n / seconds,
        };
        on_epoch(&log);
        logs.push(log);
        if let Some(path) = &config.checkpoint {
            std::fs::write(path, model.network().to_json()?)
                .map_err(|e| Error::Data(format!("{}: cannot write checkpoint: {e}", path.display())))?;
        }
    }
    *net = model.into_network();
    Ok(logs)
}

fn lr_at(config: &TrainConfig, epoch: usize, progress: f64) -> f32 {
    match config.schedule {
        LrSchedule::Constant => config.lr,
        #[allow(clippy::cast_possible_truncation)]
        LrSchedule::Cosine => {
            (f64::from(config.lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())) as f32
        }
        LrSchedule::Step { every, gamma } => {
            #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
            let k = ((epoch - 1) / every.max(1)) as i32;
            config.lr * gamma.powi(k)
        }
    }
}
