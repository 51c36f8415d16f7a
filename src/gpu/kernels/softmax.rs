//! Launches `shaders/softmax.wgsl`.

use super::{linear_workgroups, LaunchBuilder};
use crate::gpu::shaders::Kernel;
use crate::params::SoftmaxParams;

/// Queues a launch with the shader's bindings: params, input, out (one thread per image
/// and position).
pub(crate) fn softmax(
    b: &mut LaunchBuilder<'_>,
    params: &SoftmaxParams,
    input: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    b.push(Kernel::Softmax, params, &[input, out], linear_workgroups(params.rows * params.plane.max(1)))
}
