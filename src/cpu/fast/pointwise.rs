//! Pointwise convolution (1x1 kernels): per image and group `out[T, N] = W[T, C] · B[C, N]`.
//! For a 1x1 stride-1 conv without padding, dense in and out, B is the input as stored (row
//! p = input channel p's plane) and nothing is packed or gathered. Otherwise (a perforated
//! output, a compact input read through a nearest or zeros map, a stride, padding) each
//! output position reads one input position or none, and each task first gathers its
//! columns of B into a per-thread buffer (one hardware gather per 16 columns and channel
//! on AVX-512), then runs the same product on it. Either way C is the output as stored.
//! The microkernel reads B's rows in place and writes C's rows in place: on AVX-512
//! `gemm::avx512::row_tile` (8 output channels × 48 positions), on AVX2
//! `gemm::avx2::pointwise_tile` (6 × 16); the weights are packed once per layer into
//! panels of the tile's rows.
//!
//! Blocking: an image's positions are cut into tiles (the last one partial); a task is
//! (image, group, block of tiles, block of weight panels), all in one parallel region.
//! Inside a task, for each depth block of at most [`KC`] channels, for each tile, every
//! panel of the block runs over the tile's B rows (`kc × tile` floats, L1-resident while
//! the panels stream past it); depth blocks after the first accumulate in the output, and
//! the last applies bias and ReLU.

use std::cell::RefCell;

use rayon::prelude::*;

use super::elementwise::gather_or_zero;
use super::taps::Taps;
use super::{Family, SendPtr};
use crate::cpu::gemm::pack_a;
use crate::layer::ConvLayer;

/// Largest depth block: a tile's B rows (`kc × 48` floats on AVX-512, 30 KB) stay in L1.
const KC: usize = 160;
/// B floats (depth block × task columns) up to which a task runs panel by panel.
const PANEL_MAJOR_FLOATS: usize = 8192;
/// Columns per task before the work is split further for the threads.
const COLUMNS_PER_TASK: usize = 192;
/// Layers under this many FLOPs run on the calling thread.
const SEQUENTIAL_FLOPS: usize = 1 << 21;

/// A pointwise conv on the in-place product (AVX-512 or AVX2; see [`Pointwise::applies`]).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct Pointwise {
    /// The tiles' family: their shape is the row path's (`Family::row_tile_channels` rows
    /// per weight panel, `Family::row_tile_positions` positions per full tile).
    family: Family,
    groups: usize,
    cg: usize,
    tg: usize,
    batch: usize,
    /// Output positions per image (the plane, or the mask's kept positions).
    plane: usize,
    /// Floats per input plane as stored (`N_prev` for a compact input).
    in_plane: usize,
    /// Per output position, the input position it reads (in the plane as stored) or
    /// [`PAD`] for a zero; `None` when it reads its own position in place.
    gather: Option<Vec<u32>>,
    panels: usize,
    /// `[group][panel][cg][mr]`, zero past `tg`.
    a: Vec<f32>,
    /// `[group][panel·mr]`, zero past `tg`.
    bias: Vec<f32>,
    relu: bool,
    /// `p · N` for each input channel p: where B's rows start (in place).
    rows: Vec<u32>,
}

/// A task's gathered B columns and their row offsets, grown on first use and reused.
#[derive(Default)]
struct Scratch {
    b: Vec<f32>,
    rows: Vec<u32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl std::fmt::Debug for Pointwise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pointwise(groups {}, m {}, k {}, n {})", self.groups, self.tg, self.cg, self.plane)
    }
}

impl Pointwise {
    /// Whether `layer` is a pointwise product this path runs: a 1x1 kernel, an input as
    /// stored or read through a nearest or zeros map, and offsets that fit the index
    /// arithmetic (the tiles' family is [`Pointwise::new`]'s to take).
    pub fn applies(layer: &ConvLayer) -> bool {
        let g = layer.geometry();
        let fits =
            g.in_channels_per_group() * layer.input_plane().max(layer.mask().len()) < i32::MAX as usize;
        g.kernel_h == 1
            && g.kernel_w == 1
            && fits
            && layer.input_map().is_none_or(|m| m.kind() != crate::interp::MapKind::Barycentric)
    }

    /// Whether `layer` reads its input in place: stride 1, no padding, a dense output over
    /// a dense input of the same plane.
    pub fn in_place(layer: &ConvLayer) -> bool {
        let g = layer.geometry();
        g.is_pointwise()
            && layer.input_map().is_none()
            && layer.mask().is_dense()
            && layer.mask().len() == g.in_h * g.in_w
    }

    /// Prepares `layer` (one that [`Pointwise::applies`] to) for `family`'s tiles (one
    /// the CPU has); `relu` fuses the ReLU.
    pub fn new(layer: &ConvLayer, relu: bool, family: Family) -> Self {
        let g = layer.geometry();
        let (cg, tg) = (g.in_channels_per_group(), g.out_channels_per_group());
        let mr = family.row_tile_channels();
        let (w, lda) = layer.packed_weights();
        let panels = tg.div_ceil(mr);
        let a = (0..g.groups).flat_map(|grp| pack_a(&w[grp * tg * lda..], tg, cg, lda, mr)).collect();
        let mut bias = vec![0.0f32; g.groups * panels * mr];
        for grp in 0..g.groups {
            bias[grp * panels * mr..][..tg].copy_from_slice(&layer.bias()[grp * tg..(grp + 1) * tg]);
        }
        let plane = layer.mask().len();
        let gather = (!Pointwise::in_place(layer)).then(|| Taps::new(layer).table);
        let rows = (0..cg).map(|p| u32::try_from(p * plane).expect("checked by `applies`")).collect();
        Pointwise {
            family,
            groups: g.groups,
            cg,
            tg,
            batch: g.batch,
            plane,
            in_plane: layer.input_plane(),
            gather,
            panels,
            a,
            bias,
            relu,
            rows,
        }
    }

    /// `x` is the `[B, C, plane]` input as stored, `out` the `[B, T, N]` output.
    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        let (n, c, t) = (self.plane, self.cg * self.groups, self.tg * self.groups);
        let in_plane = self.in_plane;
        assert!(x.len() >= self.batch * c * in_plane, "conv input too short");
        assert!(out.len() >= self.batch * t * n, "conv output buffer too small");
        let flops = 2 * self.batch * t * self.cg * n;
        let want = if flops < SEQUENTIAL_FLOPS { 1 } else { 2 * rayon::current_num_threads() };
        // Blocks of tiles per image, then weight panels split if the threads are short of
        // work, then the tiles further.
        let tile = self.family.row_tile_positions();
        let tiles = n.div_ceil(tile);
        let units = self.batch * self.groups;
        let mut tile_blocks = tiles.div_ceil(COLUMNS_PER_TASK / tile);
        if self.gather.is_some() {
            // A task gathers its columns for all its panels: split the columns first.
            tile_blocks = tile_blocks.max(want.div_ceil(units).min(tiles));
        }
        let m_blocks = want.div_ceil(units * tile_blocks).clamp(1, self.panels);
        let per_mb = self.panels.div_ceil(m_blocks);
        let m_blocks = self.panels.div_ceil(per_mb);
        if units * m_blocks * tile_blocks < want {
            tile_blocks = want.div_ceil(units * m_blocks).min(tiles);
        }
        let per_tb = tiles.div_ceil(tile_blocks);
        let tile_blocks = tiles.div_ceil(per_tb);
        let tasks = units * m_blocks * tile_blocks;
        let out = SendPtr(out.as_mut_ptr());
        let run_task = |task: usize| {
            let (tb, rest) = (task % tile_blocks, task / tile_blocks);
            let (mb, rest) = (rest % m_blocks, rest / m_blocks);
            let (grp, img) = (rest % self.groups, rest / self.groups);
            let panels = mb * per_mb..((mb + 1) * per_mb).min(self.panels);
            let cols = tb * per_tb * tile..((tb + 1) * per_tb * tile).min(n);
            let x_grp = &x[(img * c + grp * self.cg) * in_plane..][..self.cg * in_plane];
            match &self.gather {
                None => self.task(x_grp.as_ptr(), &self.rows, cols.start, out, img, grp, panels, cols),
                Some(src) => SCRATCH.with(|s| {
                    let s = &mut *s.borrow_mut();
                    let w = cols.len();
                    s.b.resize(self.cg * w, 0.0);
                    gather_or_zero(x_grp, in_plane, &src[cols.clone()], &mut s.b);
                    s.rows.clear();
                    s.rows.extend((0..self.cg).map(|p| u32::try_from(p * w).expect("checked by `applies`")));
                    self.task(s.b.as_ptr(), &s.rows, 0, out, img, grp, panels, cols);
                }),
            }
        };
        if want == 1 {
            (0..tasks).for_each(run_task);
        } else {
            (0..tasks).into_par_iter().for_each(run_task);
        }
    }

    /// Columns `cols` of image `img`, group `grp`, weight panels `panels`; B's row p (input
    /// channel p of the group) starts at `b + rows[p]`, column `cols.start` at `b0` within it.
    #[allow(clippy::too_many_arguments)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    fn task(
        &self,
        b: *const f32,
        rows: &[u32],
        b0: usize,
        out: SendPtr,
        img: usize,
        grp: usize,
        panels: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
    ) {
        let (n, k) = (self.plane, self.cg);
        let depth_blocks = k.div_ceil(KC);
        let kc = k.div_ceil(depth_blocks);
        let out_base = (img * self.groups + grp) * self.tg * n;
        let (mr, positions) = (self.family.row_tile_channels(), self.family.row_tile_positions());
        for p0 in (0..k).step_by(kc) {
            let kcb = kc.min(k - p0);
            let last = p0 + kcb == k;
            let tile = |panel: usize, j0: usize| {
                let width = positions.min(cols.end - j0);
                // Rows from p0, column j0: offsets stay relative to row 0 (`rows[p0..]`).
                let (b, offs) = (b.wrapping_add(b0 + j0 - cols.start), rows[p0..].as_ptr());
                let rows = mr.min(self.tg - panel * mr);
                let a = self.a[((grp * self.panels + panel) * k + p0) * mr..].as_ptr();
                let bias = if last {
                    self.bias[(grp * self.panels + panel) * mr..].as_ptr()
                } else {
                    std::ptr::null()
                };
                // SAFETY: (img, group channel panel·mr + i, positions j0..j0 + width) is
                // inside the output for i < rows; only this task writes it.
                let c = unsafe { out.ptr().add(out_base + panel * mr * n + j0) };
                // SAFETY: the family's features were detected (`FastConv::new`); B's rows
                // p0..p0 + kcb have `width` floats from column j0 (inside the plane or the
                // gathered block, whose row offsets `rows` gives); A's panel holds kcb·mr
                // floats from depth p0; C as above, with row stride N and its current
                // values from the earlier depth blocks; bias has mr floats.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    use crate::cpu::gemm::{avx2, avx512, tile_vectors};
                    let (acc, relu) = (p0 > 0, self.relu);
                    match (self.family, tile_vectors(width)) {
                        (Family::Avx2, _) => {
                            avx2::pointwise_tile(kcb, a, b, offs, width, c, n, rows, acc, bias, relu);
                        }
                        (Family::Avx512, (3, tail)) => {
                            avx512::row_tile::<3>(kcb, a, b, offs, tail, c, n, rows, acc, bias, relu);
                        }
                        (Family::Avx512, (2, tail)) => {
                            avx512::row_tile::<2>(kcb, a, b, offs, tail, c, n, rows, acc, bias, relu);
                        }
                        (Family::Avx512, (_, tail)) => {
                            avx512::row_tile::<1>(kcb, a, b, offs, tail, c, n, rows, acc, bias, relu);
                        }
                    }
                }
            };
            // A shallow block's B rows for all the task's columns fit in L1: then each panel
            // sweeps the columns, writing 8 output rows front to back (few store streams,
            // which the hardware prefetches); otherwise each tile's B rows stay in L1 while
            // the panels pass over them.
            if kcb * cols.len() <= PANEL_MAJOR_FLOATS {
                for panel in panels.clone() {
                    for j0 in cols.clone().step_by(positions) {
                        tile(panel, j0);
                    }
                }
            } else {
                for j0 in cols.clone().step_by(positions) {
                    for panel in panels.clone() {
                        tile(panel, j0);
                    }
                }
            }
        }
    }
}
