//! Launches `shaders/resample.wgsl`.

use super::{linear_workgroups, LaunchBuilder};
use crate::gpu::shaders::Kernel;
use crate::params::ResampleParams;

/// Queues a launch with the shader's bindings: params, input, index, weight, out.
pub(crate) fn resample(
    b: &mut LaunchBuilder<'_>,
    params: &ResampleParams,
    input: &wgpu::Buffer,
    index: &wgpu::Buffer,
    weight: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    let len = params.planes * params.out_h * params.out_w;
    b.push(Kernel::Resample, params, &[input, index, weight, out], linear_workgroups(len))
}
