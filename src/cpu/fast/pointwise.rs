//! Pointwise convolution (1x1 kernels): per image and group `out[T, N] = W[T, C] · B[C, N]`.
//! For a 1x1 stride-1 conv without padding, dense in and out, B is the input as stored (row
//! p = input channel p's plane) and nothing is packed or gathered. Otherwise (a perforated
//! output, a compact input read through a nearest or zeros map, a stride, padding) each
//! output position reads one input position or none, and each task first gathers its
//! columns of B into a per-thread buffer (one hardware gather per 16 columns and channel),
//! then runs the same product on it. Either way C is the output as stored. The microkernel (`gemm::avx512::row_tile`, 8 output channels × 48
//! positions) reads B's rows in place and writes C's rows in place; the weights are packed
//! once per layer into 8-row panels.
//!
//! Blocking: an image's positions are cut into tiles of 48 (the last of 16, 32 or 48 with
//! its last vector masked); a task is (image, group, block of tiles, block of weight
//! panels), all in one parallel region. Inside a task, for each depth block of at most
//! [`KC`] channels, for each tile, every panel of the block runs over the tile's B rows
//! (`kc × 48` floats, L1-resident while the panels stream past it); depth blocks after the
//! first accumulate in the output, and the last applies bias and ReLU.

use std::cell::RefCell;

use rayon::prelude::*;

use super::elementwise::gather_or_zero;
use super::taps::Taps;
use super::SendPtr;
use crate::cpu::gemm::{pack_a, tile_vectors, ROW_TILE_MR as MR};
use crate::layer::ConvLayer;

/// Positions per full tile (3 vectors of 16).
const TILE: usize = 48;
/// Largest depth block: a tile's B rows (`kc × TILE` floats, 30 KB) stay in L1.
const KC: usize = 160;
/// B floats (depth block × task columns) up to which a task runs panel by panel.
const PANEL_MAJOR_FLOATS: usize = 8192;
/// Tiles per task before the work is split further for the threads.
const TILES_PER_TASK: usize = 4;
/// Layers under this many FLOPs run on the calling thread.
const SEQUENTIAL_FLOPS: usize = 1 << 21;

/// A pointwise conv on the in-place product (AVX-512 only; see [`Pointwise::applies`]).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct Pointwise {
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
    /// `[group][panel][cg][MR]`, zero past `tg`.
    a: Vec<f32>,
    /// `[group][panel·MR]`, zero past `tg`.
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
    /// Whether `layer` is a pointwise product this path runs: AVX-512, a 1x1 kernel, an
    /// input as stored or read through a nearest or zeros map, and offsets that fit the
    /// index arithmetic.
    pub fn applies(layer: &ConvLayer) -> bool {
        let g = layer.geometry();
        let fits =
            g.in_channels_per_group() * layer.input_plane().max(layer.mask().len()) < i32::MAX as usize;
        let shape = g.kernel_h == 1
            && g.kernel_w == 1
            && fits
            && layer.input_map().is_none_or(|m| m.kind() != crate::interp::MapKind::Barycentric);
        #[cfg(target_arch = "x86_64")]
        {
            shape && std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = shape;
            false
        }
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

    /// Prepares `layer` (one that [`Pointwise::applies`] to); `relu` fuses the ReLU.
    pub fn new(layer: &ConvLayer, relu: bool) -> Self {
        let g = layer.geometry();
        let (cg, tg) = (g.in_channels_per_group(), g.out_channels_per_group());
        let (w, lda) = layer.packed_weights();
        let panels = tg.div_ceil(MR);
        let a = (0..g.groups).flat_map(|grp| pack_a(&w[grp * tg * lda..], tg, cg, lda, MR)).collect();
        let mut bias = vec![0.0f32; g.groups * panels * MR];
        for grp in 0..g.groups {
            bias[grp * panels * MR..][..tg].copy_from_slice(&layer.bias()[grp * tg..(grp + 1) * tg]);
        }
        let plane = layer.mask().len();
        let gather = (!Pointwise::in_place(layer)).then(|| Taps::new(layer).table);
        let rows = (0..cg).map(|p| u32::try_from(p * plane).expect("checked by `applies`")).collect();
        Pointwise {
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
        let tiles = n.div_ceil(TILE);
        let units = self.batch * self.groups;
        let mut tile_blocks = tiles.div_ceil(TILES_PER_TASK);
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
            let cols = tb * per_tb * TILE..((tb + 1) * per_tb * TILE).min(n);
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
        for p0 in (0..k).step_by(kc) {
            let kcb = kc.min(k - p0);
            let last = p0 + kcb == k;
            let tile = |panel: usize, j0: usize| {
                let width = TILE.min(cols.end - j0);
                let (vectors, tail) = tile_vectors(width);
                // Rows from p0, column j0: offsets stay relative to row 0 (`rows[p0..]`).
                let (b, offs) = (b.wrapping_add(b0 + j0 - cols.start), rows[p0..].as_ptr());
                let rows = MR.min(self.tg - panel * MR);
                let a = self.a[((grp * self.panels + panel) * k + p0) * MR..].as_ptr();
                let bias = if last {
                    self.bias[(grp * self.panels + panel) * MR..].as_ptr()
                } else {
                    std::ptr::null()
                };
                // SAFETY: (img, group channel panel·MR + i, positions j0..j0 + width) is
                // inside the output for i < rows; only this task writes it.
                let c = unsafe { out.ptr().add(out_base + panel * MR * n + j0) };
                // SAFETY: AVX-512 was detected (`applies`); B's rows p0..p0 + kcb have
                // `width` floats from column j0 (inside the plane or the gathered block,
                // whose row offsets `rows` gives); A's panel
                // holds kcb·MR floats from depth p0; C as above, with row stride N and its
                // current values from the earlier depth blocks; bias has MR floats.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    use crate::cpu::gemm::avx512::row_tile;
                    let (acc, relu) = (p0 > 0, self.relu);
                    match vectors {
                        3 => row_tile::<3>(kcb, a, b, offs, tail, c, n, rows, acc, bias, relu),
                        2 => row_tile::<2>(kcb, a, b, offs, tail, c, n, rows, acc, bias, relu),
                        _ => row_tile::<1>(kcb, a, b, offs, tail, c, n, rows, acc, bias, relu),
                    }
                }
            };
            // A shallow block's B rows for all the task's columns fit in L1: then each panel
            // sweeps the columns, writing 8 output rows front to back (few store streams,
            // which the hardware prefetches); otherwise each tile's B rows stay in L1 while
            // the panels pass over them.
            if kcb * cols.len() <= PANEL_MAJOR_FLOATS {
                for panel in panels.clone() {
                    for j0 in cols.clone().step_by(TILE) {
                        tile(panel, j0);
                    }
                }
            } else {
                for j0 in cols.clone().step_by(TILE) {
                    for panel in panels.clone() {
                        tile(panel, j0);
                    }
                }
            }
        }
    }
}
