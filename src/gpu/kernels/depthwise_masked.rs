//! Launches `shaders/depthwise_masked.wgsl`.

use super::{linear_workgroups, LaunchBuilder};
use crate::gpu::shaders::Kernel;
use crate::params::DepthwiseMaskedParams;

/// Workgroup counts: one thread per output value.
pub fn workgroups(p: &DepthwiseMaskedParams) -> [u32; 3] {
    linear_workgroups(p.images * p.out_channels * p.n_pos)
}

/// Queues a launch with the shader's bindings: params, input, mask, in_map, weights,
/// bias, out.
#[allow(clippy::too_many_arguments)]
pub(crate) fn depthwise_masked(
    b: &mut LaunchBuilder<'_>,
    params: &DepthwiseMaskedParams,
    input: &wgpu::Buffer,
    mask: &wgpu::Buffer,
    in_map: &wgpu::Buffer,
    weights: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    b.push(Kernel::DepthwiseMasked, params, &[input, mask, in_map, weights, bias, out], workgroups(params))
}
