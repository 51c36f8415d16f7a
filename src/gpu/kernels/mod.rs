//! Host side of each kernel: typed launch functions (buffers in the shader's binding
//! order) and dispatch geometry. One module per shader, named after it.
//!
//! Launches are recorded in two phases through a [`LaunchBuilder`]: each launch's
//! `Params` block goes into one uniform arena, and once the arena is uploaded the bind
//! groups are created. A compiled layer or plan keeps the resulting [`Command`]s
//! (launches and buffer copies, in order) and replays them every run.

pub mod add;
pub mod binary;
pub mod channel_affine;
pub mod clip;
pub mod conv_fused;
pub mod depthwise_masked;
pub mod gather_interp;
pub mod im2col_masked;
pub mod lrn;
pub mod matmul_narrow;
pub mod matmul_strided;
pub mod matmul_tiled;
pub mod pool2d;
pub mod reduce_channels;
pub mod relu;
pub mod resample;
pub mod select_channels;
pub mod select_elements;
pub mod softmax;
pub mod strided_copy;
pub mod unary;

use super::buffers::{UniformArena, UniformSlot};
use super::context::GpuContext;
use super::shaders::Kernel;
use crate::error::Result;

/// Largest workgroup count per dispatch dimension that every adapter grants.
pub const MAX_WORKGROUPS_PER_DIM: u32 = 65535;

/// Workgroups of 256 threads covering `len` elements, folded into x and y so that no
/// dimension exceeds [`MAX_WORKGROUPS_PER_DIM`] (shaders compute
/// `i = gid.x + gid.y · num_workgroups.x · 256`).
pub fn linear_workgroups(len: u32) -> [u32; 3] {
    let groups = len.div_ceil(256).max(1);
    let x = groups.min(MAX_WORKGROUPS_PER_DIM);
    [x, groups.div_ceil(x), 1]
}

/// One recorded kernel launch: pipeline, bindings and workgroup counts.
#[derive(Debug)]
pub struct Launch {
    /// Which kernel.
    pub kernel: Kernel,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    workgroups: [u32; 3],
}

impl Launch {
    /// Records the launch into a compute pass.
    pub fn record(&self, pass: &mut wgpu::ComputePass<'_>) {
        pass.set_pipeline(&self.pipeline);
        pass.set_bind_group(0, &self.bind_group, &[]);
        let [x, y, z] = self.workgroups;
        pass.dispatch_workgroups(x, y, z);
    }
}

/// One recorded step of a run: a kernel launch or a buffer-to-buffer copy.
#[derive(Debug)]
pub enum Command {
    /// A compute dispatch.
    Launch(Launch),
    /// `copy_buffer_to_buffer` (channel concatenation).
    Copy {
        /// Source buffer.
        src: wgpu::Buffer,
        /// Byte offset in the source.
        src_offset: u64,
        /// Destination buffer.
        dst: wgpu::Buffer,
        /// Byte offset in the destination.
        dst_offset: u64,
        /// Bytes to copy.
        size: u64,
    },
}

/// Records `commands` in order: consecutive launches share one compute pass.
pub fn encode_commands(encoder: &mut wgpu::CommandEncoder, commands: &[Command]) {
    let mut i = 0;
    while i < commands.len() {
        if let Command::Copy { src, src_offset, dst, dst_offset, size } = &commands[i] {
            encoder.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *size);
            i += 1;
            continue;
        }
        let mut pass =
            encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
        while let Some(Command::Launch(launch)) = commands.get(i) {
            launch.record(&mut pass);
            i += 1;
        }
    }
}

/// Values for a kernel's pipeline-overridable constants (`override` in WGSL): one
/// compiled variant of a shader. `name` tells variants apart in the pipeline cache and the
/// pipeline label (`kernel/name`); the default (no constants) has an empty name.
#[derive(Clone, Copy, Debug, Default)]
pub struct Specialization {
    /// Variant name, unique per kernel.
    pub name: &'static str,
    /// `(override name, value)` pairs.
    pub constants: &'static [(&'static str, f64)],
}

// The name identifies a variant (f64 constants are neither Eq nor Hash).
impl PartialEq for Specialization {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Specialization {}

impl std::hash::Hash for Specialization {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

enum Pending {
    Launch {
        kernel: Kernel,
        spec: Specialization,
        slot: UniformSlot,
        buffers: Vec<wgpu::Buffer>,
        workgroups: [u32; 3],
    },
    Copy {
        src: wgpu::Buffer,
        src_offset: u64,
        dst: wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    },
}

/// Collects launches (parameters and buffers) and copies, then builds every bind group at
/// once.
pub(crate) struct LaunchBuilder<'c> {
    ctx: &'c GpuContext,
    arena: UniformArena,
    pending: Vec<Pending>,
}

impl<'c> LaunchBuilder<'c> {
    pub(crate) fn new(ctx: &'c GpuContext) -> Self {
        LaunchBuilder { ctx, arena: UniformArena::new(ctx), pending: Vec::new() }
    }

    /// Queues a launch: binding 0 is `params`, bindings 1.. are `buffers` in order.
    pub(crate) fn push<P: bytemuck::Pod>(
        &mut self,
        kernel: Kernel,
        params: &P,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) {
        self.push_specialized(kernel, Specialization::default(), params, buffers, workgroups)
    }

    /// Queues a launch of the variant `spec` of `kernel`.
    pub(crate) fn push_specialized<P: bytemuck::Pod>(
        &mut self,
        kernel: Kernel,
        spec: Specialization,
        params: &P,
        buffers: &[&wgpu::Buffer],
        workgroups: [u32; 3],
    ) {
        let slot = self.arena.push(params);
        let buffers = buffers.iter().map(|&b| b.clone()).collect();
        self.pending.push(Pending::Launch { kernel, spec, slot, buffers, workgroups });
    }

    /// Queues a copy of `size` bytes.
    pub(crate) fn copy(
        &mut self,
        src: &wgpu::Buffer,
        src_offset: u64,
        dst: &wgpu::Buffer,
        dst_offset: u64,
        size: u64,
    ) {
        let (src, dst) = (src.clone(), dst.clone());
        self.pending.push(Pending::Copy { src, src_offset, dst, dst_offset, size });
    }

    /// Uploads the parameters and creates every bind group.
    pub(crate) fn finish(self, label: &str) -> Result<Vec<Command>> {
        let ctx = self.ctx;
        let uniforms = self.arena.finish(ctx, label)?;
        self.pending
            .into_iter()
            .map(|p| {
                let (kernel, spec, slot, buffers, workgroups) = match p {
                    Pending::Copy { src, src_offset, dst, dst_offset, size } => {
                        return Ok(Command::Copy { src, src_offset, dst, dst_offset, size })
                    }
                    Pending::Launch { kernel, spec, slot, buffers, workgroups } => {
                        (kernel, spec, slot, buffers, workgroups)
                    }
                };
                let pipeline = ctx.pipeline(kernel, spec)?;
                let layout = pipeline.get_bind_group_layout(0);
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(slot.binding(&uniforms)),
                }];
                for (binding, buffer) in (1u32..).zip(&buffers) {
                    entries.push(wgpu::BindGroupEntry { binding, resource: buffer.as_entire_binding() });
                }
                let bind_group = ctx.scoped(|| {
                    ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some(kernel.label()),
                        layout: &layout,
                        entries: &entries,
                    })
                })?;
                Ok(Command::Launch(Launch { kernel, pipeline, bind_group, workgroups }))
            })
            .collect()
    }
}
