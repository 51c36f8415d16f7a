//! The GPU executor of a perforated convolution layer.

use std::sync::Mutex;

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::buffers::{read_f32, staging, storage, storage_init, UniformArena};
use super::context::GpuContext;
use super::kernels::{
    gather_interp::gather_interp, im2col_masked::im2col_masked, matmul_tiled::matmul_tiled, Launch,
};
use crate::error::{Error, Result};
use crate::layer::{ConvLayer, ConvSchedule, ConvSettings};

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
    launches: Vec<Launch>,
    running: Mutex<()>,
}

impl std::fmt::Debug for GpuConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuConv")
            .field("input_shape", &self.input_shape)
            .field("output_shape", &self.output_shape)
            .field("launches", &self.launches.len())
            .finish()
    }
}

fn bytes_of_len(len: usize) -> u64 {
    len as u64 * 4
}

impl GpuConv {
    /// Uploads `layer` to the device of `ctx` and records its launches.
    ///
    /// Column chunks are bounded by the device's storage-binding limit (and by
    /// `settings.max_chunk_bytes`); tensors that cannot be bound at all give
    /// [`Error::TooLarge`].
    pub fn new(ctx: &GpuContext, layer: &ConvLayer, settings: ConvSettings) -> Result<Self> {
        let schedule = ConvSchedule::new(layer, &settings, ctx.max_binding_bytes())?;
        let input_shape = layer.input_shape();
        let output_shape = ConvSchedule::output_shape(layer, &settings);
        let input_len: usize = input_shape.iter().product();
        let compact_len: usize = layer.compact_output_shape().iter().product();
        let output_len: usize = output_shape.iter().product();

        let (packed, _) = layer.packed_weights();
        let weights = storage_init(ctx, "conv weights", bytemuck::cast_slice(&packed))?;
        let bias = storage_init(ctx, "conv bias", bytemuck::cast_slice(layer.bias()))?;
        let mask = storage_init(
            ctx,
            "conv mask",
            bytemuck::cast_slice(layer.mask().positions()),
        )?;
        let in_map = match layer.input_map() {
            Some(m) => storage_init(ctx, "conv input map", bytemuck::cast_slice(m.indices()))?,
            None => storage_init(ctx, "conv input map (unused)", &[0u8; 16])?,
        };
        let input = storage(ctx, "conv input", bytes_of_len(input_len))?;
        let col = storage(ctx, "im2col columns", bytes_of_len(schedule.col_len))?;
        let compact = storage(ctx, "conv compact output", bytes_of_len(compact_len))?;

        let mut arena = UniformArena::new(ctx);
        let slots: Vec<_> = schedule
            .steps
            .iter()
            .map(|s| (arena.push(&s.im2col), arena.push(&s.matmul)))
            .collect();
        let gather_slot = schedule.gather.as_ref().map(|g| arena.push(g));
        let uniforms = arena.finish(ctx, "conv params")?;

        let mut launches = Vec::with_capacity(2 * schedule.steps.len() + 1);
        for (step, (im2col_slot, matmul_slot)) in schedule.steps.iter().zip(&slots) {
            launches.push(im2col_masked(
                ctx,
                &step.im2col,
                im2col_slot.binding(&uniforms),
                &input,
                &mask,
                &in_map,
                &col,
            )?);
            launches.push(matmul_tiled(
                ctx,
                &step.matmul,
                matmul_slot.binding(&uniforms),
                &weights,
                &col,
                &bias,
                &compact,
            )?);
        }
        let output = match (&schedule.gather, gather_slot) {
            (Some(g), Some(slot)) => {
                let map = storage_init(
                    ctx,
                    "conv interpolation map",
                    bytemuck::cast_slice(layer.interpolation_map().indices()),
                )?;
                let dense = storage(ctx, "conv dense output", bytes_of_len(output_len))?;
                launches.push(gather_interp(
                    ctx,
                    g,
                    slot.binding(&uniforms),
                    &compact,
                    &map,
                    &dense,
                )?);
                dense
            }
            _ => compact,
        };
        let staging = staging(ctx, "conv readback", bytes_of_len(output_len))?;
        Ok(GpuConv {
            ctx: ctx.clone(),
            input_shape,
            output_shape,
            schedule,
            input,
            output,
            staging,
            launches,
            running: Mutex::new(()),
        })
    }

    /// The resolved launch schedule (identical to the CPU executor's for equal settings).
    pub fn schedule(&self) -> &ConvSchedule {
        &self.schedule
    }

    /// Number of kernel launches per run.
    pub fn launch_count(&self) -> usize {
        self.launches.len()
    }

    /// Runs the layer: uploads `input`, executes, and reads the output back.
    pub fn run(&self, input: ArrayViewD<'_, f32>) -> Result<ArrayD<f32>> {
        let _guard = self
            .running
            .lock()
            .map_err(|_| Error::Gpu("a previous run panicked".into()))?;
        self.upload(input)?;
        let output_len: usize = self.output_shape.iter().product();
        let commands = self.encode(true);
        self.ctx.submit_and_wait(commands)?;
        let data = read_f32(&self.ctx, &self.staging, output_len)?;
        Ok(ArrayD::from_shape_vec(IxDyn(&self.output_shape), data)
            .expect("output length matches its shape"))
    }

    /// Uploads an input without running (for benchmarks that time [`GpuConv::execute`]).
    pub fn upload(&self, input: ArrayViewD<'_, f32>) -> Result<()> {
        if input.shape() != self.input_shape.as_slice() {
            return Err(Error::shape(
                "GPU conv input",
                format!("{:?}", self.input_shape),
                format!("{:?}", input.shape()),
            ));
        }
        let input = input.as_standard_layout();
        let x = input.as_slice().expect("standard layout is contiguous");
        self.ctx.scoped(|| {
            self.ctx
                .queue()
                .write_buffer(&self.input, 0, bytemuck::cast_slice(x))
        })
    }

    /// Executes the layer on the last uploaded input and waits for the GPU, without
    /// reading the result back.
    pub fn execute(&self) -> Result<()> {
        let _guard = self
            .running
            .lock()
            .map_err(|_| Error::Gpu("a previous run panicked".into()))?;
        self.ctx.submit_and_wait(self.encode(false))
    }

    fn encode(&self, readback: bool) -> wgpu::CommandBuffer {
        let mut encoder =
            self.ctx
                .device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("perforated conv"),
                });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("perforated conv"),
                timestamp_writes: None,
            });
            for launch in &self.launches {
                launch.record(&mut pass);
            }
        }
        if readback {
            let bytes = bytes_of_len(self.output_shape.iter().product());
            encoder.copy_buffer_to_buffer(&self.output, 0, &self.staging, 0, bytes);
        }
        encoder.finish()
    }
}
