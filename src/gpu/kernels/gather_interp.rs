//! Launches `shaders/gather_interp.wgsl`.

use super::{launch, Launch, MAX_WORKGROUPS_PER_DIM};
use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::shaders::Kernel;
use crate::params::GatherInterpParams;

/// Threads per workgroup along the dense positions.
pub const WORKGROUP_SIZE: u32 = 256;

/// Workgroup counts: one thread per dense position, planes over the y dimension.
pub fn workgroups(p: &GatherInterpParams) -> [u32; 3] {
    [
        p.plane.div_ceil(WORKGROUP_SIZE),
        p.planes.clamp(1, MAX_WORKGROUPS_PER_DIM),
        1,
    ]
}

/// A launch with the shader's bindings: params, compact, map, dense.
pub fn gather_interp(
    ctx: &GpuContext,
    params: &GatherInterpParams,
    params_binding: wgpu::BufferBinding<'_>,
    compact: &wgpu::Buffer,
    map: &wgpu::Buffer,
    dense: &wgpu::Buffer,
) -> Result<Launch> {
    launch(
        ctx,
        Kernel::GatherInterp,
        params_binding,
        &[compact, map, dense],
        workgroups(params),
    )
}
