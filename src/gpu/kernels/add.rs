//! Launches `shaders/add.wgsl`.

use super::{linear_workgroups, LaunchBuilder};
use crate::gpu::shaders::Kernel;
use crate::params::AddParams;

/// Queues a launch with the shader's bindings: params, a, b, out.
pub(crate) fn add(
    b: &mut LaunchBuilder<'_>,
    params: &AddParams,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    b.push(Kernel::Add, params, &[x, y, out], linear_workgroups(params.len))
}
