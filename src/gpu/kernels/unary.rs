//! Launches `shaders/unary.wgsl`.

use super::{linear_workgroups, LaunchBuilder};
use crate::gpu::shaders::Kernel;
use crate::params::UnaryParams;

/// Queues a launch with the shader's bindings: params, input, out.
pub(crate) fn unary(
    b: &mut LaunchBuilder<'_>,
    params: &UnaryParams,
    input: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    b.push(Kernel::Unary, params, &[input, out], linear_workgroups(params.len))
}
