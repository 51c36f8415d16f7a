//! Launches `shaders/clip.wgsl`.

use super::{linear_workgroups, LaunchBuilder};
use crate::gpu::shaders::Kernel;
use crate::params::ClipParams;

/// Queues a launch with the shader's bindings: params, input, out.
pub(crate) fn clip(b: &mut LaunchBuilder<'_>, params: &ClipParams, input: &wgpu::Buffer, out: &wgpu::Buffer) {
    b.push(Kernel::Clip, params, &[input, out], linear_workgroups(params.len))
}
