//! `Plan::compile`: graph checks, topological order, fusion, lowering to steps with
//! compact propagation (METHOD.md §1), and buffer slots by liveness.

use std::collections::HashMap;
use std::sync::Arc;

use super::checks::{check_bn, check_conv_weights, check_lrn, folded_weights, stride_baseline_map};
use super::graph::{in_layer, layer_error, order, pool_out};
use super::{Form, Plan, PlanOptions, Step, StepOp, TensorId, TensorInfo};
use crate::error::{to_u32, Error, Result};
use crate::geometry::ConvGeometry;
use crate::interp::MapKind;
use crate::layer::{ConvLayer, ConvSettings, OutputForm};
use crate::mask::Mask;
use crate::network::{BatchNorm, Conv, Layer, Linear, Network, Op, Perforation, Pool};
use crate::params::{
    ChannelAffineParams, ClipParams, GatherInterpParams, LrnParams, Pool2dParams, ReduceChannelsParams,
    ReluParams, UnaryParams,
};
use crate::strategy::{Interpolation, MaskStrategy, PoolWindows};

pub(super) struct Builder<'n> {
    pub(super) net: &'n Network,
    pub(super) batch: usize,
    pub(super) options: PlanOptions,
    pub(super) tensors: Vec<TensorInfo>,
    pub(super) steps: Vec<Step>,
    pub(super) names: HashMap<String, TensorId>,
    pub(super) gathered: HashMap<TensorId, TensorId>,
    pub(super) consumers: HashMap<&'n str, Vec<&'n Layer>>,
}

impl<'n> Builder<'n> {
    /// A builder with no tensors or steps yet; `consumers` lists each tensor's readers
    /// (fusion asks it; empty when fusion is off).
    pub(super) fn new(
        net: &'n Network,
        batch: usize,
        options: PlanOptions,
        consumers: HashMap<&'n str, Vec<&'n Layer>>,
    ) -> Self {
        Builder {
            net,
            batch,
            options,
            tensors: Vec::new(),
            steps: Vec::new(),
            names: HashMap::new(),
            gathered: HashMap::new(),
            consumers,
        }
    }

    pub(super) fn tensor(
        &mut self,
        producer: &str,
        channels: usize,
        height: usize,
        width: usize,
        form: Form,
    ) -> TensorId {
        let id = self.tensors.len();
        let producer = producer.to_string();
        self.tensors.push(TensorInfo {
            producer,
            batch: self.batch,
            channels,
            height,
            width,
            form,
            storage: id,
        });
        id
    }

    pub(super) fn alias(
        &mut self,
        of: TensorId,
        producer: &str,
        channels: usize,
        height: usize,
        width: usize,
    ) -> TensorId {
        let src = &self.tensors[of];
        let info = TensorInfo {
            producer: producer.to_string(),
            batch: src.batch,
            channels,
            height,
            width,
            form: src.form.clone(),
            storage: src.storage,
        };
        self.tensors.push(info);
        self.tensors.len() - 1
    }

    pub(super) fn step(&mut self, layer: &str, op: StepOp, inputs: Vec<TensorId>, output: TensorId) {
        let flops = self.flops(&op, &inputs, output);
        self.steps.push(Step { layer: layer.to_string(), op, inputs, output, flops });
    }

    /// Cost model: convolutions and fully connected layers by METHOD.md §1, other layers
    /// by a small per-element count (pool windows, LRN windows); data movement is free.
    pub(super) fn flops(&self, op: &StepOp, inputs: &[TensorId], output: TensorId) -> u64 {
        let out = self.tensors[output].len() as u64;
        match op {
            StepOp::Conv { layer, .. } => layer.flops(),
            StepOp::Pool { params, .. } => out * u64::from(params.kernel_h * params.kernel_w),
            StepOp::Lrn(p) => out * (2 * u64::from(p.size) + 4),
            StepOp::Relu(_) | StepOp::Clip(_) => out,
            StepOp::Add(_) => out * (inputs.len() as u64 - 1),
            // A residual gather is the Add of its two operands.
            StepOp::Gather { params, .. } if params.residual != 0 => out,
            StepOp::Affine { .. } => 2 * out,
            StepOp::Softmax(_) => 3 * out,
            StepOp::StridedCopy(_) | StepOp::Constant { .. } => 0,
            StepOp::MatmulStrided(p) => 2 * out * u64::from(p.k),
            StepOp::Gather { .. } | StepOp::Concat | StepOp::SelectChannels { .. } => 0,
            StepOp::Unary(_) | StepOp::Binary(_) => out,
            StepOp::ReduceChannels(_) => self.tensors[inputs[0]].len() as u64,
            StepOp::Resample { params, .. } => out * 2 * u64::from(params.taps * params.taps),
            StepOp::SelectElements(_) => 0,
        }
    }

    /// The single layer reading `name`, unless the network also returns it.
    pub(super) fn sole_consumer(&self, name: &str) -> Option<&'n Layer> {
        match self.consumers.get(name).map(Vec::as_slice) {
            Some([only]) if self.net.output != name => Some(only),
            _ => None,
        }
    }

    /// Fusion: the layers after `name` that its step absorbs (a BatchNorm to fold, when
    /// `fold_bn`, then a ReLU), the BN, and whether a ReLU was absorbed. When the step's
    /// output is compact through a map of `kind`, only layers that commute with that
    /// interpolation are absorbed (see [`commutes`]).
    pub(super) fn absorb(
        &self,
        name: &str,
        fold_bn: bool,
        kind: Option<MapKind>,
    ) -> (Vec<&'n Layer>, Option<&'n BatchNorm>, bool) {
        let mut absorbed = Vec::new();
        let mut bn = None;
        if !self.options.fuse {
            return (absorbed, bn, false);
        }
        let fits = |op: &Op| kind.is_none_or(|k| commutes(op, k));
        let mut tail = name;
        if fold_bn {
            if let Some(l @ Layer { op: Op::BatchNorm(b), .. }) =
                self.sole_consumer(tail).filter(|l| fits(&l.op))
            {
                bn = Some(b);
                absorbed.push(l);
                tail = &l.name;
            }
        }
        let mut relu = false;
        if let Some(l @ Layer { op: Op::Relu, .. }) = self.sole_consumer(tail).filter(|l| fits(&l.op)) {
            relu = true;
            absorbed.push(l);
        }
        (absorbed, bn, relu)
    }

    /// The windows of the pooling layer that reads `name`'s `h×w` output, following single
    /// consumers through layers that keep the map (a pooling-structure mask's source).
    pub(super) fn pool_windows_after(&self, name: &str, h: usize, w: usize) -> Option<PoolWindows> {
        let mut tail = name;
        loop {
            let next = self.sole_consumer(tail)?;
            match &next.op {
                Op::Relu | Op::Clip { .. } | Op::BatchNorm(_) | Op::Lrn(_) | Op::Dropout { .. } => {
                    tail = &next.name
                }
                Op::Conv(c) if c.is_pointwise() => tail = &next.name,
                Op::MaxPool(p) | Op::AvgPool(p) => {
                    let [pt, pl, pb, pr] = p.pads;
                    let oh = pool_out(h, p.kernel[0], p.stride[0].max(1), pt, pb, p.ceil_mode)?;
                    let ow = pool_out(w, p.kernel[1], p.stride[1].max(1), pl, pr, p.ceil_mode)?;
                    return Some(PoolWindows {
                        kernel: p.kernel,
                        stride: p.stride,
                        pads: p.pads,
                        out: [oh, ow],
                    });
                }
                Op::GlobalAvgPool => {
                    return Some(PoolWindows { kernel: [h, w], stride: [1, 1], pads: [0; 4], out: [1, 1] })
                }
                _ => return None,
            }
        }
    }

    /// `t` as a dense tensor: itself, or its (shared) gather through the map.
    pub(super) fn dense(&mut self, t: TensorId, consumer: &str) -> Result<TensorId> {
        if self.tensors[t].map().is_none() {
            return Ok(t);
        }
        if let Some(&d) = self.gathered.get(&t) {
            return Ok(d);
        }
        let d = self.gather(t, consumer, false, None)?;
        self.gathered.insert(t, d);
        Ok(d)
    }

    /// A gather of the compact tensor `t` into a new dense tensor, plus the dense tensor
    /// `addend` of the same shape when given (a residual Add reading `t` through its map),
    /// with a ReLU after when `relu` (a ReLU layer on a barycentric tensor, or the Add's).
    #[track_caller]
    pub(super) fn gather(
        &mut self,
        t: TensorId,
        consumer: &str,
        relu: bool,
        addend: Option<TensorId>,
    ) -> Result<TensorId> {
        let map = self.tensors[t].map().cloned().expect("gather of a compact tensor");
        let info = self.tensors[t].clone();
        let fused = relu || addend.is_some();
        let name = if fused { consumer.to_string() } else { format!("{}/gather", info.producer) };
        let d = self.tensor(&name, info.channels, info.height, info.width, Form::Dense);
        let params = GatherInterpParams {
            n_pos: to_u32(map.compact_len(), "compact length")?,
            plane: to_u32(info.height * info.width, "plane")?,
            planes: to_u32(info.batch * info.channels, "planes")?,
            map_kind: map.kind().code(),
            relu: u32::from(relu),
            residual: u32::from(addend.is_some()),
            ..Default::default()
        };
        self.step(consumer, StepOp::Gather { params, map }, std::iter::once(t).chain(addend).collect(), d);
        Ok(d)
    }

    /// `t` itself when `op` may run on it as stored, else its dense gather.
    pub(super) fn readable(&mut self, t: TensorId, op: &Op, consumer: &str) -> Result<TensorId> {
        match self.tensors[t].map() {
            Some(m) if !commutes(op, m.kind()) => self.dense(t, consumer),
            _ => Ok(t),
        }
    }

    pub(super) fn conv(
        &mut self,
        layer: &Layer,
        c: &Conv,
        input: TensorId,
    ) -> Result<(TensorId, Vec<&'n Layer>)> {
        let t = self.tensors[input].clone();
        check_conv_weights(layer, c, t.channels)?;
        let in_kind = t.map().map(|m| m.kind());
        // A pointwise conv runs on the compact positions when it commutes with the map;
        // through a zeros map the bias would land on skipped positions, so it reads
        // through the map (im2col) instead.
        let on_compact =
            in_kind.is_some_and(|k| k != MapKind::Zeros) && c.is_pointwise() && c.perforation.is_none();
        let out_kind = match &c.perforation {
            Some(p) => p.interpolation.map_kind(),
            None if on_compact => in_kind,
            None => None,
        };
        let (mut absorbed, bn, relu) = self.absorb(&layer.name, true, out_kind);
        // A `Clip(0, max)` (ReLU6) after the conv (and its BN) fuses as a capped ReLU, unless
        // the output is barycentric-perforated (the cap would have to follow the gather).
        let cap = match (relu, out_kind) {
            (false, None | Some(MapKind::Nearest | MapKind::Zeros)) if self.options.fuse => {
                let tail = absorbed.last().map_or(layer.name.as_str(), |l| l.name.as_str());
                match self.sole_consumer(tail) {
                    Some(l @ Layer { op: Op::Clip { min, max }, .. })
                        if *min == 0.0 && *max > 0.0 && max.is_finite() =>
                    {
                        absorbed.push(l);
                        Some(*max)
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        let (weights, bias) = folded_weights(layer, c, bn.map(|bn| (bn, absorbed[0])))?;

        let geometry = if on_compact {
            ConvGeometry::new(t.channels, 1, t.plane(), c.out_channels, 1, 1)
                .with_groups(c.groups)
                .with_batch(self.batch)
        } else {
            c.geometry([t.channels, t.height, t.width], self.batch)
        };
        let mut conv = in_layer(layer, ConvLayer::new(geometry, weights, Some(bias)))?.with_relu(relu);
        if let Some(cap) = cap {
            conv = in_layer(layer, conv.with_relu_cap(cap))?;
        }
        if let (false, Some(map)) = (on_compact, t.map()) {
            conv = in_layer(layer, conv.with_input_map((**map).clone()))?;
        }
        if let Some(p) = &c.perforation {
            let mask = self.mask_of(layer, p, geometry.out_h(), geometry.out_w())?;
            conv = in_layer(layer, conv.with_mask(mask, p.seed))?;
            if let Some(kind @ (MapKind::Zeros | MapKind::Barycentric)) = p.interpolation.map_kind() {
                conv = in_layer(layer, conv.with_interpolation(kind, p.seed))?;
            }
        }
        let stride_baseline =
            c.perforation.as_ref().is_some_and(|p| p.interpolation == Interpolation::Stride);
        let (form, h, w) = if stride_baseline {
            let (kh, kw) = stride_baseline_map(layer, c, &conv, on_compact)?;
            (Form::Dense, kh, kw)
        } else if on_compact {
            (t.form.clone(), t.height, t.width)
        } else if conv.mask().is_dense() {
            (Form::Dense, geometry.out_h(), geometry.out_w())
        } else {
            (Form::Compact(Arc::new(conv.interpolation_map().clone())), geometry.out_h(), geometry.out_w())
        };
        let out = self.tensor(&layer.name, c.out_channels, h, w, form);
        let settings = ConvSettings {
            output: OutputForm::Compact,
            kernels: self.options.conv_kernels,
            ..Default::default()
        };
        self.step(&layer.name, StepOp::Conv { layer: Box::new(conv), settings }, vec![input], out);
        Ok((out, absorbed))
    }

    /// The mask of a perforated conv's `h x w` output, by its explicit positions or its
    /// strategy (pooling structure reads the pooling layer after the conv).
    fn mask_of(&self, layer: &Layer, p: &Perforation, h: usize, w: usize) -> Result<Mask> {
        let q = p.kept_fraction;
        let mask = match (&p.positions, &p.strategy) {
            (Some(positions), _) => Mask::from_positions(h, w, positions.clone()),
            (None, MaskStrategy::Uniform) => Mask::uniform(h, w, q, p.seed),
            (None, MaskStrategy::Grid) => Mask::grid(h, w, q, p.seed),
            (
                None,
                MaskStrategy::Weights { weights }
                | MaskStrategy::Impact { weights }
                | MaskStrategy::IterativeImpact { weights },
            ) => Mask::from_weights(h, w, q, weights),
            (None, MaskStrategy::PoolingStructure) => {
                let windows = self.pool_windows_after(&layer.name, h, w).ok_or_else(|| {
                    layer_error(
                        layer,
                        "the pooling_structure strategy needs a pooling layer reading this conv's output \
                         (directly or through ReLU, Clip, BatchNorm, LRN, Dropout or pointwise convs)",
                    )
                })?;
                Mask::pooling_structure(h, w, q, p.seed, &windows)
            }
        };
        in_layer(layer, mask)
    }

    pub(super) fn linear(
        &mut self,
        layer: &Layer,
        l: &Linear,
        input: TensorId,
    ) -> Result<(TensorId, Vec<&'n Layer>)> {
        let x = self.dense(input, &layer.name)?;
        let t = &self.tensors[x];
        let features = t.channels * t.height * t.width;
        if l.out_features == 0 || l.out_features.checked_mul(features) != Some(l.weights.len()) {
            return Err(layer_error(
                layer,
                format!(
                    "weights hold {} values, but {} outputs of a {features}-feature input need {}",
                    l.weights.len(),
                    l.out_features,
                    l.out_features.saturating_mul(features)
                ),
            ));
        }
        let (absorbed, _, relu) = self.absorb(&layer.name, false, None);
        let geometry = ConvGeometry::new(features, 1, 1, l.out_features, 1, 1).with_batch(self.batch);
        let conv =
            in_layer(layer, ConvLayer::new(geometry, l.weights.clone(), l.bias.clone()))?.with_relu(relu);
        let out = self.tensor(&layer.name, l.out_features, 1, 1, Form::Dense);
        let settings = ConvSettings {
            output: OutputForm::Compact,
            images_per_gemm: Some(self.batch),
            kernels: self.options.conv_kernels,
            ..Default::default()
        };
        self.step(&layer.name, StepOp::Conv { layer: Box::new(conv), settings }, vec![x], out);
        Ok((out, absorbed))
    }

    pub(super) fn pool(&mut self, layer: &Layer, p: &Pool, avg: bool, input: TensorId) -> Result<TensorId> {
        let t = self.tensors[input].clone();
        let [kh, kw] = p.kernel;
        let [pt, pl, pb, pr] = p.pads;
        if kh == 0 || kw == 0 || p.stride.contains(&0) {
            return Err(layer_error(layer, "kernel and stride must be positive"));
        }
        if pt >= kh || pb >= kh || pl >= kw || pr >= kw {
            return Err(layer_error(
                layer,
                format!("padding {:?} must be smaller than the {kh}x{kw} window", p.pads),
            ));
        }
        let oh = pool_out(t.height, kh, p.stride[0], pt, pb, p.ceil_mode);
        let ow = pool_out(t.width, kw, p.stride[1], pl, pr, p.ceil_mode);
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return Err(layer_error(
                layer,
                format!("{kh}x{kw} window is larger than the padded {}x{} input", t.height, t.width),
            ));
        };
        let map_kind = t.map().map_or(0, |m| m.kind().code());
        let params =
            pool2d_params(p, t.batch * t.channels, (t.height, t.width), (oh, ow), avg, t.plane(), map_kind)?;
        let out = self.tensor(&layer.name, t.channels, oh, ow, Form::Dense);
        self.step(&layer.name, StepOp::Pool { params, in_map: t.map().cloned() }, vec![input], out);
        Ok(out)
    }

    pub(super) fn lower(&mut self, layer: &'n Layer) -> Result<()> {
        if self.names.contains_key(&layer.name) {
            return Ok(()); // absorbed by its producer's step
        }
        let inputs: Vec<TensorId> = layer.inputs.iter().map(|n| self.names[n.as_str()]).collect();
        let mut x = inputs[0];
        let in_kind = self.tensors[x].map().map(|m| m.kind());
        if matches!(layer.op, Op::Relu) && in_kind == Some(MapKind::Barycentric) {
            // The ReLU must follow the interpolation: one gather does both.
            let out = self.gather(x, &layer.name, true, None)?;
            self.names.insert(layer.name.clone(), out);
            return Ok(());
        }
        if matches!(
            layer.op,
            Op::Clip { .. }
                | Op::BatchNorm(_)
                | Op::Lrn(_)
                | Op::Unary(_)
                | Op::Affine(_)
                | Op::ReduceChannels(_)
        ) {
            x = self.readable(x, &layer.op, &layer.name)?;
        }
        let t = self.tensors[x].clone();
        let (out, absorbed) = match &layer.op {
            Op::Conv(c) => self.conv(layer, c, x)?,
            Op::Linear(l) => self.linear(layer, l, x)?,
            Op::MaxPool(p) => (self.pool(layer, p, false, x)?, vec![]),
            Op::AvgPool(p) => (self.pool(layer, p, true, x)?, vec![]),
            Op::GlobalAvgPool => {
                let p = Pool {
                    kernel: [t.height, t.width],
                    stride: [1, 1],
                    pads: [0; 4],
                    ceil_mode: false,
                    count_include_pad: false,
                };
                (self.pool(layer, &p, true, x)?, vec![])
            }
            Op::Relu => {
                let out = self.tensor(&layer.name, t.channels, t.height, t.width, t.form.clone());
                let params = ReluParams { len: to_u32(t.len(), "length")?, ..Default::default() };
                self.step(&layer.name, StepOp::Relu(params), vec![x], out);
                (out, vec![])
            }
            Op::Clip { min, max } => {
                if min.is_nan() || max.is_nan() || min > max {
                    return Err(layer_error(layer, format!("bounds [{min}, {max}] are not an interval")));
                }
                let out = self.tensor(&layer.name, t.channels, t.height, t.width, t.form.clone());
                let params = ClipParams { len: to_u32(t.len(), "length")?, _pad: 0, min: *min, max: *max };
                self.step(&layer.name, StepOp::Clip(params), vec![x], out);
                (out, vec![])
            }
            Op::Dropout { .. } => (self.alias(x, &layer.name, t.channels, t.height, t.width), vec![]),
            Op::Flatten => {
                let d = self.dense(x, &layer.name)?;
                (self.alias(d, &layer.name, t.channels * t.height * t.width, 1, 1), vec![])
            }
            Op::BatchNorm(bn) => {
                in_layer(layer, check_bn(bn, t.channels))?;
                let (absorbed, _, relu) = self.absorb(&layer.name, false, t.map().map(|m| m.kind()));
                let (scale, shift) = bn.affine();
                let params = ChannelAffineParams {
                    len: to_u32(t.len(), "length")?,
                    channels: to_u32(t.channels, "channels")?,
                    plane: to_u32(t.plane(), "plane")?,
                    relu: u32::from(relu),
                };
                let out = self.tensor(&layer.name, t.channels, t.height, t.width, t.form.clone());
                self.step(&layer.name, StepOp::Affine { params, scale, shift }, vec![x], out);
                (out, absorbed)
            }
            Op::Lrn(l) => {
                in_layer(layer, check_lrn(l))?;
                let params = LrnParams {
                    images: to_u32(t.batch, "batch")?,
                    channels: to_u32(t.channels, "channels")?,
                    positions: to_u32(t.plane(), "plane")?,
                    size: to_u32(l.size, "size")?,
                    alpha: l.alpha,
                    beta: l.beta,
                    bias: l.bias,
                    _pad: 0,
                };
                let out = self.tensor(&layer.name, t.channels, t.height, t.width, t.form.clone());
                self.step(&layer.name, StepOp::Lrn(params), vec![x], out);
                (out, vec![])
            }
            Op::Add => self.add(layer, &inputs)?,
            Op::Binary(f) => self.binary(layer, *f, &inputs)?,
            Op::Unary(f) => {
                let out = self.tensor(&layer.name, t.channels, t.height, t.width, t.form.clone());
                let (alpha, beta) = f.constants();
                let params = UnaryParams { len: to_u32(t.len(), "length")?, op: f.code(), alpha, beta };
                self.step(&layer.name, StepOp::Unary(params), vec![x], out);
                (out, vec![])
            }
            Op::Affine(a) => self.affine(layer, a, x)?,
            Op::ReduceChannels(r) => {
                let params = ReduceChannelsParams {
                    images: to_u32(t.batch, "batch")?,
                    channels: to_u32(t.channels, "channels")?,
                    plane: to_u32(t.plane(), "plane")?,
                    op: r.code(),
                };
                let out = self.tensor(&layer.name, 1, t.height, t.width, t.form.clone());
                self.step(&layer.name, StepOp::ReduceChannels(params), vec![x], out);
                (out, vec![])
            }
            Op::Where
            | Op::Resample(_)
            | Op::SelectChannels { .. }
            | Op::Reshape { .. }
            | Op::Strided(_)
            | Op::Constant { .. }
            | Op::MatMul(_)
            | Op::Concat
            | Op::Softmax => (self.data_layer(layer, &inputs, x, &t)?, vec![]),
        };
        self.names.insert(layer.name.clone(), out);
        for l in absorbed {
            self.names.insert(l.name.clone(), out);
        }
        Ok(())
    }
}

pub(super) fn form_kind(form: &Form) -> Option<MapKind> {
    match form {
        Form::Dense => None,
        Form::Compact(m) => Some(m.kind()),
    }
}

/// Whether `op`, which acts on each position independently, may run on a tensor stored
/// compact through a map of `kind`: `op(interp(x)) = interp(op(x))`. Nearest copies values,
/// so everything commutes; zeros needs `op(0) = 0`; barycentric needs an affine map per
/// position (the weights sum to 1).
pub(super) fn commutes(op: &Op, kind: MapKind) -> bool {
    match (op, kind) {
        (_, MapKind::Nearest) | (Op::Dropout { .. }, _) => true,
        (Op::Relu | Op::Lrn(_), MapKind::Zeros) => true,
        (Op::Clip { min, max }, MapKind::Zeros) => *min <= 0.0 && *max >= 0.0,
        (Op::BatchNorm(_) | Op::Affine(_), MapKind::Barycentric) | (Op::SelectChannels { .. }, _) => true,
        (Op::Affine(a), MapKind::Zeros) => a.shift.iter().all(|&s| s == 0.0),
        (Op::Unary(f), kind) => f.commutes(kind),
        (Op::ReduceChannels(r), kind) => r.commutes(kind),
        _ => false,
    }
}

impl Plan {
    /// Compiles `net` for `batch` images: checks the graph, orders it, folds and fuses,
    /// resolves every shape, mask and map, decides where tensors stay compact and where a
    /// gather makes them dense, and assigns buffer slots.
    pub fn compile(net: &Network, batch: usize, options: PlanOptions) -> Result<Plan> {
        if batch == 0 {
            return Err(Error::InvalidArgument("batch must be at least 1".into()));
        }
        let i = &net.input;
        if i.channels == 0 || i.height == 0 || i.width == 0 {
            return Err(Error::InvalidArgument(format!(
                "network input is {}x{}x{}",
                i.channels, i.height, i.width
            )));
        }
        let elements =
            [batch, i.channels, i.height, i.width].iter().try_fold(1usize, |acc, &n| acc.checked_mul(n));
        if elements.is_none_or(|n| n > u32::MAX as usize / 4) {
            return Err(Error::TooLarge(format!(
                "an input of {batch}x{}x{}x{} exceeds 2^30 elements",
                i.channels, i.height, i.width
            )));
        }
        let sorted = order(net)?;
        let mut consumers: HashMap<&str, Vec<&Layer>> = HashMap::new();
        for l in &sorted {
            for n in &l.inputs {
                consumers.entry(n.as_str()).or_default().push(l);
            }
        }
        let mut b = Builder::new(net, batch, options, consumers);
        let input = b.tensor(&i.name, i.channels, i.height, i.width, Form::Dense);
        b.names.insert(i.name.clone(), input);
        for layer in sorted {
            b.lower(layer)?;
        }
        let result = b.names[net.output.as_str()];
        let output = b.dense(result, &net.output)?;
        if options.reuse_buffers {
            super::slots::residual_in_place(&mut b.tensors, &mut b.steps, input, output);
        }
        let (slot_of, slot_sizes) =
            super::slots::assign_slots(&b.tensors, &b.steps, input, output, options.reuse_buffers);
        Ok(Plan {
            name: net.name.clone(),
            batch,
            tensors: b.tensors,
            steps: b.steps,
            input,
            output,
            layer_outputs: b.names,
            slot_of,
            slot_sizes,
            options,
        })
    }
}

/// The `pool2d` kernel's parameters for pooling `p` (`avg`: average, else maximum) over
/// `planes` planes of `h × w` (stored as `in_plane` floats each, through an input map of
/// kind `map_kind`, 0 for none) onto `oh × ow`. The training forward and backward read
/// them from the lowered step (`plan::lower_layer`).
fn pool2d_params(
    p: &Pool,
    planes: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    avg: bool,
    in_plane: usize,
    map_kind: u32,
) -> Result<Pool2dParams> {
    let [pt, pl, pb, pr] = p.pads;
    Ok(Pool2dParams {
        planes: to_u32(planes, "planes")?,
        in_h: to_u32(h, "height")?,
        in_w: to_u32(w, "width")?,
        in_plane: to_u32(in_plane, "plane")?,
        out_h: to_u32(oh, "height")?,
        out_w: to_u32(ow, "width")?,
        kernel_h: to_u32(p.kernel[0], "kernel")?,
        kernel_w: to_u32(p.kernel[1], "kernel")?,
        stride_h: to_u32(p.stride[0], "stride")?,
        stride_w: to_u32(p.stride[1], "stride")?,
        pad_top: to_u32(pt, "padding")?,
        pad_left: to_u32(pl, "padding")?,
        pad_bottom: to_u32(pb, "padding")?,
        pad_right: to_u32(pr, "padding")?,
        mode: u32::from(avg),
        count_include_pad: u32::from(p.count_include_pad),
        in_map_kind: map_kind,
        ..Default::default()
    })
}
