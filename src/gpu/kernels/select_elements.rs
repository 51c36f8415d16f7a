//! Launches `shaders/select_elements.wgsl`.

use super::{linear_workgroups, LaunchBuilder};
use crate::gpu::shaders::Kernel;
use crate::params::SelectElementsParams;

/// Queues a launch with the shader's bindings: params, cond, a, b, out.
pub(crate) fn select_elements(
    b: &mut LaunchBuilder<'_>,
    params: &SelectElementsParams,
    cond: &wgpu::Buffer,
    a: &wgpu::Buffer,
    other: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    b.push(Kernel::SelectElements, params, &[cond, a, other, out], linear_workgroups(params.len))
}
