//! Direct convolution along output rows, for dense layers of few input channels (first
//! layers: RGB or grey images) and, at stride 1, of any channels (see `row_conv_pays_off`
//! for where it runs). Positions are the vector lanes, as
//! the output is stored: a tile is 8 output channels × up to 48 consecutive positions of
//! one output row, and each tap (input channel, ky, kx) reads one contiguous run of a
//! zero-padded, column-phase-split copy of the input, so a strided conv's taps read
//! unstrided runs too. The microkernel is `gemm::avx512::row_tile`, the pointwise
//! product's, with one row offset per tap; the weights are packed once into 8-row panels.
//!
//! The copy: `[B][C][HP][S][WQ]`, padded row `y` of channel `c` split into its `S` column
//! phases (column `j` of the padded row at phase `j mod S`, index `j / S`; `S` the column
//! stride, `WQ = ⌈WP / S⌉`). Tap `(c, ky, kx)` of output `(oy, ox)` then reads phase
//! `(kx·dw) mod S`, index `ox + (kx·dw) / S` of padded row `oy·sh + ky·dh`.
//!
//! At stride 1 (with padded rows of 16 or more) the tiles run along the padded grid
//! instead: output row `oy` is grid positions `oy·WP ..`, a tile is 48 consecutive grid
//! positions whatever rows they cross, each tap still one contiguous run, and the
//! `WP − out_w` columns past each row's end are computed and dropped by the store
//! (`gemm::avx512::grid_tile`). Depth then goes in blocks of [`GRID_KC`] taps (a block's B
//! rows in L1 while every panel passes), the partial sums in a per-thread scratch.
//!
//! On AVX2 (first layers only, [`Family::Avx2`]) a tile is 6 output channels × 16
//! positions of one output row (`gemm::avx2::row_tile`, the GEMM tile's shape), over the
//! same copy with 6-row weight panels; there is no grid mode.
//!
//! Tasks: (image, block of output rows or grid tiles), one parallel region; inside, for each
//! tile, every weight panel runs over the tile's B values.

use std::cell::RefCell;
use std::sync::Mutex;

use rayon::prelude::*;

use super::hwc_conv::IMAGES_PER_THREAD;
use super::{Family, SendPtr};
use crate::cpu::gemm::{pack_a, tile_vectors, ROW_TILE_MR as MR};
use crate::layer::ConvLayer;

/// Input channels up to which a conv takes this path.
pub(crate) const MAX_IN_CHANNELS: usize = 4;
/// Positions per full AVX-512 tile (3 vectors of 16); also the copy's slack for any tile.
const TILE: usize = 48;

/// The position-vectorised tile shapes per [`Family`], of the row path and of the
/// pointwise product alike: AVX-512 8 channels × 48 positions (`gemm::avx512::row_tile`,
/// grid tiles at stride 1); AVX2 6 × 16 (`gemm::avx2::row_tile`, first layers only, and
/// `gemm::avx2::pointwise_tile`).
impl Family {
    /// Positions per full row-path tile.
    pub(super) fn row_tile_positions(self) -> usize {
        match self {
            Family::Avx512 => TILE,
            #[cfg(target_arch = "x86_64")]
            Family::Avx2 => crate::cpu::gemm::avx2::ROW_TILE_WIDTH,
            #[cfg(not(target_arch = "x86_64"))]
            Family::Avx2 => 16,
        }
    }

    /// Output channels per row-path tile (rows of a weight panel).
    pub(super) fn row_tile_channels(self) -> usize {
        match self {
            Family::Avx512 => MR,
            #[cfg(target_arch = "x86_64")]
            Family::Avx2 => crate::cpu::gemm::avx2::ROW_TILE_MR,
            #[cfg(not(target_arch = "x86_64"))]
            Family::Avx2 => 6,
        }
    }
}

/// Largest depth block of a grid tile: its B rows (`kc × 48` floats, 24 KB) stay in L1.
const GRID_KC: usize = 128;
/// Layers under this many FLOPs run on the calling thread.
const SEQUENTIAL_FLOPS: usize = 1 << 21;

thread_local! {
    /// A grid task's partial sums between depth blocks: `[panel][MR][48]`.
    static GRID_PARTIAL: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
    /// One image's padded copy (and the slack) when grid tasks take whole images.
    static GRID_IMAGE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// A direct conv along output rows (see the module docs).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct RowConv {
    batch: usize,
    in_channels: usize,
    in_h: usize,
    in_w: usize,
    pad_top: usize,
    pad_left: usize,
    /// Padded rows per channel.
    hp: usize,
    /// Column phases (the column stride) and values per phase row.
    phases: usize,
    wq: usize,
    stride_h: usize,
    out_h: usize,
    out_w: usize,
    out_channels: usize,
    panels: usize,
    /// Per tap `(c, ky, kx)`, in the weights' order: its offset from a tile's first
    /// position in the copy.
    offs: Vec<u32>,
    /// `[panel][k][mr]` (`mr` the family's panel rows), zero past the last channel.
    a: Vec<f32>,
    /// `[panel·mr]`.
    bias: Vec<f32>,
    relu: bool,
    /// Stride 1 with padded rows of at least 16 values: tiles run along the padded grid
    /// (see [`RowConv::grid_applies`]) instead of along each output row.
    grid: bool,
    /// Floats after the last image's copy that grid tiles may read.
    slack: usize,
    /// The padded, phase-split input, reused between runs (its borders stay zero).
    padded: Mutex<Vec<f32>>,
    family: Family,
}

impl std::fmt::Debug for RowConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RowConv({} taps, {} channels, {} phases)", self.offs.len(), self.out_channels, self.phases)
    }
}

impl RowConv {
    /// Whether `layer` can take the path in `family` on this CPU: the family's features,
    /// one group, a dense input and output, a copy whose offsets fit 32 bits, and at most
    /// [`MAX_IN_CHANNELS`] input channels or (AVX-512) [`RowConv::grid_applies`].
    pub fn applies(layer: &ConvLayer, family: Family) -> bool {
        let g = layer.geometry();
        let wq = (g.in_w + g.pad_left + g.pad_right).div_ceil(g.stride_w);
        let image = g.in_channels * (g.in_h + g.pad_top + g.pad_bottom) * g.stride_w * wq;
        let grid = family == Family::Avx512 && Self::grid_applies(layer);
        family.available()
            && image + g.kernel_w * g.dilation_w < u32::MAX as usize
            && g.groups == 1
            && (g.in_channels <= MAX_IN_CHANNELS || grid)
            && layer.input_map().is_none()
            && layer.mask().is_dense()
    }

    /// Whether the tiles can run along the padded grid: stride 1 and padded rows of at
    /// least 16 values. Output row `oy` is then grid positions `oy·WP ..` (WP the padded
    /// width), every tap of 48 consecutive grid positions reads one contiguous run of the
    /// copy, and only the `WP − out_w` columns past each row's end are computed in vain
    /// (56x56 with padding 1: 2 of 58, where row tiles of 48 + 16 lanes waste 8 of 64).
    pub fn grid_applies(layer: &ConvLayer) -> bool {
        let g = layer.geometry();
        g.stride_h == 1 && g.stride_w == 1 && g.in_w + g.pad_left + g.pad_right >= 16
    }

    /// Prepares `layer` ([`RowConv::applies`] in `family`), with its ReLU when `relu`.
    pub fn new(layer: &ConvLayer, relu: bool, family: Family) -> Self {
        let g = *layer.geometry();
        let hp = g.in_h + g.pad_top + g.pad_bottom;
        let (s, wq) = (g.stride_w, (g.in_w + g.pad_left + g.pad_right).div_ceil(g.stride_w));
        let (kh, kw) = (g.kernel_h, g.kernel_w);
        // OIHW: tap t of a weight row is (c, ky, kx) in this order.
        let offs: Vec<u32> = (0..g.in_channels)
            .flat_map(|c| (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (c, ky, kx))))
            .map(|(c, ky, kx)| {
                let col = kx * g.dilation_w;
                let row = c * hp + ky * g.dilation_h;
                u32::try_from((row * s + col % s) * wq + col / s).expect("checked by `applies`")
            })
            .collect();
        let k = offs.len();
        let mr = family.row_tile_channels();
        let panels = g.out_channels.div_ceil(mr);
        let a = pack_a(layer.weights(), g.out_channels, k, k, mr);
        let mut bias = vec![0.0f32; panels * mr];
        bias[..g.out_channels].copy_from_slice(layer.bias());
        RowConv {
            batch: g.batch,
            in_channels: g.in_channels,
            in_h: g.in_h,
            in_w: g.in_w,
            pad_top: g.pad_top,
            pad_left: g.pad_left,
            hp,
            phases: s,
            wq,
            stride_h: g.stride_h,
            out_h: g.out_h(),
            out_w: g.out_w(),
            out_channels: g.out_channels,
            panels,
            offs,
            a,
            bias,
            relu,
            grid: family == Family::Avx512 && RowConv::grid_applies(layer),
            slack: (g.kernel_w - 1) * g.dilation_w + TILE,
            padded: Mutex::new(Vec::new()),
            family,
        }
    }

    /// Floats of one image's copy.
    fn image_len(&self) -> usize {
        self.in_channels * self.hp * self.phases * self.wq
    }

    /// `x` is the `[B, C, H, W]` input, `out` the `[B, T, out_h·out_w]` output.
    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        let (c, plane) = (self.in_channels, self.in_h * self.in_w);
        let n_pos = self.out_h * self.out_w;
        assert!(x.len() >= self.batch * c * plane, "conv input too short");
        assert!(out.len() >= self.batch * self.out_channels * n_pos, "conv output buffer too small");
        let image = self.image_len();
        let flops = 2 * self.batch * self.out_channels * n_pos * self.offs.len();
        let parallel = flops >= SEQUENTIAL_FLOPS;
        let tiles = (self.out_h * self.wq).div_ceil(TILE);
        if self.grid && parallel && self.batch >= IMAGES_PER_THREAD * rayon::current_num_threads() {
            // Whole images per task: each is copied into the thread's own buffer right before
            // its tiles read it, so the copy stays in L2 instead of making a pass through
            // memory for the whole batch first (the 28x28 ResNet's 16-channel convs at batch
            // 64: 0.80-0.88x, alternated).
            let out = SendPtr(out.as_mut_ptr());
            (0..self.batch).into_par_iter().for_each(|img| {
                GRID_IMAGE.with(|buf| {
                    let mut buf = buf.borrow_mut();
                    buf.clear();
                    buf.resize(image + self.slack, 0.0);
                    self.copy_image(&x[img * c * plane..][..c * plane], &mut buf[..image]);
                    self.grid_task(&buf, out, img, 0..tiles);
                });
            });
            return;
        }
        let mut fallback = Vec::new();
        let mut guard = self.padded.try_lock().ok();
        let padded = guard.as_deref_mut().unwrap_or(&mut fallback);
        // Slack past the last image: a grid tile's lanes past a row's end read up to
        // (kw − 1)·dw values beyond the last padded row (and drop them).
        let len = self.batch * image + self.slack;
        if padded.len() != len {
            padded.clear();
            padded.resize(len, 0.0);
        }
        // Padded row i of the copy is row i mod HP of plane i / HP (image, channel).
        let row_len = self.phases * self.wq;
        let copy_row = |(i, dst): (usize, &mut [f32])| {
            let (p, y) = (i / self.hp, i % self.hp);
            if let Some(y) = y.checked_sub(self.pad_top).filter(|&y| y < self.in_h) {
                self.copy_row(&x[p * plane + y * self.in_w..][..self.in_w], dst);
            }
        };
        let rows = &mut padded[..self.batch * image];
        if parallel {
            rows.par_chunks_mut(row_len).enumerate().with_min_len(32).for_each(copy_row);
        } else {
            rows.chunks_mut(row_len).enumerate().for_each(copy_row);
        }
        let padded: &[f32] = padded;
        let out = SendPtr(out.as_mut_ptr());
        if self.grid {
            // Tiles of the grid per task: about 8 tasks per thread.
            let want = 8 * rayon::current_num_threads();
            let per_task = (tiles * self.batch).div_ceil(want).clamp(1, tiles);
            let blocks = tiles.div_ceil(per_task);
            let task = |t: usize| {
                let (tb, img) = (t % blocks, t / blocks);
                let tiles = tb * per_task..((tb + 1) * per_task).min(tiles);
                self.grid_task(&padded[img * image..], out, img, tiles);
            };
            if parallel {
                (0..self.batch * blocks).into_par_iter().for_each(task);
            } else {
                (0..self.batch * blocks).for_each(task);
            }
            return;
        }
        // Rows per task: about 8 tasks per thread.
        let want = 8 * rayon::current_num_threads();
        let rows_per = (self.out_h * self.batch).div_ceil(want).clamp(1, self.out_h);
        let row_blocks = self.out_h.div_ceil(rows_per);
        let task = |t: usize| {
            let (rb, img) = (t % row_blocks, t / row_blocks);
            let rows = rb * rows_per..((rb + 1) * rows_per).min(self.out_h);
            self.task(&padded[img * image..][..image], out, img, rows);
        };
        if parallel {
            (0..self.batch * row_blocks).into_par_iter().for_each(task);
        } else {
            (0..self.batch * row_blocks).for_each(task);
        }
    }

    /// Grid tiles `tiles` of image `img` (stride 1: `wq` is the padded width), from the
    /// image's copy `x` (and what follows it: the next image or the slack).
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    fn grid_task(&self, x: &[f32], out: SendPtr, img: usize, tiles: std::ops::Range<usize>) {
        let (n_pos, k, wp) = (self.out_h * self.out_w, self.offs.len(), self.wq);
        let n_grid = self.out_h * wp;
        // Every tap run of a tile stays inside `x`: the grid's last position plus the
        // largest offset is below one image plus the slack.
        assert!(x.len() >= n_grid + self.offs.iter().max().map_or(0, |&o| o as usize));
        // Depth blocks: a tile's B rows of one block (`kc × 48` floats) stay in L1 while
        // every panel passes over them; the panels' sums of the earlier blocks wait in the
        // thread's scratch, and the last block's kernel adds them and stores.
        let blocks = k.div_ceil(GRID_KC);
        let kc = k.div_ceil(blocks);
        GRID_PARTIAL.with(|scratch| {
            let partial = &mut *scratch.borrow_mut();
            partial.resize(if blocks > 1 { self.panels * MR * TILE } else { 0 }, 0.0);
            for t in tiles {
                let g0 = t * TILE;
                let width = TILE.min(n_grid - g0);
                let (vectors, tail) = tile_vectors(width);
                let b = x[g0..].as_ptr();
                for p0 in (0..k).step_by(kc) {
                    let (kcb, last) = (kc.min(k - p0), p0 + kc >= k);
                    for panel in 0..self.panels {
                        let rows = MR.min(self.out_channels - panel * MR);
                        let a = self.a[(panel * k + p0) * MR..].as_ptr();
                        let bias = self.bias[panel * MR..].as_ptr();
                        let offs = self.offs[p0..].as_ptr();
                        let at_part = (panel * MR * TILE).min(partial.len());
                        let part = partial[at_part..].as_mut_ptr();
                        // Output channel panel·MR of image img; the kernel adds each lane's
                        // position.
                        let c = out.ptr().wrapping_add((img * self.out_channels + panel * MR) * n_pos);
                        // SAFETY: AVX-512 was detected (`applies`); every tap's run of `width`
                        // values from `b` lies inside `x` (asserted); A's panel holds kcb·MR
                        // floats from depth p0, bias MR; the panel's partial sums are MR rows
                        // of 16·vectors floats (at stride 16·vectors) when there are several
                        // blocks; each kept lane is a real output position (row < out_h,
                        // column < out_w) of channels under `rows`, written only by this task.
                        #[cfg(target_arch = "x86_64")]
                        unsafe {
                            use crate::cpu::gemm::avx512::{grid_tile, row_tile};
                            let (relu, at) = (self.relu, (g0, wp, self.out_w));
                            let prev = if p0 > 0 { part.cast_const() } else { std::ptr::null() };
                            macro_rules! block {
                                ($nv:literal) => {
                                    if last {
                                        grid_tile::<$nv>(
                                            kcb, a, b, offs, tail, at, prev, c, n_pos, rows, bias, relu,
                                        )
                                    } else {
                                        let null = std::ptr::null();
                                        row_tile::<$nv>(
                                            kcb,
                                            a,
                                            b,
                                            offs,
                                            tail,
                                            part,
                                            16 * $nv,
                                            MR,
                                            p0 > 0,
                                            null,
                                            false,
                                        )
                                    }
                                };
                            }
                            match vectors {
                                3 => block!(3),
                                2 => block!(2),
                                _ => block!(1),
                            }
                        }
                    }
                }
            }
        });
    }

    /// One input row into its padded, phase-split row of the copy (borders untouched).
    /// One image (`[C, H, W]`) into its zeroed padded copy `dst` (`image_len` floats).
    fn copy_image(&self, x: &[f32], dst: &mut [f32]) {
        let plane = self.in_h * self.in_w;
        for (i, prow) in dst.chunks_mut(self.phases * self.wq).enumerate() {
            let (ch, y) = (i / self.hp, i % self.hp);
            if let Some(y) = y.checked_sub(self.pad_top).filter(|&y| y < self.in_h) {
                self.copy_row(&x[ch * plane + y * self.in_w..][..self.in_w], prow);
            }
        }
    }

    fn copy_row(&self, row: &[f32], prow: &mut [f32]) {
        let (s, wq) = (self.phases, self.wq);
        if s == 1 {
            prow[self.pad_left..][..self.in_w].copy_from_slice(row);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if s == 2 {
            // SAFETY: the path runs only where its family's features were detected (`applies`).
            return unsafe {
                match self.family {
                    Family::Avx512 => {
                        super::transpose::split_pairs_avx512(row, self.pad_left, (wq, wq), prow)
                    }
                    Family::Avx2 => super::transpose::split_pairs_avx2(row, self.pad_left, (wq, wq), prow),
                }
            };
        }
        // Column j + pad_left is phase (j + pad_left) mod s, index (j + pad_left) / s:
        // phase r holds the columns j ≡ r − pad_left (mod s) from the first such j.
        for r in 0..s {
            let j0 = (r + s - self.pad_left % s) % s;
            let q0 = (j0 + self.pad_left) / s;
            let dst = &mut prow[r * wq + q0..(r + 1) * wq];
            for (d, &v) in dst.iter_mut().zip(row.iter().skip(j0).step_by(s)) {
                *d = v;
            }
        }
    }

    /// Output rows `rows` of image `img`, from the image's copy `x`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    fn task(&self, x: &[f32], out: SendPtr, img: usize, rows: std::ops::Range<usize>) {
        let (n_pos, k) = (self.out_h * self.out_w, self.offs.len());
        let row_len = self.phases * self.wq;
        let (tile, mr) = (self.family.row_tile_positions(), self.family.row_tile_channels());
        for oy in rows {
            for ox0 in (0..self.out_w).step_by(tile) {
                let width = tile.min(self.out_w - ox0);
                let (vectors, tail) = tile_vectors(width);
                let b = x[oy * self.stride_h * row_len + ox0..].as_ptr();
                #[cfg(target_arch = "x86_64")]
                if self.family == Family::Avx2 {
                    use crate::cpu::gemm::avx2::{row_panels, ROW_TILE_MR, ROW_TILE_WIDTH};
                    const NV: usize = ROW_TILE_WIDTH / 8;
                    // SAFETY: AVX2 and FMA were detected (`applies`); every tap's run of
                    // `width` values from `b` lies in its phase row of this image's copy
                    // and the full-vector reads past `width` stay inside the copy's slack;
                    // A holds every panel's k·mr floats, bias panels·mr; output channels
                    // below out_channels at positions oy·out_w + ox0 .. + width of image
                    // img, written only by this task.
                    unsafe {
                        let c = out.ptr().add(img * self.out_channels * n_pos + oy * self.out_w + ox0);
                        let (a, bias, offs) = (self.a.as_ptr(), self.bias.as_ptr(), self.offs.as_ptr());
                        row_panels::<ROW_TILE_MR, NV>(
                            k,
                            a,
                            b,
                            offs,
                            width,
                            c,
                            n_pos,
                            self.out_channels,
                            bias,
                            self.relu,
                        );
                    }
                    continue;
                }
                for panel in 0..self.panels {
                    let rows = mr.min(self.out_channels - panel * mr);
                    let a = self.a[panel * k * mr..].as_ptr();
                    let bias = self.bias[panel * mr..].as_ptr();
                    // SAFETY: (img, channel panel·mr + i, positions oy·out_w + ox0.. + width)
                    // is inside the output for i < rows; only this task writes row oy.
                    let c = unsafe {
                        out.ptr().add((img * self.out_channels + panel * mr) * n_pos + oy * self.out_w + ox0)
                    };
                    // SAFETY: AVX-512 was detected (`applies`); every tap's run of `width`
                    // values from `b` lies in its phase row of this image's copy (real
                    // positions' windows lie inside the padded plane); A's panel holds k·mr
                    // floats, bias mr; C as above, with row stride n_pos.
                    #[cfg(target_arch = "x86_64")]
                    unsafe {
                        use crate::cpu::gemm::avx512::row_tile;
                        let (offs, relu) = (self.offs.as_ptr(), self.relu);
                        match vectors {
                            3 => row_tile::<3>(k, a, b, offs, tail, c, n_pos, rows, false, bias, relu),
                            2 => row_tile::<2>(k, a, b, offs, tail, c, n_pos, rows, false, bias, relu),
                            _ => row_tile::<1>(k, a, b, offs, tail, c, n_pos, rows, false, bias, relu),
                        }
                    }
                }
            }
        }
    }
}
