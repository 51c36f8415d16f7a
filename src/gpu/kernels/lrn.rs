//! Launches `shaders/lrn.wgsl`.

use super::{LaunchBuilder, MAX_WORKGROUPS_PER_DIM};
use crate::gpu::shaders::Kernel;
use crate::params::LrnParams;

/// Workgroup counts: one thread per position, (image, channel) over the y dimension.
pub fn workgroups(p: &LrnParams) -> [u32; 3] {
    [p.positions.div_ceil(256), (p.images * p.channels).clamp(1, MAX_WORKGROUPS_PER_DIM), 1]
}

/// Queues a launch with the shader's bindings: params, input, out.
pub(crate) fn lrn(b: &mut LaunchBuilder<'_>, params: &LrnParams, input: &wgpu::Buffer, out: &wgpu::Buffer) {
    b.push(Kernel::Lrn, params, &[input, out], workgroups(params))
}
