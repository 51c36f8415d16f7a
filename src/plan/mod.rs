//! A network compiled for one input shape: every tensor's shape and form, every index
//! table, the steps to run, and the buffer slot of every tensor. Both executors run the
//! same plan ([`crate::cpu::CpuExecutor`], [`crate::gpu::GpuExecutor`]).

mod checks;
mod compile;
mod data_layers;
mod elementwise;
mod graph;
pub(crate) use graph::{layer_error, order};
mod memory;
mod single;
pub(crate) use single::{lower_layer, LayerSteps};
mod slots;
mod tensor_params;

use std::sync::Arc;

use ndarray::{ArrayD, ArrayViewD};

pub use memory::{MemoryReport, MemoryRow};

use crate::error::Result;
use crate::interp::InterpMap;
use crate::layer::{ConvKernels, ConvLayer, ConvSettings};
use crate::params::{
    AddParams, BinaryParams, ChannelAffineParams, ClipParams, GatherInterpParams, LrnParams,
    MatmulStridedParams, Pool2dParams, ReduceChannelsParams, ReluParams, ResampleParams,
    SelectChannelsParams, SelectElementsParams, SoftmaxParams, StridedCopyParams, UnaryParams,
};

/// Index of a tensor in [`Plan::tensors`].
pub type TensorId = usize;

/// How a tensor's positions are stored.
#[derive(Clone, Debug)]
pub enum Form {
    /// All H×W positions: `[B, C, H, W]`.
    Dense,
    /// The N positions of a mask: `[B, C, N]`, expanded through the map when needed.
    Compact(Arc<InterpMap>),
}

/// One tensor of the plan.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    /// The layer (or input) that produces it.
    pub producer: String,
    /// Images.
    pub batch: usize,
    /// Channels (features for a flat tensor).
    pub channels: usize,
    /// Height of the (interpolated) map.
    pub height: usize,
    /// Width of the (interpolated) map.
    pub width: usize,
    /// Dense or compact.
    pub form: Form,
    /// The tensor whose storage this one shares (itself, or the source of a reshape /
    /// identity such as Flatten or Dropout).
    pub storage: TensorId,
}

impl TensorInfo {
    /// Elements per channel plane: H·W, or N when compact.
    pub fn plane(&self) -> usize {
        match &self.form {
            Form::Dense => self.height * self.width,
            Form::Compact(map) => map.compact_len(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.plane()
    }

    /// Whether the tensor holds no element (never, for a compiled plan).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of storage.
    pub fn bytes(&self) -> u64 {
        self.len() as u64 * 4
    }

    /// `[B, C, H, W]` when dense, `[B, C, N]` when compact.
    pub fn shape(&self) -> Vec<usize> {
        match &self.form {
            Form::Dense => vec![self.batch, self.channels, self.height, self.width],
            Form::Compact(map) => vec![self.batch, self.channels, map.compact_len()],
        }
    }

    /// The interpolation map of a compact tensor.
    pub fn map(&self) -> Option<&Arc<InterpMap>> {
        match &self.form {
            Form::Dense => None,
            Form::Compact(map) => Some(map),
        }
    }
}

/// What one step computes; each variant maps to one kernel (or buffer copies).
#[derive(Clone, Debug)]
pub enum StepOp {
    /// `im2col_masked → matmul_tiled`: a convolution (or a fully connected layer as a 1×1
    /// convolution) writing its compact output.
    Conv {
        /// The layer, with BN folded in, ReLU fused, input map and mask resolved.
        layer: Box<ConvLayer>,
        /// Executor settings (output always compact; microbatching).
        settings: ConvSettings,
    },
    /// `gather_interp`: compact → dense; with `params.residual`, plus the dense second
    /// input (a residual Add reading its compact operand through the map).
    Gather {
        /// Launch parameters.
        params: GatherInterpParams,
        /// The map of the compact input.
        map: Arc<InterpMap>,
    },
    /// `pool2d`, through the input's map when it is compact.
    Pool {
        /// Launch parameters.
        params: Pool2dParams,
        /// The map of a compact input.
        in_map: Option<Arc<InterpMap>>,
    },
    /// `lrn`.
    Lrn(LrnParams),
    /// `relu`.
    Relu(ReluParams),
    /// `clip`.
    Clip(ClipParams),
    /// `add` of the two inputs.
    Add(AddParams),
    /// `channel_affine` (batch normalisation not folded into a convolution).
    Affine {
        /// Launch parameters.
        params: ChannelAffineParams,
        /// Per-channel scale.
        scale: Vec<f32>,
        /// Per-channel shift.
        shift: Vec<f32>,
    },
    /// `softmax` over the channels.
    Softmax(SoftmaxParams),
    /// `strided_copy` of the input.
    StridedCopy(StridedCopyParams),
    /// `strided_copy` of constant values (the same block for every image).
    Constant {
        /// Launch parameters (`in_image` 0).
        params: StridedCopyParams,
        /// One image's values.
        values: Vec<f32>,
    },
    /// `matmul_strided` of the two inputs.
    MatmulStrided(MatmulStridedParams),
    /// Channel concatenation of the inputs (buffer copies).
    Concat,
    /// `unary`.
    Unary(UnaryParams),
    /// `binary` of the two inputs.
    Binary(BinaryParams),
    /// `reduce_channels`.
    ReduceChannels(ReduceChannelsParams),
    /// `select_channels`.
    SelectChannels {
        /// Launch parameters.
        params: SelectChannelsParams,
        /// Input channel of each output channel.
        channels: Vec<u32>,
    },
    /// `select_elements` of the inputs `[cond, a, b]`.
    SelectElements(SelectElementsParams),
    /// `resample`.
    Resample {
        /// Launch parameters.
        params: ResampleParams,
        /// Row taps then column taps (`RESAMPLE_FILL` reads the fill value).
        index: Vec<u32>,
        /// Their weights, in the same order.
        weight: Vec<f32>,
    },
}

impl StepOp {
    /// The kernel (or operation) name.
    pub fn kernel(&self) -> &'static str {
        match self {
            StepOp::Conv { .. } => "im2col_masked+matmul_tiled",
            StepOp::Gather { .. } => "gather_interp",
            StepOp::Pool { .. } => "pool2d",
            StepOp::Lrn(_) => "lrn",
            StepOp::Relu(_) => "relu",
            StepOp::Clip(_) => "clip",
            StepOp::Add(_) => "add",
            StepOp::Affine { .. } => "channel_affine",
            StepOp::Softmax(_) => "softmax",
            StepOp::StridedCopy(_) | StepOp::Constant { .. } => "strided_copy",
            StepOp::MatmulStrided(_) => "matmul_strided",
            StepOp::Concat => "concat",
            StepOp::Unary(_) => "unary",
            StepOp::Binary(_) => "binary",
            StepOp::SelectChannels { .. } => "select_channels",
            StepOp::ReduceChannels(_) => "reduce_channels",
            StepOp::Resample { .. } => "resample",
            StepOp::SelectElements(_) => "select_elements",
        }
    }
}

/// One step of a plan.
#[derive(Clone, Debug)]
pub struct Step {
    /// The network layer this step implements (gathers carry the consumer's name).
    pub layer: String,
    /// What it computes.
    pub op: StepOp,
    /// Tensors read.
    pub inputs: Vec<TensorId>,
    /// Tensor written.
    pub output: TensorId,
    /// Cost-model FLOPs of the step.
    pub flops: u64,
}

/// Compilation options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlanOptions {
    /// Reuse buffer slots of dead tensors (off: one slot per tensor, for testing).
    pub reuse_buffers: bool,
    /// Fold BatchNorm into a preceding conv and fuse ReLU into its producer.
    pub fuse: bool,
    /// Which kernels the convs (and fully connected layers) run on the GPU and in the CPU
    /// reference executor ([`ConvKernels::Fused`] forces the fused masked conv).
    pub conv_kernels: ConvKernels,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions { reuse_buffers: true, fuse: true, conv_kernels: ConvKernels::Auto }
    }
}

/// A network compiled for one batch size: built once by [`Plan::compile`], then run any
/// number of times by an executor.
#[derive(Clone, Debug)]
pub struct Plan {
    name: String,
    batch: usize,
    tensors: Vec<TensorInfo>,
    steps: Vec<Step>,
    input: TensorId,
    output: TensorId,
    layer_outputs: std::collections::HashMap<String, TensorId>,
    slot_of: Vec<usize>,
    slot_sizes: Vec<usize>,
    options: PlanOptions,
}

impl Plan {
    /// The network's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Images per run.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The options the plan was compiled with.
    pub fn options(&self) -> PlanOptions {
        self.options
    }

    /// Every tensor.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// One tensor.
    pub fn tensor(&self, id: TensorId) -> &TensorInfo {
        &self.tensors[id]
    }

    /// The steps, in execution order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// The input tensor.
    pub fn input(&self) -> TensorId {
        self.input
    }

    /// The output tensor (always dense).
    pub fn output(&self) -> TensorId {
        self.output
    }

    /// Shape the input must have, `[B, C, H, W]`.
    pub fn input_shape(&self) -> Vec<usize> {
        self.tensors[self.input].shape()
    }

    /// Shape of the output.
    pub fn output_shape(&self) -> Vec<usize> {
        self.tensors[self.output].shape()
    }

    /// The tensor holding the output of the layer `name` (after fusion, the output of the
    /// step that absorbed it).
    pub fn output_of(&self, name: &str) -> Option<&TensorInfo> {
        self.layer_outputs.get(name).map(|&t| &self.tensors[t])
    }

    /// The buffer slot of a tensor.
    pub fn slot(&self, id: TensorId) -> usize {
        self.slot_of[self.tensors[id].storage]
    }

    /// Size of every buffer slot, in floats.
    pub fn slot_sizes(&self) -> &[usize] {
        &self.slot_sizes
    }

    /// Total cost-model FLOPs of one run.
    pub fn flops(&self) -> u64 {
        self.steps.iter().map(|s| s.flops).sum()
    }
}

/// What both executors offer: run the compiled plan on an input.
pub trait Executor {
    /// Runs on `input` (shape [`Plan::input_shape`]) and returns the output.
    fn run(&self, input: ArrayViewD<'_, f32>) -> Result<ArrayD<f32>>;

    /// A one-line description (executor and device).
    fn describe(&self) -> String;
}
