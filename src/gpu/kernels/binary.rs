//! Launches `shaders/binary.wgsl`.

use super::{linear_workgroups, LaunchBuilder};
use crate::gpu::shaders::Kernel;
use crate::params::BinaryParams;

/// Queues a launch with the shader's bindings: params, a, b, out.
pub(crate) fn binary(
    b: &mut LaunchBuilder<'_>,
    params: &BinaryParams,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    b.push(Kernel::Binary, params, &[x, y, out], linear_workgroups(params.len))
}
