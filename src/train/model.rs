//! A network prepared for training: the layer order and every perforated conv's mask and
//! map resolved once; a forward pass that keeps what the backward pass needs (a tape), and
//! the backward pass itself, on the CPU with rayon.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rayon::prelude::*;

use super::batch_norm::{self, Incoming};
use super::buffers;
use super::conv::{self, Sampling};
use super::layers;
use super::lowered;
use super::pending::Pending;
use super::tape::{Aux, Grads, Mode, Tape, Tensor};
use super::tensor_ops::{softmax_backward, tensor_backward};
use crate::error::{Error, Result};
use crate::geometry::ConvGeometry;
use crate::network::{broadcast_mode, Conv, Network, Op, Reduce, Resample};
use crate::plan::{layer_error, lower_layer, order, LayerSteps, Plan, PlanOptions, Step, StepOp};
use crate::rng::hash2;
use crate::strategy::Interpolation;

/// A network ready for training and gradient computation.
pub struct Model {
    net: Network,
    order: Vec<usize>,
    sampling: HashMap<String, Sampling>,
    logits: String,
    /// Layers (a conv, a BatchNorm or an Add) whose only reader is a ReLU, and that ReLU: the
    /// layer applies the ReLU in its own output pass and the tape keeps one tensor for
    /// both (a pass and a buffer less per pair). The ReLU's backward leaves its cut (by
    /// its output) to the layer's gradient (`train::pending`); the layer's own value reads
    /// as the ReLU's, which changes nothing its backward or its impact (|∂L/∂V · V|, zero
    /// wherever the ReLU cut V) uses.
    fused_relu: HashMap<String, String>,
    /// The plan steps of each layer without parameters, by (layer index, batch): see
    /// `lowered`.
    lowered: Mutex<HashMap<(usize, usize), Arc<LayerSteps>>>,
}

fn conv_geometry(c: &Conv, x: &Tensor) -> ConvGeometry {
    let [b, ch, h, w] = x.shape;
    c.geometry([ch, h, w], b)
}

impl Model {
    /// Prepares `net`: checks it by compiling an inference plan, resolves every
    /// perforated conv's mask and interpolation map, and picks the logits (the input of a
    /// final Softmax, else the output).
    pub fn new(net: Network) -> Result<Self> {
        let plan = Plan::compile(&net, 1, PlanOptions { fuse: false, ..Default::default() })?;
        let mut sampling = HashMap::new();
        for layer in &net.layers {
            let Op::Conv(Conv { perforation: Some(p), .. }) = &layer.op else { continue };
            let step =
                plan.steps().iter().find(|s| s.layer == layer.name && matches!(s.op, StepOp::Conv { .. }));
            let Some(StepOp::Conv { layer: conv, .. }) = step.map(|s| &s.op) else { continue };
            let positions = conv.mask().positions().to_vec();
            let s = if p.interpolation == Interpolation::Stride {
                Sampling::Grid { positions }
            } else if conv.mask().is_dense() {
                Sampling::Dense
            } else {
                Sampling::Map { positions, map: conv.interpolation_map().clone() }
            };
            sampling.insert(layer.name.clone(), s);
        }
        let index: HashMap<&str, usize> =
            net.layers.iter().enumerate().map(|(i, l)| (l.name.as_str(), i)).collect();
        let order: Vec<usize> = order(&net)?.iter().map(|l| index[l.name.as_str()]).collect();
        let logits = match net.layers.iter().find(|l| l.name == net.output) {
            Some(l) if matches!(l.op, Op::Softmax) => l.inputs[0].clone(),
            _ => net.output.clone(),
        };
        let fused_relu = fused_relu(&net, &logits);
        Ok(Model { net, order, sampling, logits, fused_relu, lowered: Mutex::default() })
    }

    /// The network (with its current parameters).
    pub fn network(&self) -> &Network {
        &self.net
    }

    /// The network, consuming the model.
    pub fn into_network(self) -> Network {
        self.net
    }

    /// The layer whose output the loss reads (logits).
    pub fn logits_name(&self) -> &str {
        &self.logits
    }

    /// Names of the layers with trainable parameters, in network order.
    pub fn param_names(&self) -> Vec<String> {
        self.net
            .layers
            .iter()
            .filter(|l| matches!(l.op, Op::Conv(_) | Op::Linear(_) | Op::BatchNorm(_)))
            .map(|l| l.name.clone())
            .collect()
    }

    /// Mutable parameter tensors of layer `name`, in the order of [`Grads::params`].
    /// Weights shared with clones of the network (or a plan) are copied first.
    pub fn params_mut(&mut self, name: &str) -> Vec<&mut [f32]> {
        let Some(layer) = self.net.layers.iter_mut().find(|l| l.name == name) else { return vec![] };
        match &mut layer.op {
            Op::Conv(c) => {
                std::iter::once(Arc::make_mut(&mut c.weights)).chain(c.bias.as_deref_mut()).collect()
            }
            Op::Linear(l) => {
                std::iter::once(Arc::make_mut(&mut l.weights)).chain(l.bias.as_deref_mut()).collect()
            }
            Op::BatchNorm(b) => vec![&mut b.scale[..], &mut b.shift[..]],
            _ => vec![],
        }
    }

    /// Moves every training-mode BatchNorm's running statistics toward the batch
    /// statistics in `tape` (PyTorch convention: momentum 0.1, unbiased variance).
    pub fn update_bn_stats(&mut self, tape: &Tape, momentum: f32) {
        for layer in &mut self.net.layers {
            let Op::BatchNorm(bn) = &mut layer.op else { continue };
            let Some(Aux::Bn(Some(b))) = tape.aux.get(&layer.name) else { continue };
            let x = tape.at(&layer.inputs[0]);
            #[allow(clippy::cast_precision_loss)]
            let n = (x.shape[0] * x.plane()) as f32;
            let unbias = if n > 1.0 { n / (n - 1.0) } else { 1.0 };
            for c in 0..bn.mean.len() {
                bn.mean[c] = (1.0 - momentum) * bn.mean[c] + momentum * b.mean[c];
                bn.var[c] = (1.0 - momentum) * bn.var[c] + momentum * b.var[c] * unbias;
            }
        }
    }

    /// Layer `i` (one without parameters) lowered to plan steps for a batch of `b`, its
    /// inputs in `values`. Cached: the steps depend only on the network's shapes and on
    /// values that training does not change.
    fn lowered(&self, i: usize, b: usize, values: &HashMap<String, Tensor>) -> Result<Arc<LayerSteps>> {
        let mut cache = self
            .lowered
            .lock()
            .map_err(|_| Error::InvalidArgument("a previous training step panicked".into()))?;
        if let Some(s) = cache.get(&(i, b)) {
            return Ok(Arc::clone(s));
        }
        let shape = |n: &str| values.get(n).map(|t| [t.shape[1], t.shape[2], t.shape[3]]);
        let layer = &self.net.layers[i];
        let mut steps = lower_layer(&self.net, layer, b, shape)?;
        // An Add whose ReLU is fused (see `fused_relu`) applies it in the sum's own pass.
        if self.fused_relu.contains_key(&layer.name) {
            let output = steps.output;
            if let Some(Step { op: StepOp::Add(p), output: written, .. }) = steps.steps.last_mut() {
                if *written == output {
                    p.relu = 1;
                }
            }
        }
        let steps = Arc::new(steps);
        cache.insert((i, b), Arc::clone(&steps));
        Ok(steps)
    }

    /// The forward pass over a batch `x` (`[B, C, H, W]` matching the network input).
    pub fn forward(&self, x: Tensor, mode: Mode) -> Result<Tape> {
        // The layers are short parallel regions one after another: the pool's workers spin
        // between them instead of sleeping, as in the CPU executor.
        crate::cpu::spinning(|| self.forward_layers(x, mode))
    }

    fn forward_layers(&self, x: Tensor, mode: Mode) -> Result<Tape> {
        let spec = &self.net.input;
        let [_, c, h, w] = x.shape;
        if [c, h, w] != [spec.channels, spec.height, spec.width] || x.shape[0] == 0 {
            return Err(Error::shape(
                "training input",
                format!("[B>0, {}, {}, {}]", spec.channels, spec.height, spec.width),
                format!("{:?}", x.shape),
            ));
        }
        let mut values = HashMap::new();
        let mut aux = HashMap::new();
        let mut aliases = HashMap::new();
        values.insert(spec.name.clone(), x);
        for &i in &self.order {
            let layer = &self.net.layers[i];
            if values.contains_key(&layer.name) {
                // A ReLU its input layer already applied (recorded under its name).
                continue;
            }
            let relu = self.fused_relu.get(&layer.name);
            let x = &values[&layer.inputs[0]];
            let [b, ch, h, w] = x.shape;
            let (out, extra) = match &layer.op {
                Op::Conv(c) => {
                    let g = conv_geometry(c, x);
                    let s = self.sampling.get(&layer.name).unwrap_or(&Sampling::Dense);
                    let bias = c.bias.clone().unwrap_or_else(|| vec![0.0; c.out_channels]);
                    let (oh, ow) = conv::out_size(&g, s);
                    let y = conv::forward(&g, &c.weights, &bias, s, &x.data, relu.is_some())?;
                    (Tensor { shape: [b, c.out_channels, oh, ow], data: y }, Aux::None)
                }
                Op::Linear(l) => {
                    let bias = l.bias.clone().unwrap_or_else(|| vec![0.0; l.out_features]);
                    let y = layers::linear_forward(&x.data, b, &l.weights, &bias, l.out_features);
                    (Tensor { shape: [b, l.out_features, 1, 1], data: y }, Aux::None)
                }
                Op::BatchNorm(bn) => {
                    let train = matches!(mode, Mode::Train { .. });
                    let (y, batch) = batch_norm::bn_forward(&x.data, ch, h * w, bn, train, relu.is_some());
                    (Tensor { data: y, shape: x.shape }, Aux::Bn(batch))
                }
                Op::Dropout { ratio } => match mode {
                    Mode::Train { seed } if *ratio > 0.0 => {
                        let keep = 1.0 - ratio;
                        let layer_seed = seed ^ hash2(i as u64, 0xD0);
                        #[allow(clippy::cast_precision_loss)]
                        let mask: Vec<f32> = (0..x.data.len())
                            .map(|k| {
                                let u = (hash2(layer_seed, k as u64) >> 11) as f32 / (1u64 << 53) as f32;
                                if u < keep {
                                    1.0 / keep
                                } else {
                                    0.0
                                }
                            })
                            .collect();
                        let y = x.data.iter().zip(&mask).map(|(a, m)| a * m).collect();
                        (Tensor { data: y, shape: x.shape }, Aux::Dropout(mask))
                    }
                    _ => (x.clone(), Aux::None),
                },
                // Every layer without parameters: the steps the plan lowers it to, on the
                // executor's kernels. Convs and fully connected layers keep their own
                // forward above (their weights change every step; convs run the executor's
                // conv kernels in `train::conv`), as do BatchNorm (batch statistics when
                // training) and Dropout (a mask when training).
                _ => {
                    let steps = self.lowered(i, b, &values)?;
                    let mut y = lowered::run(&steps, &layer.name, &values)?;
                    if relu.is_some() && !relu_applied(&steps) {
                        y.data.par_iter_mut().for_each(|v| *v = crate::cpu::nan::relu_keep_nan(*v));
                    }
                    (y, Aux::None)
                }
            };
            match relu {
                Some(r) => {
                    values.insert(r.clone(), out);
                    aliases.insert(layer.name.clone(), r.clone());
                }
                None => {
                    values.insert(layer.name.clone(), out);
                }
            }
            aux.insert(layer.name.clone(), extra);
        }
        Ok(Tape { values, aux, aliases })
    }

    /// The backward pass from `d_logits` (the loss gradient at [`Model::logits_name`]),
    /// recording impact for the convs named in `impact_for`.
    pub fn backward(&self, tape: &Tape, d_logits: Vec<f32>, impact_for: &[String]) -> Result<Grads> {
        crate::cpu::spinning(|| self.backward_from(tape, d_logits, impact_for, true))
    }

    /// [`Model::backward`] without the network input's gradient (`Grads::input` is left
    /// empty): what training and impact estimation need, and a conv reading the input
    /// then skips its input gradient.
    pub fn backward_params(&self, tape: &Tape, d_logits: Vec<f32>, impact_for: &[String]) -> Result<Grads> {
        crate::cpu::spinning(|| self.backward_from(tape, d_logits, impact_for, false))
    }

    fn backward_from(
        &self,
        tape: &Tape,
        d_logits: Vec<f32>,
        impact_for: &[String],
        input: bool,
    ) -> Result<Grads> {
        let mut grad: HashMap<String, Pending<'_>> = HashMap::new();
        let logits = tape
            .values
            .get(&self.logits)
            .ok_or_else(|| Error::InvalidArgument(format!("the tape has no '{}'", self.logits)))?;
        if d_logits.len() != logits.data.len() {
            return Err(Error::shape("loss gradient", logits.data.len(), d_logits.len()));
        }
        grad.insert(self.logits.clone(), Pending::new(d_logits));
        let mut out = Grads::default();
        let add = |grad: &mut HashMap<String, Pending<'_>>, name: &str, g: Vec<f32>| {
            contribute(grad, name, Pending::new(g));
        };
        for &i in self.order.iter().rev() {
            let layer = &self.net.layers[i];
            let Some(pending) = grad.remove(&layer.name) else { continue };
            let x = tape.at(&layer.inputs[0]);
            let y = tape.at(&layer.name);
            let [b, ch, h, w] = x.shape;
            let mut dy = match &layer.op {
                Op::Relu | Op::Add | Op::BatchNorm(_) => {
                    self.pass_on(layer, pending, tape, &mut grad, &mut out, input);
                    continue;
                }
                _ => pending.into_owned(),
            };
            let dx: Vec<f32> = match &layer.op {
                // Passed on above, before their gradient was summed.
                Op::Relu | Op::Add | Op::BatchNorm(_) => continue,
                Op::Resample(r) => resample_backward(r, x.shape, &dy),
                Op::Where => {
                    // dy flows to a where the condition holds, to b elsewhere; none to it.
                    let cond = &x.data;
                    let mut da = buffers::zeroed(dy.len());
                    let mut db = buffers::zeroed(dy.len());
                    for (i, &g) in dy.iter().enumerate() {
                        if cond[i] != 0.0 {
                            da[i] = g;
                        } else {
                            db[i] = g;
                        }
                    }
                    add(&mut grad, &layer.inputs[1], da);
                    add(&mut grad, &layer.inputs[2], db);
                    buffers::zeroed(dy.len())
                }
                Op::Conv(c) => {
                    if impact_for.contains(&layer.name) {
                        let plane = y.plane();
                        let mut imp = vec![0.0f64; plane];
                        for (k, (g, v)) in dy.iter().zip(&y.data).enumerate() {
                            imp[k % plane] += f64::from((g * v).abs());
                        }
                        out.impact.insert(layer.name.clone(), imp);
                    }
                    let g = conv_geometry(c, x);
                    let s = self.sampling.get(&layer.name).unwrap_or(&Sampling::Dense);
                    let need_dx = input || layer.inputs[0] != self.net.input.name;
                    let (dx, dw, db) = conv::backward(&g, &c.weights, s, &x.data, &dy, need_dx)?;
                    let mut p = vec![dw];
                    if c.bias.is_some() {
                        p.push(db);
                    }
                    out.params.insert(layer.name.clone(), p);
                    dx
                }
                Op::Clip { min, max } => {
                    keep_where(&mut dy, &x.data, |v| v > *min && v < *max);
                    std::mem::take(&mut dy)
                }
                Op::MaxPool(_) | Op::AvgPool(_) | Op::GlobalAvgPool => {
                    let lowered = self.lowered(i, b, &tape.values)?;
                    let StepOp::Pool { params, .. } = lowered.single_op(layer)? else {
                        return Err(layer_error(layer, "lowered to a step other than pooling"));
                    };
                    let windows = layers::pool_windows(params);
                    layers::pool_backward(&dy, b * ch, (h, w), &windows, (&x.data, &y.data), params.mode == 1)
                }
                Op::Lrn(l) => {
                    let s = layers::lrn_scale(&x.data, b, ch, h * w, l);
                    let dx = layers::lrn_backward(&x.data, &s, &dy, ch, h * w, l);
                    buffers::recycle(s);
                    dx
                }
                Op::Concat => {
                    let mut offset = 0;
                    let total = y.shape[1] * h * w;
                    let mut first = Vec::new();
                    for (k, name) in layer.inputs.iter().enumerate() {
                        let n = tape.at(name).shape[1] * h * w;
                        let part: Vec<f32> = (0..b)
                            .flat_map(|img| dy[img * total + offset..img * total + offset + n].to_vec())
                            .collect();
                        offset += n;
                        if k == 0 {
                            first = part;
                        } else {
                            add(&mut grad, name, part);
                        }
                    }
                    first
                }
                Op::Flatten | Op::Dropout { .. } => match tape.aux.get(&layer.name) {
                    Some(Aux::Dropout(mask)) => dy.iter().zip(mask).map(|(g, m)| g * m).collect(),
                    _ => std::mem::take(&mut dy),
                },
                Op::Unary(f) => dy
                    .iter()
                    .zip(x.data.iter().zip(&y.data))
                    .map(|(g, (&xv, &yv))| g * f.derivative(xv, yv))
                    .collect(),
                Op::Affine(a) => {
                    let (scale, _) = a.per_channel(ch).unwrap_or_default();
                    let plane = h * w;
                    dy.iter().enumerate().map(|(k, g)| g * scale[(k / plane) % ch]).collect()
                }
                Op::Binary(f) => {
                    let other = tape.at(&layer.inputs[1]);
                    let (_, cast) = broadcast_of(x, other, &layer.name)?;
                    let (a_at, b_at) = operand_index(cast);
                    let mut da = buffers::zeroed(x.data.len());
                    let mut db = buffers::zeroed(other.data.len());
                    for (k, g) in dy.iter().enumerate() {
                        let (ia, ib) = (a_at(k), b_at(k));
                        let (pa, pb) = f.partials(x.data[ia], other.data[ib]);
                        da[ia] += g * pa;
                        db[ib] += g * pb;
                    }
                    add(&mut grad, &layer.inputs[1], db);
                    da
                }
                Op::ReduceChannels(r) => {
                    let plane = h * w;
                    let mut dx = buffers::zeroed(x.data.len());
                    #[allow(clippy::cast_precision_loss)]
                    let n = ch as f32;
                    for img in 0..b {
                        for p in 0..plane {
                            let g = dy[img * plane + p];
                            let at = |c: usize| (img * ch + c) * plane + p;
                            match r {
                                Reduce::Max => {
                                    let best =
                                        (1..ch).fold(
                                            0,
                                            |m, c| if x.data[at(c)] > x.data[at(m)] { c } else { m },
                                        );
                                    dx[at(best)] += g;
                                }
                                Reduce::Sum => (0..ch).for_each(|c| dx[at(c)] += g),
                                Reduce::Mean => (0..ch).for_each(|c| dx[at(c)] += g / n),
                            }
                        }
                    }
                    dx
                }
                Op::SelectChannels { channels } => {
                    let plane = h * w;
                    let mut dx = buffers::zeroed(x.data.len());
                    for img in 0..b {
                        for (k, &c) in channels.iter().enumerate() {
                            let src = (img * channels.len() + k) * plane;
                            let dst = (img * ch + c) * plane;
                            dx[dst..dst + plane]
                                .iter_mut()
                                .zip(&dy[src..src + plane])
                                .for_each(|(d, g)| *d += g);
                        }
                    }
                    dx
                }
                Op::Linear(l) => {
                    let (dx, dw, db) = layers::linear_backward(&x.data, &dy, b, &l.weights, l.out_features);
                    let mut p = vec![dw];
                    if l.bias.is_some() {
                        p.push(db);
                    }
                    out.params.insert(layer.name.clone(), p);
                    dx
                }
                Op::Softmax => {
                    let lowered = self.lowered(i, b, &tape.values)?;
                    let StepOp::Softmax(params) = lowered.single_op(layer)? else {
                        return Err(layer_error(layer, "lowered to a step other than softmax"));
                    };
                    softmax_backward(params, &y.data, &dy)
                }
                Op::Reshape { .. } => std::mem::take(&mut dy),
                Op::Strided(_) | Op::Constant { .. } | Op::MatMul(_) => {
                    let other = layer.inputs.get(1).map(|n| tape.at(n));
                    let lowered = self.lowered(i, b, &tape.values)?;
                    let (dx, d_other) = tensor_backward(lowered.single_op(layer)?, x, other, &dy)
                        .ok_or_else(|| {
                            layer_error(layer, "lowered to a step other than a tensor copy or product")
                        })?;
                    if let Some(d) = d_other {
                        add(&mut grad, &layer.inputs[1], d);
                    }
                    dx
                }
            };
            if input || layer.inputs[0] != self.net.input.name {
                add(&mut grad, &layer.inputs[0], dx);
            }
            buffers::recycle(dy);
        }
        out.input = grad.remove(&self.net.input.name).map(Pending::into_owned).unwrap_or_default();
        Ok(out)
    }

    /// The backward of a ReLU, an Add or a BatchNorm, which take their gradient as it
    /// stands: a ReLU leaves its cut to the consumer of its input's gradient, an Add
    /// hands one (summed, cut) buffer to all its inputs, a BatchNorm sums the parts and
    /// applies a pending cut in its own passes. `input`: whether the network input's
    /// gradient is wanted.
    fn pass_on<'t>(
        &self,
        layer: &crate::network::Layer,
        pending: Pending<'t>,
        tape: &'t Tape,
        grad: &mut HashMap<String, Pending<'t>>,
        out: &mut Grads,
        input: bool,
    ) {
        let x = tape.at(&layer.inputs[0]);
        let [_, ch, h, w] = x.shape;
        let wanted = |k: usize| k > 0 || input || layer.inputs[0] != self.net.input.name;
        match &layer.op {
            Op::Relu => {
                if wanted(0) {
                    contribute(grad, &layer.inputs[0], pending.through_relu(&tape.at(&layer.name).data));
                } else {
                    pending.release();
                }
            }
            Op::BatchNorm(bn) => {
                let batch = match tape.aux.get(&layer.name) {
                    Some(Aux::Bn(b)) => b.as_ref(),
                    _ => None,
                };
                let parts = pending.parts();
                // A pending cut is that of a ReLU reading this layer's output, which the
                // backward recomputes from the input.
                let dy = Incoming { parts: &parts, relu: pending.relu() };
                let (dx, ds, dsh) = batch_norm::bn_backward(&x.data, &dy, ch, h * w, bn, batch);
                drop(parts);
                pending.release();
                out.params.insert(layer.name.clone(), vec![ds, dsh]);
                if wanted(0) {
                    contribute(grad, &layer.inputs[0], Pending::new(dx));
                } else {
                    buffers::recycle(dx);
                }
            }
            _ => {
                let g = Pending::new(pending.into_owned());
                for (k, name) in layer.inputs.iter().enumerate() {
                    if wanted(k) {
                        contribute(grad, name, g.share());
                    }
                }
                g.release();
            }
        }
    }
}

/// Whether `steps` end in an Add that applies a fused ReLU (set by `Model::lowered`).
fn relu_applied(steps: &LayerSteps) -> bool {
    matches!(steps.steps.last(), Some(Step { op: StepOp::Add(p), output, .. }) if p.relu == 1 && *output == steps.output)
}

/// The producer -> ReLU pairs of [`Model`]'s `fused_relu`: a ReLU reading a conv, a
/// BatchNorm or an Add that nothing else reads (and that is not the logits or the output).
fn fused_relu(net: &Network, logits: &str) -> HashMap<String, String> {
    let mut readers: HashMap<&str, usize> = HashMap::new();
    for l in &net.layers {
        for i in &l.inputs {
            *readers.entry(i.as_str()).or_default() += 1;
        }
    }
    let op: HashMap<&str, &Op> = net.layers.iter().map(|l| (l.name.as_str(), &l.op)).collect();
    net.layers
        .iter()
        .filter(|r| matches!(r.op, Op::Relu) && r.inputs.len() == 1)
        .filter_map(|r| {
            let p = r.inputs[0].as_str();
            let producer = matches!(op.get(p), Some(Op::Conv(_) | Op::BatchNorm(_) | Op::Add));
            (producer && readers.get(p) == Some(&1) && p != logits && p != net.output)
                .then(|| (p.to_string(), r.name.clone()))
        })
        .collect()
}

/// `g` kept where `keep(v)` holds for the matching value of `v`, zero elsewhere, in
/// place and in parallel (the backward of ReLU and Clip).
fn keep_where(g: &mut [f32], v: &[f32], keep: impl Fn(f32) -> bool + Sync) {
    g.par_chunks_mut(1 << 14).zip(v.par_chunks(1 << 14)).for_each(|(g, v)| {
        g.iter_mut().zip(v).for_each(|(g, &v)| *g = if keep(v) { *g } else { 0.0 });
    });
}

/// Adds `g` to the gradient of `name`.
fn contribute<'t>(grad: &mut HashMap<String, Pending<'t>>, name: &str, g: Pending<'t>) {
    let merged = match grad.remove(name) {
        Some(acc) => acc.merge(g),
        None => g,
    };
    grad.insert(name.to_string(), merged);
}

/// How a binary layer's operands broadcast: the larger one (the output's shape), and for
/// each output element the element of `a` and of `b` it reads.
fn broadcast_of<'t>(a: &'t Tensor, b: &'t Tensor, layer: &str) -> Result<(&'t Tensor, Broadcast)> {
    let dims = |t: &Tensor| [t.shape[1], t.shape[2], t.shape[3]];
    let mode = broadcast_mode(dims(a), dims(b)).filter(|_| a.shape[0] == b.shape[0]).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "layer '{layer}': operands {:?} and {:?} do not broadcast",
            a.shape, b.shape
        ))
    })?;
    let full = if matches!(mode, 2 | 4) { b } else { a };
    Ok((full, Broadcast { mode, plane: full.plane(), channels: full.shape[1] }))
}

/// A binary layer's broadcast: mode as in `params::BinaryParams`.
#[derive(Clone, Copy)]
struct Broadcast {
    mode: u32,
    plane: usize,
    channels: usize,
}

/// Index maps from an output element to the element of each operand it reads.
fn operand_index(cast: Broadcast) -> (impl Fn(usize) -> usize, impl Fn(usize) -> usize) {
    let Broadcast { mode, plane, channels } = cast;
    let small = move |k: usize, per_channel: bool| {
        if per_channel {
            k / plane
        } else {
            (k / (channels * plane)) * plane + k % plane
        }
    };
    (
        move |k| match mode {
            2 => small(k, true),
            4 => small(k, false),
            _ => k,
        },
        move |k| match mode {
            1 => small(k, true),
            3 => small(k, false),
            _ => k,
        },
    )
}

/// The gradient of a resample: each output gradient flows back to the input values its
/// taps read, times the tap weights (the fill value takes none).
fn resample_backward(r: &Resample, [b, ch, h, w]: [usize; 4], dy: &[f32]) -> Vec<f32> {
    let (oh, ow, k) = (r.out_height(), r.out_width(), r.taps);
    let mut dx = buffers::zeroed(b * ch * h * w);
    for p in 0..b * ch {
        let (src, dst) = (&dy[p * oh * ow..(p + 1) * oh * ow], &mut dx[p * h * w..(p + 1) * h * w]);
        for y in 0..oh {
            for row in &r.rows[y * k..(y + 1) * k] {
                let Some(i) = row.index.filter(|_| row.weight != 0.0) else { continue };
                for x in 0..ow {
                    let g = src[y * ow + x] * row.weight;
                    for col in &r.cols[x * k..(x + 1) * k] {
                        if let Some(j) = col.index.filter(|_| col.weight != 0.0) {
                            dst[i * w + j] += g * col.weight;
                        }
                    }
                }
            }
        }
    }
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::zoo::{build, ZooConfig};
    use crate::rng::SeededRng;

    /// The fused ReLU passes change no number: a model with them and the same model with
    /// them off give the same logits, parameter gradients, input gradient, impact and
    /// batch statistics, in training mode, dense and perforated.
    #[test]
    fn relu_fused_into_its_producer_changes_nothing() {
        for (name, q) in [("fashion_resnet", 1.0), ("fashion_vgg", 0.5), ("fashion_nin", 0.5)] {
            let mut net = build(name, ZooConfig::scaled(0.25, 16)).expect("zoo");
            if q < 1.0 {
                net.perforate_all(q, 3).expect("perforate");
            }
            let fused = Model::new(net.clone()).expect("model");
            assert!(!fused.fused_relu.is_empty(), "{name}: no ReLU was fused");
            let mut plain = Model::new(net).expect("model");
            plain.fused_relu.clear();
            let i = &fused.network().input;
            let shape = [3, i.channels, i.height, i.width];
            let x = SeededRng::new(5).vec_f32(shape.iter().product(), -1.0, 1.0);
            let convs: Vec<String> = fused.fused_relu.keys().cloned().collect();
            let run = |m: &Model| {
                let tape =
                    m.forward(Tensor::new(shape, x.clone()).unwrap(), Mode::Train { seed: 1 }).unwrap();
                let logits = tape.value(m.logits_name()).unwrap().data.clone();
                let d = SeededRng::new(6).vec_f32(logits.len(), -1.0, 1.0);
                let grads = m.backward(&tape, d, &convs).unwrap();
                let stats: Vec<Vec<f32>> = m
                    .param_names()
                    .iter()
                    .filter_map(|n| tape.bn_batch_stats(n))
                    .map(|(a, b)| [a, b].concat())
                    .collect();
                (logits, grads, stats)
            };
            let (a, b) = (run(&fused), run(&plain));
            assert_eq!(a.0, b.0, "{name}: logits");
            assert_eq!(a.1.input, b.1.input, "{name}: input gradient");
            assert_eq!(a.1.params, b.1.params, "{name}: parameter gradients");
            assert_eq!(a.1.impact, b.1.impact, "{name}: impact");
            assert_eq!(a.2, b.2, "{name}: batch statistics");
        }
    }
}
