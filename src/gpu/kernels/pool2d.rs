//! Launches `shaders/pool2d.wgsl`.

use super::{LaunchBuilder, MAX_WORKGROUPS_PER_DIM};
use crate::gpu::shaders::Kernel;
use crate::params::Pool2dParams;

/// Workgroup counts: one thread per output position, planes over the y dimension.
pub fn workgroups(p: &Pool2dParams) -> [u32; 3] {
    [(p.out_h * p.out_w).div_ceil(256), p.planes.clamp(1, MAX_WORKGROUPS_PER_DIM), 1]
}

/// Queues a launch with the shader's bindings: params, input, in_map, out.
pub(crate) fn pool2d(
    b: &mut LaunchBuilder<'_>,
    params: &Pool2dParams,
    input: &wgpu::Buffer,
    in_map: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    b.push(Kernel::Pool2d, params, &[input, in_map, out], workgroups(params))
}
