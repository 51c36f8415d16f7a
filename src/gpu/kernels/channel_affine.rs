//! Launches `shaders/channel_affine.wgsl`.

use super::{linear_workgroups, LaunchBuilder};
use crate::gpu::shaders::Kernel;
use crate::params::ChannelAffineParams;

/// Queues a launch with the shader's bindings: params, input, scale, shift, out.
pub(crate) fn channel_affine(
    b: &mut LaunchBuilder<'_>,
    params: &ChannelAffineParams,
    input: &wgpu::Buffer,
    scale: &wgpu::Buffer,
    shift: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    b.push(Kernel::ChannelAffine, params, &[input, scale, shift, out], linear_workgroups(params.len))
}
