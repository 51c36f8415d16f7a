//! Launches `shaders/reduce_channels.wgsl`.

use super::{linear_workgroups, LaunchBuilder};
use crate::gpu::shaders::Kernel;
use crate::params::ReduceChannelsParams;

/// Queues a launch with the shader's bindings: params, input, out.
pub(crate) fn reduce_channels(
    b: &mut LaunchBuilder<'_>,
    params: &ReduceChannelsParams,
    input: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    b.push(Kernel::ReduceChannels, params, &[input, out], linear_workgroups(params.images * params.plane))
}
