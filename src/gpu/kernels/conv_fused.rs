//! Launches `shaders/conv_fused.wgsl`.

use super::matmul_tiled::MatmulTile;
use super::LaunchBuilder;
use crate::gpu::shaders::Kernel;
use crate::params::ConvFusedParams;

/// Queues a launch of the variant `tile` with the shader's bindings: params, a, input,
/// mask, in_map, bias, out. Workgroups as `matmul_tiled`: one per output tile.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_fused(
    b: &mut LaunchBuilder<'_>,
    tile: MatmulTile,
    params: &ConvFusedParams,
    a: &wgpu::Buffer,
    input: &wgpu::Buffer,
    mask: &wgpu::Buffer,
    in_map: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    let groups = [params.n.div_ceil(tile.size()), params.m.div_ceil(tile.size()), 1];
    b.push_specialized(
        Kernel::ConvFused,
        tile.specialization(),
        params,
        &[a, input, mask, in_map, bias, out],
        groups,
    )
}
