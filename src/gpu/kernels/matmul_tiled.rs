//! Launches `shaders/matmul_tiled.wgsl`.

use super::LaunchBuilder;
use crate::gpu::shaders::Kernel;
use crate::params::MatmulTiledParams;

/// Rows and columns of the product computed by one workgroup.
pub const TILE: u32 = 64;

/// Workgroup counts: one workgroup per 64×64 output tile.
pub fn workgroups(p: &MatmulTiledParams) -> [u32; 3] {
    [p.n.div_ceil(TILE), p.m.div_ceil(TILE), 1]
}

/// Queues a launch with the shader's bindings: params, a, b, bias, out.
pub(crate) fn matmul_tiled(
    b: &mut LaunchBuilder<'_>,
    params: &MatmulTiledParams,
    a: &wgpu::Buffer,
    bm: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    b.push(Kernel::MatmulTiled, params, &[a, bm, bias, out], workgroups(params))
}
