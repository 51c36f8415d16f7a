//! Launches `shaders/softmax.wgsl`.

use super::LaunchBuilder;
use crate::gpu::shaders::Kernel;
use crate::params::SoftmaxParams;

/// Queues a launch with the shader's bindings: params, input, out (one thread per row).
pub(crate) fn softmax(
    b: &mut LaunchBuilder<'_>,
    params: &SoftmaxParams,
    input: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    b.push(Kernel::Softmax, params, &[input, out], [params.rows.div_ceil(64).max(1), 1, 1])
}
