//! Launches `shaders/matmul_narrow.wgsl`.

use super::{LaunchBuilder, MAX_WORKGROUPS_PER_DIM};
use crate::gpu::shaders::Kernel;
use crate::params::MatmulTiledParams;

/// Widest product (columns) the kernel handles; the schedule sends wider ones to
/// `matmul_tiled`.
pub const MAX_COLUMNS: u32 = crate::layer::NARROW_MAX_COLUMNS;

/// Workgroup counts: one workgroup per row of the product, folded into x and y.
pub fn workgroups(p: &MatmulTiledParams) -> [u32; 3] {
    let x = p.m.clamp(1, MAX_WORKGROUPS_PER_DIM);
    [x, p.m.div_ceil(x).max(1), 1]
}

/// Queues a launch with the shader's bindings: params, a, b, bias, out.
pub(crate) fn matmul_narrow(
    b: &mut LaunchBuilder<'_>,
    params: &MatmulTiledParams,
    a: &wgpu::Buffer,
    bm: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    debug_assert!(params.n <= MAX_COLUMNS && params.ldb <= MAX_COLUMNS);
    b.push(Kernel::MatmulNarrow, params, &[a, bm, bias, out], workgroups(params))
}
