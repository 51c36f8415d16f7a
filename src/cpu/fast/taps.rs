//! The read table shared by every fast conv kernel: for each kernel offset `c = (ky, kx)`
//! and each computed output position `e` (mask order), where the tap reads inside one
//! channel plane of one image. The same arithmetic as the `im2col_masked` twin (METHOD.md
//! §1), resolved once per layer instead of once per run.

use crate::interp::ZERO_TAP;
use crate::layer::ConvLayer;

/// A tap that reads padding (or a skipped position of a zeros map): the value is 0. The
/// zeros map's own marker, so a tap table is read by the same gathers as a map table.
pub(crate) const PAD: u32 = ZERO_TAP;

/// `J[c][e]` for a layer: `kh·kw` rows of `n_pos` entries.
#[derive(Debug)]
pub(crate) struct Taps {
    /// Row-major `[kh·kw][n_pos]`: an offset within the input channel plane, or [`PAD`].
    /// Through a nearest or zeros map it is the compact index; through a barycentric map
    /// it is the dense position, to be read with [`crate::cpu::read_mapped`].
    pub table: Vec<u32>,
    /// Computed output positions per image.
    pub n_pos: usize,
    /// Input map code (0 dense, 1 nearest, 2 zeros, 3 barycentric) and its table.
    pub map_kind: u32,
    /// The input map's table (empty when dense).
    pub map_table: Vec<u32>,
}

impl Taps {
    /// Resolves the taps of `layer`.
    pub fn new(layer: &ConvLayer) -> Taps {
        Taps::build(layer, true)
    }

    /// The taps of `layer` into its input as a dense `H×W` plane, ignoring its input map:
    /// for a kernel that first expands a compact input (see `implicit_gemm`).
    pub fn dense(layer: &ConvLayer) -> Taps {
        Taps::build(layer, false)
    }

    fn build(layer: &ConvLayer, through_map: bool) -> Taps {
        let g = layer.geometry();
        let mask = layer.mask().positions();
        let (map_kind, map_table) = match layer.input_map().filter(|_| through_map) {
            Some(m) => (m.kind().code(), m.table().to_vec()),
            None => (0, Vec::new()),
        };
        let out_w = g.out_w();
        // Each position's top-left tap in padded coordinates, divided out once (not once
        // per tap: the divisions were most of the cost of preparing a layer).
        let origins: Vec<(usize, usize)> = mask
            .iter()
            .map(|&pos| ((pos as usize / out_w) * g.stride_h, (pos as usize % out_w) * g.stride_w))
            .collect();
        let mut table = Vec::with_capacity(g.kernel_h * g.kernel_w * mask.len());
        for ky in 0..g.kernel_h {
            for kx in 0..g.kernel_w {
                let (dy, dx) = (ky * g.dilation_h, kx * g.dilation_w);
                table.extend(origins.iter().map(|&(y0, x0)| {
                    let (yp, xp) = (y0 + dy, x0 + dx);
                    if yp < g.pad_top
                        || xp < g.pad_left
                        || yp - g.pad_top >= g.in_h
                        || xp - g.pad_left >= g.in_w
                    {
                        return PAD;
                    }
                    let s = u32::try_from((yp - g.pad_top) * g.in_w + (xp - g.pad_left))
                        .expect("validated geometry: input indices fit in u32");
                    match map_kind {
                        1 | 2 => match map_table[s as usize] {
                            ZERO_TAP => PAD,
                            i => i,
                        },
                        _ => s,
                    }
                }));
            }
        }
        Taps { table, n_pos: mask.len(), map_kind, map_table }
    }

    /// Row `c` of the table.
    #[inline]
    pub fn row(&self, c: usize) -> &[u32] {
        &self.table[c * self.n_pos..(c + 1) * self.n_pos]
    }
}
