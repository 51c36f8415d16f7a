//! Launches `shaders/matmul_tiled.wgsl`.

use super::{LaunchBuilder, Specialization};
use crate::gpu::shaders::Kernel;
use crate::layer::GemmTile;
use crate::params::MatmulTiledParams;

/// A compiled variant of the shader: the tile one workgroup computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulTile {
    /// 64×64 tile, 4×4 outputs per thread.
    Medium,
    /// 128×128 tile, 8×8 outputs per thread.
    Large,
}

/// Large tiles are used when the product still has at least this many of them: fewer
/// would leave the cores of a large GPU idle, where medium tiles keep four times as many
/// workgroups in flight.
pub const LARGE_MIN_TILES: u32 = 128;

impl MatmulTile {
    /// Rows and columns of the product computed by one workgroup.
    pub fn size(self) -> u32 {
        match self {
            MatmulTile::Medium => 64,
            MatmulTile::Large => 128,
        }
    }

    /// The variant for a product of `p`'s shape under `setting`.
    pub fn choose(p: &MatmulTiledParams, setting: GemmTile) -> Self {
        match setting {
            GemmTile::Medium => MatmulTile::Medium,
            GemmTile::Large => MatmulTile::Large,
            GemmTile::Auto if p.m > 64 && p.m.div_ceil(128) * p.n.div_ceil(128) >= LARGE_MIN_TILES => {
                MatmulTile::Large
            }
            GemmTile::Auto => MatmulTile::Medium,
        }
    }

    pub(crate) fn specialization(self) -> Specialization {
        match self {
            MatmulTile::Medium => Specialization::default(),
            MatmulTile::Large => Specialization { name: "128x128", constants: &[("TILE", 128.0)] },
        }
    }
}

/// Workgroup counts: one workgroup per output tile.
pub fn workgroups(p: &MatmulTiledParams, tile: MatmulTile) -> [u32; 3] {
    [p.n.div_ceil(tile.size()), p.m.div_ceil(tile.size()), 1]
}

/// Queues a launch of the variant `tile` with the shader's bindings: params, a, b, bias,
/// out.
pub(crate) fn matmul_tiled(
    b: &mut LaunchBuilder<'_>,
    tile: MatmulTile,
    params: &MatmulTiledParams,
    a: &wgpu::Buffer,
    bm: &wgpu::Buffer,
    bias: &wgpu::Buffer,
    out: &wgpu::Buffer,
) {
    b.push_specialized(
        Kernel::MatmulTiled,
        tile.specialization(),
        params,
        &[a, bm, bias, out],
        workgroups(params, tile),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(m: u32, n: u32) -> MatmulTiledParams {
        MatmulTiledParams { m, n, k: 64, ..Default::default() }
    }

    #[test]
    fn large_tiles_only_for_products_with_many_of_them() {
        // VGG-16 conv3_2 at batch 8: 2 x 196 tiles of 128.
        assert_eq!(MatmulTile::choose(&product(256, 25088), GemmTile::Auto), MatmulTile::Large);
        // conv5_2 at batch 1: 4 x 2 tiles of 128 would idle a large GPU.
        assert_eq!(MatmulTile::choose(&product(512, 196), GemmTile::Auto), MatmulTile::Medium);
        // 64 rows gain nothing from a 128-row tile.
        assert_eq!(MatmulTile::choose(&product(64, 1 << 20), GemmTile::Auto), MatmulTile::Medium);
        assert_eq!(MatmulTile::choose(&product(8, 8), GemmTile::Large), MatmulTile::Large);
        assert_eq!(MatmulTile::choose(&product(4096, 4096), GemmTile::Medium), MatmulTile::Medium);
        assert_eq!(workgroups(&product(130, 257), MatmulTile::Large), [3, 2, 1]);
        assert_eq!(workgroups(&product(130, 257), MatmulTile::Medium), [5, 3, 1]);
    }
}
