//! Launches `shaders/gather_interp.wgsl`.

use super::{LaunchBuilder, MAX_WORKGROUPS_PER_DIM};
use crate::gpu::shaders::Kernel;
use crate::params::GatherInterpParams;

/// Threads per workgroup along the dense positions.
pub const WORKGROUP_SIZE: u32 = 256;

/// Workgroup counts: one thread per dense position, planes over the y dimension.
pub fn workgroups(p: &GatherInterpParams) -> [u32; 3] {
    [p.plane.div_ceil(WORKGROUP_SIZE), p.planes.clamp(1, MAX_WORKGROUPS_PER_DIM), 1]
}

/// Queues a launch with the shader's bindings: params, compact, map, addend (any buffer
/// when `params.residual` is 0: it is not read), dense.
pub(crate) fn gather_interp(
    b: &mut LaunchBuilder<'_>,
    params: &GatherInterpParams,
    compact: &wgpu::Buffer,
    map: &wgpu::Buffer,
    addend: &wgpu::Buffer,
    dense: &wgpu::Buffer,
) {
    b.push(Kernel::GatherInterp, params, &[compact, map, addend, dense], workgroups(params))
}
