//! Launches `shaders/im2col_masked.wgsl`.

use super::{LaunchBuilder, MAX_WORKGROUPS_PER_DIM};
use crate::gpu::shaders::Kernel;
use crate::params::Im2colMaskedParams;

/// Threads per workgroup along the columns (the shader's `@workgroup_size`).
pub const WORKGROUP_SIZE: u32 = 256;

/// Workgroup counts: one thread per column of `ldb`, rows spread over the y dimension.
pub fn workgroups(p: &Im2colMaskedParams) -> [u32; 3] {
    let rows = p.group_channels * p.kernel_h * p.kernel_w;
    [p.ldb.div_ceil(WORKGROUP_SIZE), rows.clamp(1, MAX_WORKGROUPS_PER_DIM), 1]
}

/// Queues a launch with the shader's bindings: params, input, mask, in_map, col.
pub(crate) fn im2col_masked(
    b: &mut LaunchBuilder<'_>,
    params: &Im2colMaskedParams,
    input: &wgpu::Buffer,
    mask: &wgpu::Buffer,
    in_map: &wgpu::Buffer,
    col: &wgpu::Buffer,
) {
    b.push(Kernel::Im2colMasked, params, &[input, mask, in_map, col], workgroups(params))
}
