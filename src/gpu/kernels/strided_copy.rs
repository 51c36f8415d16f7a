//! Launches `shaders/strided_copy.wgsl`.

use super::{linear_workgroups, LaunchBuilder};
use crate::gpu::shaders::Kernel;
use crate::params::StridedCopyParams;

/// Queues a launch with the shader's bindings: params, input, out.
pub(crate) fn strided_copy(
    b: &mut LaunchBuilder<'_>,
    params: &StridedCopyParams,
    input: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    b.push(Kernel::StridedCopy, params, &[input, out], linear_workgroups(params.images * params.out_image))
}
