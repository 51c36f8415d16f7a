//! Launches `shaders/relu.wgsl`.

use super::{linear_workgroups, LaunchBuilder};
use crate::gpu::shaders::Kernel;
use crate::params::ReluParams;

/// Queues a launch with the shader's bindings: params, input, out.
pub(crate) fn relu(b: &mut LaunchBuilder<'_>, params: &ReluParams, input: &wgpu::Buffer, out: &wgpu::Buffer) {
    b.push(Kernel::Relu, params, &[input, out], linear_workgroups(params.len))
}
