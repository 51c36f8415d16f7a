//! Launches `shaders/matmul_strided.wgsl`.

use super::{linear_workgroups, LaunchBuilder};
use crate::gpu::shaders::Kernel;
use crate::params::MatmulStridedParams;

/// Queues a launch with the shader's bindings: params, a, b, out.
pub(crate) fn matmul_strided(
    b: &mut LaunchBuilder<'_>,
    params: &MatmulStridedParams,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    b.push(Kernel::MatmulStrided, params, &[x, y, out], linear_workgroups(params.images * params.out_image))
}
