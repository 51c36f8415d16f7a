//! Networks as pure data: a DAG of named layers, serialisable with serde.
//!
//! A [`Network`] says *what* to compute; [`crate::plan::Plan::compile`] turns it into the
//! steps, tensors and buffers of one input shape, and the executors run that plan.

mod elementwise;
mod load;
mod plan_file;
mod report;
mod resample;
mod tensor_ops;
pub mod zoo;

pub use elementwise::{broadcast_mode, Binary, Reduce, Unary};
pub use load::load;
pub use tensor_ops::{MatMul, Strided, MAX_STRIDED_RANK};

pub use plan_file::{weights_hash, LayerPlan, PerforationPlan, PLAN_VERSION};
pub use report::{LayerReport, PerforationReport};
pub use resample::{
    pad_axis, resize_axis, slice_axis, AxisTaps, Coordinates, Nearest, PadMode, Resample, ResizeMode, Tap,
};

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::strategy::{Interpolation, MaskStrategy};

/// The network's input: an NCHW image batch (the batch size is chosen at compile time).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Name layers use to refer to the input.
    pub name: String,
    /// Channels.
    pub channels: usize,
    /// Height.
    pub height: usize,
    /// Width.
    pub width: usize,
}

/// One named layer: an operation and the names of the layers (or the input) it reads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// Unique name.
    pub name: String,
    /// Names of the producers of this layer's inputs, in order.
    pub inputs: Vec<String>,
    /// What the layer computes.
    pub op: Op,
}

/// Per-layer perforation request: a seeded uniform-random mask of a kept fraction, or
/// explicit mask positions (as a saved perforation plan records them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Perforation {
    /// Kept fraction q in (0, 1].
    pub kept_fraction: f64,
    /// Seed of the mask and of the interpolation map's tie-breaks.
    pub seed: u64,
    /// Explicit kept positions `y·W' + x`; when present they are the mask and
    /// `kept_fraction` is informative.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positions: Option<Vec<u32>>,
    /// How the mask is chosen when no positions are given.
    #[serde(default)]
    pub strategy: MaskStrategy,
    /// What the skipped positions become.
    #[serde(default)]
    pub interpolation: Interpolation,
}

impl Perforation {
    /// A seeded uniform-random mask keeping `kept_fraction` of the positions.
    pub fn uniform(kept_fraction: f64, seed: u64) -> Self {
        Perforation {
            kept_fraction,
            seed,
            positions: None,
            strategy: MaskStrategy::Uniform,
            interpolation: Interpolation::Nearest,
        }
    }
}

/// A 2-D convolution (perforatable).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv {
    /// Output channels.
    pub out_channels: usize,
    /// Kernel [height, width].
    pub kernel: [usize; 2],
    /// Stride [height, width].
    pub stride: [usize; 2],
    /// Padding [top, left, bottom, right].
    pub pads: [usize; 4],
    /// Dilation [height, width].
    pub dilation: [usize; 2],
    /// Channel groups.
    pub groups: usize,
    /// OIHW weights, shared (not copied) by clones of the network and by the plans
    /// compiled from it.
    pub weights: Arc<[f32]>,
    /// Bias (zeros when absent).
    pub bias: Option<Vec<f32>>,
    /// Perforation, when the layer is perforated.
    pub perforation: Option<Perforation>,
}

impl Conv {
    /// A stride-1, undilated, ungrouped, unperforated convolution with `pad` zeros on every
    /// side; `weights` are OIHW. Set the other fields directly where they differ.
    pub fn new(
        out_channels: usize,
        kernel: [usize; 2],
        pad: usize,
        weights: impl Into<Arc<[f32]>>,
        bias: Option<Vec<f32>>,
    ) -> Self {
        Conv {
            out_channels,
            kernel,
            stride: [1, 1],
            pads: [pad; 4],
            dilation: [1, 1],
            groups: 1,
            weights: weights.into(),
            bias,
            perforation: None,
        }
    }

    /// The geometry of this convolution over `batch` dense inputs of `[C, H, W]` (the one
    /// place its kernel, strides, padding, dilation and groups become a geometry, for the
    /// plan and for training).
    pub fn geometry(&self, [c, h, w]: [usize; 3], batch: usize) -> crate::geometry::ConvGeometry {
        let mut g =
            crate::geometry::ConvGeometry::new(c, h, w, self.out_channels, self.kernel[0], self.kernel[1])
                .with_padding_tlbr(self.pads[0], self.pads[1], self.pads[2], self.pads[3])
                .with_groups(self.groups)
                .with_batch(batch);
        (g.stride_h, g.stride_w) = (self.stride[0], self.stride[1]);
        (g.dilation_h, g.dilation_w) = (self.dilation[0], self.dilation[1]);
        g
    }

    /// Whether the convolution is 1×1 with stride 1 and no padding: such a layer maps
    /// each position to itself, so on a compact input it runs on the compact positions and
    /// inherits the input's map (METHOD.md §3).
    pub fn is_pointwise(&self) -> bool {
        self.kernel == [1, 1] && self.stride == [1, 1] && self.pads == [0; 4]
    }
}

/// Max or average pooling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pool {
    /// Window [height, width].
    pub kernel: [usize; 2],
    /// Stride [height, width].
    pub stride: [usize; 2],
    /// Padding [top, left, bottom, right].
    pub pads: [usize; 4],
    /// Round the output size up (the last window may hang over the padded input).
    pub ceil_mode: bool,
    /// Average pooling: divide by the window clipped to the padded input rather than to
    /// the input.
    pub count_include_pad: bool,
}

/// Local response normalisation across channels (ONNX semantics).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lrn {
    /// Window in channels.
    pub size: usize,
    /// Scale.
    pub alpha: f32,
    /// Exponent.
    pub beta: f32,
    /// Additive constant.
    pub bias: f32,
}

/// Inference batch normalisation: `(x − mean) / sqrt(var + eps) · scale + shift`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNorm {
    /// γ per channel.
    pub scale: Vec<f32>,
    /// β per channel.
    pub shift: Vec<f32>,
    /// Running mean per channel.
    pub mean: Vec<f32>,
    /// Running variance per channel.
    pub var: Vec<f32>,
    /// ε.
    pub epsilon: f32,
}

impl BatchNorm {
    /// The per-channel affine map `x · a + b` this normalisation amounts to.
    pub fn affine(&self) -> (Vec<f32>, Vec<f32>) {
        let a: Vec<f32> =
            self.scale.iter().zip(&self.var).map(|(g, v)| g / (v + self.epsilon).sqrt()).collect();
        let b = self.shift.iter().zip(&self.mean).zip(&a).map(|((s, m), a)| s - m * a).collect();
        (a, b)
    }
}

/// A fully connected layer `y = W x + b` on the flattened input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Linear {
    /// Output features.
    pub out_features: usize,
    /// Row-major `[out_features, in_features]` weights (shared, as a conv's).
    pub weights: Arc<[f32]>,
    /// Bias (zeros when absent).
    pub bias: Option<Vec<f32>>,
}

/// A per-channel affine map `x · scale[c] + shift[c]` (constant operands of Mul, Add, Sub
/// and Div in imported models). One value in `scale` or `shift` applies to every channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Affine {
    /// Factor per channel (or one for all).
    pub scale: Vec<f32>,
    /// Offset per channel (or one for all).
    pub shift: Vec<f32>,
}

impl Affine {
    /// Scale and shift expanded to `channels` values each; `None` when a length is neither
    /// 1 nor `channels`.
    pub fn per_channel(&self, channels: usize) -> Option<(Vec<f32>, Vec<f32>)> {
        let expand = |v: &[f32]| match v.len() {
            1 => Some(vec![v[0]; channels]),
            n if n == channels => Some(v.to_vec()),
            _ => None,
        };
        Some((expand(&self.scale)?, expand(&self.shift)?))
    }
}

/// What a layer computes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Op {
    /// Convolution.
    Conv(Conv),
    /// max(x, 0).
    Relu,
    /// min(max(x, min), max) (ReLU6 is `Clip { min: 0, max: 6 }`).
    Clip {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
    /// Max pooling.
    MaxPool(Pool),
    /// Average pooling.
    AvgPool(Pool),
    /// Average over each channel's whole map.
    GlobalAvgPool,
    /// Local response normalisation.
    Lrn(Lrn),
    /// Batch normalisation (inference).
    BatchNorm(BatchNorm),
    /// Elementwise sum of all inputs (residual connections).
    Add,
    /// Concatenation along channels.
    Concat,
    /// `[B, C, H, W] → [B, C·H·W]`.
    Flatten,
    /// Fully connected layer.
    Linear(Linear),
    /// Softmax over the channels at each position (the features of a flat tensor).
    Softmax,
    /// Identity at inference.
    Dropout {
        /// Drop probability during training.
        ratio: f32,
    },
    /// An element-wise function.
    Unary(Unary),
    /// An element-wise function of two inputs of the same shape, or of an input and a
    /// per-image, per-channel value (`[B, C, 1, 1]`, broadcast over the positions) or a
    /// per-image, per-position value (`[B, 1, H, W]`, broadcast over the channels); either
    /// input may be the broadcast one.
    Binary(Binary),
    /// Per-channel `x · scale + shift`.
    Affine(Affine),
    /// Output channel k is input channel `channels[k]` (split, slice and channel shuffle).
    SelectChannels {
        /// Input channel of each output channel.
        channels: Vec<usize>,
    },
    /// One channel: the mean, sum or maximum over the channels at each position.
    ReduceChannels(Reduce),
    /// Padding, cropping, slicing or resizing of the spatial axes through explicit taps.
    Resample(Resample),
    /// Inputs `[cond, a, b]` of one shape: `a` where `cond` is not 0, else `b` (ONNX Where).
    Where,
    /// The same dense data under another `[C, H, W]` view of equal size (no copy).
    Reshape {
        /// The output view.
        shape: [usize; 3],
    },
    /// A copy of a strided view of each image (transposes, slices, gathers, broadcasts).
    Strided(Strided),
    /// Matrix products of two activations, batched per image (attention).
    MatMul(MatMul),
    /// The same values for every image (class tokens, position embeddings); the single
    /// input only sets the batch size.
    Constant {
        /// The `[C, H, W]` shape of the values.
        shape: [usize; 3],
        /// One image's values.
        values: Vec<f32>,
    },
}

impl Op {
    /// A short lowercase name of the operation.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv(_) => "conv",
            Op::Relu => "relu",
            Op::Clip { .. } => "clip",
            Op::MaxPool(_) => "max_pool",
            Op::AvgPool(_) => "avg_pool",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Lrn(_) => "lrn",
            Op::BatchNorm(_) => "batch_norm",
            Op::Add => "add",
            Op::Concat => "concat",
            Op::Flatten => "flatten",
            Op::Linear(_) => "linear",
            Op::Softmax => "softmax",
            Op::Dropout { .. } => "dropout",
            Op::Unary(_) => "unary",
            Op::Binary(_) => "binary",
            Op::Affine(_) => "affine",
            Op::SelectChannels { .. } => "select_channels",
            Op::ReduceChannels(_) => "reduce_channels",
            Op::Resample(_) => "resample",
            Op::Where => "where",
            Op::Reshape { .. } => "reshape",
            Op::Strided(_) => "strided",
            Op::MatMul(_) => "matmul",
            Op::Constant { .. } => "constant",
        }
    }
}

/// A network: its input, its layers (in any order; they form a DAG through their
/// `inputs`), and the name of the layer whose output is the network's output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// Name of the architecture or model.
    pub name: String,
    /// The input.
    pub input: InputSpec,
    /// The layers.
    pub layers: Vec<Layer>,
    /// The layer whose output the network returns.
    pub output: String,
}

impl Network {
    /// An empty network reading `input`; its output is the input until layers are added.
    pub fn new(name: impl Into<String>, input: InputSpec) -> Self {
        let output = input.name.clone();
        Network { name: name.into(), input, layers: Vec::new(), output }
    }

    /// Appends a layer reading `inputs` and makes it the network's output. Returns its name.
    pub fn push(&mut self, name: impl Into<String>, op: Op, inputs: &[&str]) -> String {
        let name = name.into();
        self.layers.push(Layer {
            name: name.clone(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            op,
        });
        self.output = name.clone();
        name
    }

    /// Appends a layer reading the current output.
    pub fn then(&mut self, name: impl Into<String>, op: Op) -> String {
        let last = self.output.clone();
        self.push(name, op, &[&last])
    }

    /// The layer called `name`.
    pub fn layer(&self, name: &str) -> Option<&Layer> {
        self.layers.iter().find(|l| l.name == name)
    }

    pub(crate) fn conv_mut(&mut self, name: &str) -> Result<&mut Conv> {
        let known = self.layers.len();
        let layer = self.layers.iter_mut().find(|l| l.name == name).ok_or_else(|| {
            Error::InvalidArgument(format!("no layer named '{name}' in the network ({known} layers)"))
        })?;
        match &mut layer.op {
            Op::Conv(c) => Ok(c),
            other => Err(Error::InvalidArgument(format!(
                "layer '{name}' is a {}, only conv layers can be perforated",
                other.kind()
            ))),
        }
    }

    /// Perforates the conv layer `name` with a uniform mask of kept fraction `q`.
    pub fn set_perforation(&mut self, name: &str, kept_fraction: f64, seed: u64) -> Result<()> {
        self.set_perforation_with(name, kept_fraction, seed, MaskStrategy::Uniform)
    }

    /// Perforates the conv layer `name` at kept fraction `q` with the mask `strategy`.
    pub fn set_perforation_with(
        &mut self,
        name: &str,
        kept_fraction: f64,
        seed: u64,
        strategy: MaskStrategy,
    ) -> Result<()> {
        if !(kept_fraction > 0.0 && kept_fraction <= 1.0) {
            return Err(Error::InvalidArgument(format!(
                "kept fraction for layer '{name}' must lie in (0, 1], got {kept_fraction}"
            )));
        }
        self.conv_mut(name)?.perforation =
            Some(Perforation { strategy, ..Perforation::uniform(kept_fraction, seed) });
        Ok(())
    }

    /// Removes the perforation of every layer.
    pub fn clear_perforation(&mut self) {
        for layer in &mut self.layers {
            if let Op::Conv(c) = &mut layer.op {
                c.perforation = None;
            }
        }
    }

    /// A copy without any perforation.
    pub fn dense(&self) -> Network {
        let mut net = self.clone();
        net.clear_perforation();
        net
    }

    /// Names of the conv layers that are perforation candidates (METHOD.md §3): every conv
    /// whose output map has more than one position, pointwise ones (1×1, stride 1, no
    /// padding) included, except a pointwise conv that inherits its compact input's map in
    /// this network as it is perforated now ([`Network::inheriting_pointwise`]): it already
    /// runs on the compact positions for free. On a dense network every pointwise conv
    /// with a spatial output is a candidate (the first conv of a ResNet bottleneck).
    pub fn eligible_convs(&self) -> Result<Vec<String>> {
        let plan = crate::plan::Plan::compile(&self.dense(), 1, crate::plan::PlanOptions::default())?;
        let inheriting = self.inheriting_pointwise()?;
        Ok(self
            .layers
            .iter()
            .filter(|l| matches!(&l.op, Op::Conv(_)) && !inheriting.contains(&l.name))
            .filter(|l| plan.output_of(&l.name).is_some_and(|t| t.height * t.width > 1))
            .map(|l| l.name.clone())
            .collect())
    }

    /// The unperforated pointwise convs whose input is compact in this network (through a
    /// nearest or barycentric map): each runs on the compact positions and inherits its
    /// input's map and speedup, so it is not a perforation candidate while its input stays
    /// compact. (Through a zeros map a pointwise conv reads through the map instead: its
    /// bias would land on the skipped positions.)
    pub fn inheriting_pointwise(&self) -> Result<std::collections::HashSet<String>> {
        let pointwise =
            |l: &&Layer| matches!(&l.op, Op::Conv(c) if c.is_pointwise() && c.perforation.is_none());
        if !self.layers.iter().any(|l| pointwise(&l)) {
            return Ok(Default::default());
        }
        let plan = crate::plan::Plan::compile(self, 1, crate::plan::PlanOptions::default())?;
        Ok(self
            .layers
            .iter()
            .filter(pointwise)
            .filter(|l| {
                l.inputs
                    .first()
                    .and_then(|i| plan.output_of(i))
                    .and_then(|t| t.map())
                    .is_some_and(|m| m.kind() != crate::interp::MapKind::Zeros)
            })
            .map(|l| l.name.clone())
            .collect())
    }

    /// Perforates every eligible conv at kept fraction `q` (seeds `seed`, `seed + 1`, ...
    /// in layer order) and returns their names: in layer order, so a pointwise conv whose
    /// input has become compact by then inherits that map instead.
    pub fn perforate_all(&mut self, kept_fraction: f64, seed: u64) -> Result<Vec<String>> {
        self.perforate_all_with(kept_fraction, seed, &MaskStrategy::Uniform)
    }

    /// Sets how every perforated conv fills its skipped outputs.
    pub fn set_interpolation(&mut self, interpolation: Interpolation) {
        for layer in &mut self.layers {
            if let Op::Conv(Conv { perforation: Some(p), .. }) = &mut layer.op {
                p.interpolation = interpolation;
            }
        }
    }

    /// Perforates every eligible conv at kept fraction `q` with the mask `strategy`.
    pub fn perforate_all_with(
        &mut self,
        kept_fraction: f64,
        seed: u64,
        strategy: &MaskStrategy,
    ) -> Result<Vec<String>> {
        let names = self.eligible_convs()?;
        let mut done: Vec<String> = Vec::new();
        // Whether a conv was perforated since the last look at which pointwise convs inherit.
        let mut changed = true;
        let mut inheriting = Default::default();
        for name in &names {
            if self.layer(name).is_some_and(|l| matches!(&l.op, Op::Conv(c) if c.is_pointwise())) {
                if changed {
                    inheriting = self.inheriting_pointwise()?;
                    changed = false;
                }
                if inheriting.contains(name) {
                    continue;
                }
            }
            self.set_perforation_with(
                name,
                kept_fraction,
                seed.wrapping_add(done.len() as u64),
                strategy.clone(),
            )?;
            done.push(name.clone());
            changed = true;
        }
        Ok(done)
    }

    /// Theoretical speedup of the network at `batch`: FLOPs of the dense network over
    /// FLOPs with the current perforation, all layers counted (METHOD.md §1 cost model).
    pub fn theoretical_speedup(&self) -> Result<f64> {
        let options = crate::plan::PlanOptions::default();
        let dense = crate::plan::Plan::compile(&self.dense(), 1, options)?;
        let perforated = crate::plan::Plan::compile(self, 1, options)?;
        Ok(dense.flops() as f64 / perforated.flops() as f64)
    }

    /// The paper's *resize* baseline: this network, unperforated, on a smaller input whose
    /// height (and proportional width) is chosen so that total FLOPs fall by `speedup` as
    /// closely as integer sizes allow. Images must be resized to the new input size by the
    /// caller. Networks whose classifier depends on the input size (Flatten before Linear,
    /// as in AlexNet and VGG) cannot be resized and give an error.
    pub fn resized_for_speedup(&self, speedup: f64) -> Result<Network> {
        if !(speedup >= 1.0 && speedup.is_finite()) {
            return Err(Error::InvalidArgument(format!("resize speedup must be at least 1, got {speedup}")));
        }
        let dense = self.dense();
        let options = crate::plan::PlanOptions::default();
        let full = crate::plan::Plan::compile(&dense, 1, options)?.flops() as f64;
        let (h, w) = (dense.input.height, dense.input.width);
        let at = |height: usize| -> Result<(Network, f64)> {
            let mut net = dense.clone();
            net.input.height = height;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let width = ((w * height) as f64 / h as f64).round().max(1.0) as usize;
            net.input.width = width;
            let flops = crate::plan::Plan::compile(&net, 1, options)?.flops() as f64;
            Ok((net, full / flops))
        };
        // FLOPs grow with the input height: bisect for the height whose speedup is closest.
        let (mut lo, mut hi) = (1usize, h);
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            match at(mid) {
                Ok((_, s)) if s > speedup => lo = mid,
                Ok(_) => hi = mid,
                Err(_) => lo = mid, // too small for the network: go larger
            }
        }
        let candidates = [lo, hi].into_iter().filter_map(|height| at(height).ok());
        let best =
            candidates.min_by(|a, b| (a.1 / speedup).ln().abs().total_cmp(&(b.1 / speedup).ln().abs()));
        match best {
            // Sizes the network cannot take are skipped above; an answer far from the request
            // means no smaller size worked at all.
            Some((net, got)) if (got / speedup - 1.0).abs() <= 0.25 => Ok(net),
            _ => Err(Error::InvalidArgument(format!(
                "network '{}' cannot run on a smaller input (a classifier sized for {h}x{w}?): \
                 the resize baseline needs global pooling before the classifier: {}",
                self.name,
                at(h.saturating_sub(1).max(1)).err().map_or(String::new(), |e| e.to_string())
            ))),
        }
    }

    /// The network as JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string(self).map_err(|e| Error::InvalidArgument(format!("serialising network: {e}")))
    }

    /// A network from JSON.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::InvalidArgument(format!("parsing network JSON: {e}")))
    }
}
