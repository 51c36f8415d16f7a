//! The GPU executor of a perforated convolution layer, and the pieces of it that a whole
//! network plan reuses.

use std::sync::Mutex;

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::buffers::{read_f32, staging, storage, storage_init};
use super::context::GpuContext;
use super::kernels::conv_fused::conv_fused;
use super::kernels::{
    depthwise_masked::depthwise_masked,
    encode_commands,
    gather_interp::gather_interp,
    im2col_masked::im2col_masked,
    matmul_narrow,
    matmul_tiled::{matmul_tiled, MatmulTile},
    Command, LaunchBuilder,
};
use crate::error::{Error, Result};
use crate::layer::{ConvLayer, ConvSchedule, ConvSettings, GemmTile};
use crate::params::{ConvFusedParams, MatmulTiledParams};

/// Upper bound on the bytes of one im2col chunk on the GPU when the settings give none:
/// large enough that a chunk spans several images (a whole-batch GEMM keeps every core of
/// a real GPU busy), small enough that the workspace stays modest.
pub const GPU_COLUMN_BUDGET_BYTES: u64 = 256 << 20;

/// The settings a GPU executor schedules with: `images_per_gemm: None` stacks the whole
/// batch into each GEMM (bounded by [`GPU_COLUMN_BUDGET_BYTES`] unless `max_chunk_bytes`
/// is given) instead of the CPU's ⌊1/q⌋ microbatches, which leave a GPU mostly idle.
pub(crate) fn gpu_settings(settings: &ConvSettings) -> ConvSettings {
    match settings.images_per_gemm {
        Some(_) => *settings,
        None => ConvSettings {
            images_per_gemm: Some(usize::MAX),
            max_chunk_bytes: Some(settings.max_chunk_bytes.unwrap_or(GPU_COLUMN_BUDGET_BYTES)),
            ..*settings
        },
    }
}

/// Bytes of `len` floats.
pub(crate) fn bytes_of_len(len: usize) -> u64 {
    len as u64 * 4
}

/// The device-side tables of one convolution: packed weights, bias, mask and the input
/// map (a 16-byte placeholder when the input is dense).
pub(crate) struct ConvTables {
    /// The packed weight matrix and its biases in row blocks that each fit one storage
    /// binding (one block unless the matrix is larger than the device allows).
    blocks: Vec<WeightBlock>,
    mask: wgpu::Buffer,
    in_map: wgpu::Buffer,
}

/// Rows `rows` of a layer's packed weight matrix (all groups stacked) and their biases.
struct WeightBlock {
    rows: std::ops::Range<usize>,
    weights: wgpu::Buffer,
    bias: wgpu::Buffer,
}

impl ConvTables {
    /// Uploads the tables of `layer`, the weight matrix split into row blocks that each fit
    /// the context's storage-binding limit.
    ///
    /// # Errors
    /// [`Error::TooLarge`] when a single row of weights exceeds the limit (no split helps).
    pub(crate) fn upload(ctx: &GpuContext, layer: &ConvLayer) -> Result<Self> {
        let (packed, lda) = layer.packed_weights();
        let row_bytes = 4 * lda as u64;
        let limit = ctx.max_binding_bytes();
        if row_bytes > limit {
            return Err(Error::TooLarge(format!(
                "one row of conv weights ({lda} values, {row_bytes} bytes) exceeds the {limit}-byte \
                 storage-binding limit of {}: no row split fits it",
                ctx.adapter_info().name
            )));
        }
        let rows_per_block = usize::try_from(limit / row_bytes).unwrap_or(usize::MAX).max(1);
        let out_channels = layer.geometry().out_channels;
        let blocks = (0..out_channels)
            .step_by(rows_per_block)
            .map(|r0| {
                let rows = r0..(r0 + rows_per_block).min(out_channels);
                Ok(WeightBlock {
                    weights: storage_init(
                        ctx,
                        "conv weights",
                        bytemuck::cast_slice(&packed[rows.start * lda..rows.end * lda]),
                    )?,
                    bias: storage_init(ctx, "conv bias", bytemuck::cast_slice(&layer.bias()[rows.clone()]))?,
                    rows,
                })
            })
            .collect::<Result<_>>()?;
        Ok(ConvTables {
            blocks,
            mask: storage_init(ctx, "conv mask", bytemuck::cast_slice(layer.mask().positions()))?,
            in_map: match layer.input_map() {
                Some(m) => storage_init(ctx, "conv input map", bytemuck::cast_slice(m.table()))?,
                None => storage_init(ctx, "conv input map (unused)", &[0u8; 16])?,
            },
        })
    }

    /// Queues the `im2col_masked → matmul_tiled` pairs of `schedule` (or its one
    /// `depthwise_masked` launch), reading `input` and
    /// writing the `[B, T, N]` compact output into `compact`, with `col` as workspace.
    pub(crate) fn queue(
        &self,
        b: &mut LaunchBuilder<'_>,
        schedule: &ConvSchedule,
        input: &wgpu::Buffer,
        col: &wgpu::Buffer,
        compact: &wgpu::Buffer,
        tile: GemmTile,
    ) {
        if let Some(p) = &schedule.depthwise {
            // A depthwise layer's weights are kh·kw per channel: one block always (a table
            // too large for one binding fails at upload, row by row).
            let block = &self.blocks[0];
            depthwise_masked(b, p, input, &self.mask, &self.in_map, &block.weights, &block.bias, compact);
        }
        for step in &schedule.steps {
            if !schedule.fused {
                im2col_masked(b, &step.im2col, input, &self.mask, &self.in_map, col);
            }
            // The group's rows, block by block: each launch reads its block from row 0 and
            // writes its rows' output channels.
            let (first, m) = (step.matmul.a_row_offset as usize, step.matmul.m as usize);
            for block in &self.blocks {
                let (start, end) = (first.max(block.rows.start), (first + m).min(block.rows.end));
                if start >= end {
                    continue;
                }
                let p = MatmulTiledParams {
                    m: to_u32_lossless(end - start),
                    a_row_offset: to_u32_lossless(start - block.rows.start),
                    out_channel_offset: step.matmul.out_channel_offset + to_u32_lossless(start - first),
                    ..step.matmul
                };
                if schedule.fused {
                    let f = ConvFusedParams::of(&step.im2col, &p);
                    let variant = MatmulTile::choose(&p, tile);
                    let (mask, in_map) = (&self.mask, &self.in_map);
                    conv_fused(b, variant, &f, &block.weights, input, mask, in_map, &block.bias, compact);
                } else if step.narrow {
                    matmul_narrow::matmul_narrow(b, &p, &block.weights, col, &block.bias, compact);
                } else {
                    let variant = MatmulTile::choose(&p, tile);
                    matmul_tiled(b, variant, &p, &block.weights, col, &block.bias, compact);
                }
            }
        }
    }
}

/// A [`ConvLayer`] compiled for a GPU: weights, mask and maps live on the device, every
/// launch (with its bind group and parameter block) is recorded once, and a run is one
/// command buffer: `im2col_masked → matmul_tiled` per chunk and group, then
/// `gather_interp` when a dense output of a perforated layer is asked for.
///
/// Runs on one `GpuConv` are serialised (they share the layer's buffers).
pub struct GpuConv {
    ctx: GpuContext,
    input_shape: Vec<usize>,
    output_shape: Vec<usize>,
    schedule: ConvSchedule,
    input: wgpu::Buffer,
    output: wgpu::Buffer,
    staging: wgpu::Buffer,
    commands: Vec<Command>,
    running: Mutex<()>,
}

impl std::fmt::Debug for GpuConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuConv")
            .field("input_shape", &self.input_shape)
            .field("output_shape", &self.output_shape)
            .field("commands", &self.commands.len())
            .finish()
    }
}

impl GpuConv {
    /// Uploads `layer` to the device of `ctx` and records its launches.
    ///
    /// Column chunks are bounded by the device's storage-binding limit (and by
    /// `settings.max_chunk_bytes`); tensors that cannot be bound at all give
    /// [`Error::TooLarge`].
    pub fn new(ctx: &GpuContext, layer: &ConvLayer, settings: ConvSettings) -> Result<Self> {
        let schedule = ConvSchedule::new(layer, &gpu_settings(&settings), ctx.max_binding_bytes())?;
        let input_shape = layer.input_shape();
        let output_shape = ConvSchedule::output_shape(layer, &settings);
        let input_len: usize = input_shape.iter().product();
        let compact_len: usize = layer.compact_output_shape().iter().product();
        let output_len: usize = output_shape.iter().product();

        let tables = ConvTables::upload(ctx, layer)?;
        let input = storage(ctx, "conv input", bytes_of_len(input_len))?;
        let col = storage(ctx, "im2col columns", bytes_of_len(schedule.col_len))?;
        let compact = storage(ctx, "conv compact output", bytes_of_len(compact_len))?;
        let mut builder = LaunchBuilder::new(ctx);
        tables.queue(&mut builder, &schedule, &input, &col, &compact, settings.gemm_tile);
        let output = match &schedule.gather {
            Some(g) => {
                let map = layer.interpolation_map().table();
                let map = storage_init(ctx, "conv interpolation map", bytemuck::cast_slice(map))?;
                let dense = storage(ctx, "conv dense output", bytes_of_len(output_len))?;
                // No addend: the map buffer stands in for the unread binding.
                gather_interp(&mut builder, g, &compact, &map, &map, &dense);
                dense
            }
            None => compact,
        };
        let commands = builder.finish("conv params")?;
        let staging = staging(ctx, "conv readback", bytes_of_len(output_len))?;
        Ok(GpuConv {
            ctx: ctx.clone(),
            input_shape,
            output_shape,
            schedule,
            input,
            output,
            staging,
            commands,
            running: Mutex::new(()),
        })
    }

    /// The resolved launch schedule (identical to the CPU executor's for equal settings).
    pub fn schedule(&self) -> &ConvSchedule {
        &self.schedule
    }

    /// Number of kernel launches per run.
    pub fn launch_count(&self) -> usize {
        self.commands.len()
    }

    /// Runs the layer: uploads `input`, executes, and reads the output back.
    pub fn run(&self, input: ArrayViewD<'_, f32>) -> Result<ArrayD<f32>> {
        let _guard = self.running.lock().map_err(|_| Error::Gpu("a previous run panicked".into()))?;
        self.upload(input)?;
        let output_len: usize = self.output_shape.iter().product();
        let commands = self.encode_with_readback();
        self.ctx.submit_and_wait(commands)?;
        let data = read_f32(&self.ctx, &self.staging, output_len)?;
        Ok(ArrayD::from_shape_vec(IxDyn(&self.output_shape), data).expect("output length matches its shape"))
    }

    /// Uploads an input without running (for benchmarks that time [`GpuConv::execute`]).
    pub fn upload(&self, input: ArrayViewD<'_, f32>) -> Result<()> {
        upload_input(&self.ctx, &self.input, &self.input_shape, "GPU conv input", input)
    }

    /// Executes the layer on the last uploaded input and waits for the GPU, without
    /// reading the result back.
    pub fn execute(&self) -> Result<()> {
        self.execute_repeated(1)
    }

    /// Executes the layer `reps` times in one command buffer and waits once: kernel
    /// throughput without per-submission overhead (benchmarks).
    pub fn execute_repeated(&self, reps: usize) -> Result<()> {
        let _guard = self.running.lock().map_err(|_| Error::Gpu("a previous run panicked".into()))?;
        let mut encoder = self.ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("perforate repeated run"),
        });
        for _ in 0..reps {
            encode_commands(&mut encoder, &self.commands);
        }
        self.ctx.submit_and_wait(encoder.finish())
    }

    /// One run followed by the copy of the output into the staging buffer.
    fn encode_with_readback(&self) -> wgpu::CommandBuffer {
        let output_bytes = bytes_of_len(self.output_shape.iter().product());
        encode_run(&self.ctx, &self.commands, Some((&self.output, &self.staging, output_bytes)))
    }
}

/// Checks `input` against `shape` and writes it into `buffer`.
pub(crate) fn upload_input(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    shape: &[usize],
    what: &str,
    input: ArrayViewD<'_, f32>,
) -> Result<()> {
    if input.shape() != shape {
        return Err(Error::shape(what, format!("{shape:?}"), format!("{:?}", input.shape())));
    }
    let input = input.as_standard_layout();
    let x = input.as_slice().expect("standard layout is contiguous");
    ctx.scoped(|| ctx.queue().write_buffer(buffer, 0, bytemuck::cast_slice(x)))
}

/// One command buffer: every command, then (optionally) the copy of `bytes` of the
/// output into the staging buffer.
pub(crate) fn encode_run(
    ctx: &GpuContext,
    commands: &[Command],
    readback: Option<(&wgpu::Buffer, &wgpu::Buffer, u64)>,
) -> wgpu::CommandBuffer {
    let mut encoder =
        ctx.device().create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("perforate run") });
    encode_commands(&mut encoder, commands);
    if let Some((output, staging, bytes)) = readback {
        encoder.copy_buffer_to_buffer(output, 0, staging, 0, bytes);
    }
    encoder.finish()
}

/// A row count or offset already bounded by a `u32` field of the same step.
fn to_u32_lossless(v: usize) -> u32 {
    u32::try_from(v).expect("bounded by the step's u32 row fields")
}
