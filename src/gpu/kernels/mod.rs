//! Host side of each kernel: typed bind-group construction (bindings in the shader's
//! order) and dispatch geometry. One module per shader, named after it.

pub mod gather_interp;
pub mod im2col_masked;
pub mod matmul_tiled;

use super::context::GpuContext;
use super::shaders::Kernel;
use crate::error::Result;

/// Largest workgroup count per dispatch dimension that every adapter grants.
pub const MAX_WORKGROUPS_PER_DIM: u32 = 65535;

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

/// Builds a launch: binding 0 is the kernel's uniform `Params` slice, bindings 1.. are
/// `storage` in order.
pub(crate) fn launch(
    ctx: &GpuContext,
    kernel: Kernel,
    params: wgpu::BufferBinding<'_>,
    storage: &[&wgpu::Buffer],
    workgroups: [u32; 3],
) -> Result<Launch> {
    let pipeline = ctx.pipeline(kernel)?;
    let layout = pipeline.get_bind_group_layout(0);
    let mut entries = vec![wgpu::BindGroupEntry {
        binding: 0,
        resource: wgpu::BindingResource::Buffer(params),
    }];
    for (binding, buffer) in (1u32..).zip(storage) {
        entries.push(wgpu::BindGroupEntry {
            binding,
            resource: buffer.as_entire_binding(),
        });
    }
    let bind_group = ctx.scoped(|| {
        ctx.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(kernel.label()),
            layout: &layout,
            entries: &entries,
        })
    })?;
    Ok(Launch {
        kernel,
        pipeline,
        bind_group,
        workgroups,
    })
}
