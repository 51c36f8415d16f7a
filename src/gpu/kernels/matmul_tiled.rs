//! Launches `shaders/matmul_tiled.wgsl`.

use super::{launch, Launch};
use crate::error::Result;
use crate::gpu::context::GpuContext;
use crate::gpu::shaders::Kernel;
use crate::params::MatmulTiledParams;

/// Rows and columns of the product computed by one workgroup.
pub const TILE: u32 = 64;

/// Workgroup counts: one workgroup per 64×64 output tile.
pub fn workgroups(p: &MatmulTiledParams) -> [u32; 3] {
    [p.n.div_ceil(TILE), p.m.div_ceil(TILE), 1]
}

/// A launch with the shader's bindings: params, a, b, bias, out.
pub fn matmul_tiled(
    ctx: &GpuContext,
    params: &MatmulTiledParams,
    params_binding: wgpu::BufferBinding<'_>,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    out: &wgpu::Buffer,
) -> Result<Launch> {
    launch(
        ctx,
        Kernel::MatmulTiled,
        params_binding,
        &[a, b, bias, out],
        workgroups(params),
    )
}
