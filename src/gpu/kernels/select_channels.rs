//! Launches `shaders/select_channels.wgsl`.

use super::{linear_workgroups, LaunchBuilder};
use crate::gpu::shaders::Kernel;
use crate::params::SelectChannelsParams;

/// Queues a launch with the shader's bindings: params, input, channels, out.
pub(crate) fn select_channels(
    b: &mut LaunchBuilder<'_>,
    params: &SelectChannelsParams,
    input: &wgpu::Buffer,
    channels: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    let len = params.images * params.out_channels * params.plane;
    b.push(Kernel::SelectChannels, params, &[input, channels, out], linear_workgroups(len))
}
