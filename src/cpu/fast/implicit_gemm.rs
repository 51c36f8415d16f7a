//! Implicit-GEMM convolution: `out[T, N] = W[T, k] · B[k, N]` per image and group, where the
//! column matrix B is never formed: each task packs the B panel it multiplies straight from
//! the input, through the mask and (for a compact input) the previous layer's map.
//!
//! Blocking (BLIS order): an image's `N` columns are padded to whole `NR` tiles; the tap
//! table and each tile's read pattern are resolved once per layer (they do not depend on
//! the image). One task = (group, block of `MR` weight panels, image, block of tiles), all
//! tasks of the layer in one parallel region. Inside a task: for each depth block of `kc`
//! rows, pack B (`kc × NR` micro-panels), then for each micro-panel (L1-resident) run the
//! microkernel over every weight panel of the block (L2-resident). Full tiles accumulate in
//! the output itself and the last depth block applies bias and ReLU there; tiles with
//! padding columns or rows go through the task's edge buffer.
//!
//! A compact input (the previous layer's `[B, C, N_prev]`) under a dense output whose taps
//! read each dense position about once or more is first *expanded* (`expansion_pays_off`): each task writes the images it reads,
//! through the map, into a per-thread dense `[C, H·W]` buffer (L2-resident, reused by the
//! thread's next task of the same images), and the taps then read that buffer as a dense
//! input: one gather per input value instead of one per tap, and regular tiles again.

use std::cell::RefCell;

use rayon::prelude::*;

use super::elementwise::Expansion;
use super::pack::{pack_fn, run_pack_fn, PackFn, RunPackFn, RunRead, TileRead};
use super::taps::{Taps, PAD};
use super::SendPtr;
use crate::cpu::gemm::{pack_a, BRow, Microkernel};
use crate::cpu::read_mapped;
use crate::layer::ConvLayer;

/// Depth of one packed B block (rows of k).
const KC: usize = 256;
/// Target columns of one task.
const NC: usize = 256;
/// Output channels per group up to which regular tiles use the indirect microkernel.
const INDIRECT_MAX_M: usize = 32;
/// Layers under this many FLOPs run on the calling thread: measured on the 28x28 networks
/// at batch 1 (2 cores), one thread beats two below about 8 MFLOP.
const SEQUENTIAL_FLOPS: usize = 1 << 23;
/// Channels ahead whose B values packing and the indirect kernel prefetch.
const PREFETCH_ROWS: usize = 4;
/// Largest per-task expanded input (floats): beyond it, the taps gather through the map.
const MAX_EXPANDED: usize = 1 << 19;

/// Per-thread workspace, grown on first use and reused (no allocation in steady state).
#[derive(Default)]
struct Scratch {
    /// Packed B: `tiles × kc × NR`.
    b: Vec<f32>,
    /// Edge tiles: `rows × (tiles·NR)`.
    c: Vec<f32>,
    /// Row descriptors of one tile's indirect B.
    rows: Vec<BRow>,
    /// An expanded compact input: images `key.1 .. key.2` of the input of run `key.0`
    /// (numbered across all layers), `[image][C][H·W]`.
    dense: Vec<f32>,
    dense_key: Option<(u64, usize, usize)>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A convolution (any groups, stride, padding, dilation, mask, input map) on packed
/// microkernels.
pub(crate) struct ImplicitGemm {
    kern: Microkernel,
    pack: PackFn,
    groups: usize,
    cg: usize,
    tg: usize,
    k: usize,
    khkw: usize,
    batch: usize,
    plane: usize,
    out_channels: usize,
    panels: usize,
    /// `[group][panel][k][MR]`.
    a: Vec<f32>,
    /// `[group][panels·MR]`, zero past `tg`.
    bias: Vec<f32>,
    relu: bool,
    taps: Taps,
    /// Tiles per image: `ceil(N / NR)`.
    tiles: usize,
    /// `[kh·kw][tiles·NR]`: the taps, [`PAD`] past N.
    cols: Vec<u32>,
    /// `[kh·kw][tiles]` (empty for a barycentric input).
    reads: Vec<TileRead>,
    /// Kernel rows packed column by column, where the family has a routine for it.
    runs: Option<Runs>,
    /// Images folded into the columns: a layer with fewer positions than a tile (fully
    /// connected layers, small maps at batch > 1) runs as one "image" of `B·N` columns, the
    /// image offsets in the tap table and every tile copied out through the edge buffer.
    fold: bool,
    /// Columns of one (virtual) image: N, or B·N when folded.
    width: usize,
    /// Per tile: every kernel offset reads it regularly, so the indirect microkernel can
    /// read B straight from the input (all false without an indirect kernel).
    regular: Vec<bool>,
    /// Floats per input plane as stored (`N_prev` for a compact input).
    stored_plane: usize,
    /// The compact input's map, when each task expands it (`plane` is then `H·W`, and the
    /// taps read the dense expansion).
    expand: Option<Expand>,
}

/// Numbers every run of every layer, so an expansion left in a thread's scratch by another
/// run (of this layer or of any other, alive or dropped) is never reused.
static RUNS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether a compact input is expanded per task: when the output is dense (its tiles then
/// read the expansion regularly, with no gathers; a perforated output's taps gather either
/// way, and through the map directly costs no expansion), the taps read each dense position
/// about once or more (not a strided 1x1 conv), and an image's expansion stays L2-sized.
/// `PERFORATE_EXPAND=0` turns it off (comparisons only).
fn expansion_pays_off(layer: &ConvLayer) -> bool {
    if std::env::var("PERFORATE_EXPAND").is_ok_and(|v| v == "0") {
        return false;
    }
    let g = layer.geometry();
    let dense_plane = g.in_h * g.in_w;
    layer.input_map().is_some()
        && layer.mask().is_dense()
        && g.kernel_h * g.kernel_w * layer.mask().len() >= dense_plane
        && g.in_channels * dense_plane <= MAX_EXPANDED / 2
}

/// The taps along each kernel row as contiguous reads per column: wherever a tile of a
/// kernel row is not regular (a perforated or strided conv), its `kw` rows are packed by
/// [`RunPackFn`] instead of `kw` gathers.
struct Runs {
    pack: RunPackFn,
    kw: usize,
    /// `[kh][tiles·NR]`.
    reads: Vec<RunRead>,
    /// `[kh][tiles]`: some tap of the kernel row reads the tile irregularly.
    irregular: Vec<bool>,
}

impl Runs {
    /// The runs of `cols` (`[kh·kw][tiles·nr]`), when every column's taps along every
    /// kernel row read consecutive positions (not dilated) and some tile is irregular.
    fn new(
        pack: RunPackFn,
        cols: &[u32],
        reads: &[TileRead],
        kw: usize,
        tiles: usize,
        nr: usize,
    ) -> Option<Runs> {
        let ldi = tiles * nr;
        let kh = cols.len() / (kw * ldi);
        if !(2..=8).contains(&kw) || reads.is_empty() {
            return None;
        }
        let irregular: Vec<bool> = (0..kh * tiles)
            .map(|i| (0..kw).any(|kx| !reads[((i / tiles) * kw + kx) * tiles + i % tiles].regular))
            .collect();
        if !irregular.contains(&true) {
            return None;
        }
        let mut runs = vec![RunRead::default(); kh * ldi];
        for ky in 0..kh {
            for j in 0..ldi {
                let mut run = RunRead::default();
                let mut start = None;
                for (kx, kx_i) in (0..kw).zip(0i32..) {
                    let t = cols[(ky * kw + kx) * ldi + j];
                    if t == PAD {
                        continue;
                    }
                    let s = i32::try_from(t).ok()? - kx_i;
                    if *start.get_or_insert(s) != s {
                        return None;
                    }
                    run.keep |= 1 << kx;
                }
                run.start = start.unwrap_or(0);
                runs[ky * ldi + j] = run;
            }
        }
        Some(Runs { pack, kw, reads: runs, irregular })
    }
}

/// A compact input's map, for the per-task expansion.
struct Expand {
    kind: u32,
    table: Vec<u32>,
}

impl std::fmt::Debug for ImplicitGemm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ImplicitGemm({:?}, groups {}, m {}, k {}, n {}{})",
            self.kern,
            self.groups,
            self.tg,
            self.k,
            self.taps.n_pos,
            if self.expand.is_some() { ", input expanded" } else { "" }
        )
    }
}

impl ImplicitGemm {
    pub fn new(layer: &ConvLayer, relu: bool, kern: Microkernel) -> Self {
        let g = layer.geometry();
        let n_pos = layer.mask().len();
        // A wider tile where it pads an image's positions no more than the base one (and the
        // layer is not folded, which it only is for fewer positions than a base tile).
        let kern = match kern.wide() {
            Some(w)
                if n_pos >= kern.nr && n_pos.next_multiple_of(w.nr) <= n_pos.next_multiple_of(kern.nr) =>
            {
                w
            }
            _ => kern,
        };
        let (k, tg, nr) = (g.k_per_group(), g.out_channels_per_group(), kern.nr);
        let (w, lda) = layer.packed_weights();
        let panels = tg.div_ceil(kern.mr);
        let a = (0..g.groups).flat_map(|grp| pack_a(&w[grp * tg * lda..], tg, k, lda, kern.mr)).collect();
        let mut bias = vec![0.0f32; g.groups * panels * kern.mr];
        for grp in 0..g.groups {
            bias[grp * panels * kern.mr..][..tg].copy_from_slice(&layer.bias()[grp * tg..(grp + 1) * tg]);
        }
        let khkw = g.kernel_h * g.kernel_w;
        let dense_plane = g.in_h * g.in_w;
        let expand = layer
            .input_map()
            .filter(|_| expansion_pays_off(layer))
            .map(|m| Expand { kind: m.kind().code(), table: m.table().to_vec() });
        let taps = if expand.is_some() { Taps::dense(layer) } else { Taps::new(layer) };
        let plane = if expand.is_some() { dense_plane } else { layer.input_plane() };
        // Fold when an image's positions fill tiles poorly: fewer than a tile, or more than
        // 1/16 of the padded columns wasted (14x14 maps: 196 of 224; 7x7: 49 of 64).
        let padded = taps.n_pos.next_multiple_of(nr);
        // A pointwise conv is folded only below one tile: its tiles within an image read
        // B regularly (in place, or packed by masked loads), while folded ones span images
        // and gather every value; that costs more than the padded columns at depths this
        // small (the 28x28 NIN's 64 -> 64 1x1 convs at 14x14, batch 64: 0.65 -> 0.53 ms;
        // its 3x3 and 5x5 convs, and the VGG's, measured even or better folded).
        let wasteful = 16 * (padded - taps.n_pos) > padded;
        let fold = g.batch > 1 && (taps.n_pos < nr || wasteful && khkw > 1);
        // Columns of one (virtual) image and their taps.
        let (width, image_stride) =
            if fold { (g.batch * taps.n_pos, g.in_channels * plane) } else { (taps.n_pos, 0) };
        let tiles = width.div_ceil(nr);
        let ldi = tiles * nr;
        let mut cols = vec![PAD; khkw * ldi];
        for c in 0..khkw {
            for (j, d) in cols[c * ldi..c * ldi + width].iter_mut().enumerate() {
                let t = taps.row(c)[j % taps.n_pos];
                // Folded barycentric taps stay dense positions; the image comes from j.
                *d = if t == PAD || taps.map_kind == 3 {
                    t
                } else {
                    t + u32::try_from((j / taps.n_pos) * image_stride)
                        .expect("validated geometry: input indices fit in u32")
                };
            }
        }
        let reads =
            if taps.map_kind == 3 { Vec::new() } else { cols.chunks_exact(nr).map(TileRead::new).collect() };
        // Reading B in place saves packing, which matters when few weight panels share each
        // packed panel; past that the packed kernel's loads are cheaper than masked ones.
        let regular = (0..tiles)
            .map(|t| {
                tg <= INDIRECT_MAX_M
                    && kern.has_indirect()
                    && !reads.is_empty()
                    && (0..khkw).all(|c| reads[c * tiles + t].regular)
            })
            .collect();
        let runs = run_pack_fn(kern.name)
            .filter(|_| std::env::var("PERFORATE_RUN_PACK").map_or(true, |v| v != "0"))
            .and_then(|f| Runs::new(f, &cols, &reads, g.kernel_w, tiles, nr));
        ImplicitGemm {
            regular,
            kern,
            pack: pack_fn(kern.name),
            groups: g.groups,
            cg: g.in_channels_per_group(),
            tg,
            k,
            khkw,
            batch: g.batch,
            plane,
            stored_plane: layer.input_plane(),
            expand,
            out_channels: g.out_channels,
            panels,
            a,
            bias,
            relu,
            taps,
            tiles,
            cols,
            reads,
            runs,
            fold,
            width,
        }
    }

    /// `x` is the `[B, C, plane]` input, `out` the `[B, T, N]` output.
    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        let n_pos = self.taps.n_pos;
        assert!(out.len() >= self.batch * n_pos * self.out_channels, "conv output buffer too small");
        assert!(x.len() >= self.batch * self.cg * self.groups * self.stored_plane, "conv input too short");
        assert!(x.len() < i32::MAX as usize, "conv input indices must fit in i32 (gather offsets)");
        let images = if self.fold { 1 } else { self.batch };
        let flops = 2 * self.groups * images * self.tg * self.k * self.width;
        // A layer this small costs less than waking the other threads: run it here.
        let want = if flops < SEQUENTIAL_FLOPS { 1 } else { 2 * rayon::current_num_threads() };
        // Tile blocks per image of about NC columns; then, if that leaves the threads short
        // of work, split the weight panels, then the tiles further.
        let per_nc = (NC / self.kern.nr).max(1);
        let mut tile_blocks = self.tiles.div_ceil(per_nc);
        let units = self.groups * images;
        let m_blocks = want.div_ceil(units * tile_blocks).clamp(1, self.panels);
        let per_mb = self.panels.div_ceil(m_blocks);
        let m_blocks = self.panels.div_ceil(per_mb);
        if units * m_blocks * tile_blocks < want {
            tile_blocks = want.div_ceil(units * m_blocks).min(self.tiles);
        }
        let per_tb = self.tiles.div_ceil(tile_blocks);
        let tile_blocks = self.tiles.div_ceil(per_tb);
        let tasks = units * m_blocks * tile_blocks;
        let out = SendPtr(out.as_mut_ptr());
        let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let run_task = |t: usize| {
            let (grp, rest) = (t % self.groups, t / self.groups);
            let (mb, rest) = (rest % m_blocks, rest / m_blocks);
            let (tb, img) = (rest % tile_blocks, rest / tile_blocks);
            let panels = mb * per_mb..((mb + 1) * per_mb).min(self.panels);
            let tiles = tb * per_tb..((tb + 1) * per_tb).min(self.tiles);
            SCRATCH.with(|s| self.task(&mut s.borrow_mut(), x, run, out, grp, panels, img, tiles));
        };
        if want == 1 {
            (0..tasks).for_each(run_task);
        } else {
            (0..tasks).into_par_iter().for_each(run_task);
        }
    }

    /// Packs rows `row .. row + kw` of this depth block (one channel's kernel row, from its
    /// offset `c`, `src` the channel base) for the task's tiles: irregular tiles column by
    /// column through the runs, regular ones row by row as [`Self::pack`] does.
    #[allow(clippy::too_many_arguments)]
    fn pack_kernel_row(
        &self,
        runs: &Runs,
        src: *const f32,
        b: &mut [f32],
        tiles: &std::ops::Range<usize>,
        row: usize,
        kcb: usize,
        c: usize,
        ahead: isize,
    ) {
        let (nr, ldi, ky) = (self.kern.nr, self.tiles * self.kern.nr, c / runs.kw);
        for (t, tile) in tiles.clone().enumerate() {
            let dst = b[(t * kcb + row) * nr..][..runs.kw * nr].as_mut_ptr();
            if runs.irregular[ky * self.tiles + tile] {
                // SAFETY: every kept tap is inside the channel's input from `src` (the tap
                // table the runs were built from); dst holds the kw rows of this tile.
                unsafe { (runs.pack)(src, &runs.reads[ky * ldi + tile * nr..], dst, nr, runs.kw) };
                continue;
            }
            for kx in 0..runs.kw {
                let (cc, off) = (c + kx, (c + kx) * ldi + tile * nr);
                // SAFETY: as for `Self::pack` on one tile: its taps are inside the input,
                // and dst holds row kx of this tile.
                unsafe {
                    (self.pack)(
                        src,
                        &self.cols[off..off + nr],
                        &self.reads[cc * self.tiles + tile..][..1],
                        dst.add(kx * nr),
                        nr,
                        nr,
                        ahead,
                    );
                }
            }
        }
    }

    /// Makes `s.dense` the expansion of the images this task reads (image `img`, or the
    /// images its folded columns span) and returns the first of them; an expansion of the
    /// same images in the same run is reused.
    fn expanded(
        &self,
        s: &mut Scratch,
        e: &Expand,
        x: &[f32],
        run: u64,
        img: usize,
        tiles: &std::ops::Range<usize>,
    ) -> usize {
        let (first, end) = if self.fold {
            let nr = self.kern.nr;
            let last_col = (tiles.end * nr).min(self.width) - 1;
            (tiles.start * nr / self.taps.n_pos, last_col / self.taps.n_pos + 1)
        } else {
            (img, img + 1)
        };
        let key = (run, first, end);
        if s.dense_key == Some(key) {
            return first;
        }
        let channels = self.cg * self.groups;
        s.dense.resize((end - first) * channels * self.plane, 0.0);
        let src = x[first * channels * self.stored_plane..end * channels * self.stored_plane]
            .chunks_exact(self.stored_plane);
        let expansion = Expansion::new(e.kind, &e.table, self.plane);
        for (dst, src) in s.dense.chunks_exact_mut(self.plane).zip(src) {
            expansion.expand(src, dst);
        }
        s.dense_key = Some(key);
        first
    }

    /// Whether the tile (`tile`, `panel`) is written straight into the output: all its
    /// columns are positions of one image and all its rows are channels of the group, or,
    /// with `partial` (the kernel writes only a panel's real rows, [`Self::panel_rows`]),
    /// the rows it writes are. Other tiles go through the task's edge buffer and are
    /// copied out at the end.
    fn direct(&self, tile: usize, panel: usize, partial: bool) -> bool {
        !self.fold
            && (tile + 1) * self.kern.nr <= self.taps.n_pos
            && (partial || (panel + 1) * self.kern.mr <= self.tg)
    }

    /// Weight panel `panel`'s channels of the group (`MR`, or fewer for the last panel).
    fn real_rows(&self, panel: usize) -> usize {
        self.kern.mr.min(self.tg.saturating_sub(panel * self.kern.mr))
    }

    /// The rows the kernel computes for weight panel `panel`: [`Self::real_rows`] when the
    /// family has a partial-rows variant (`partial`), else all `MR` (the padded rows'
    /// results land in the edge buffer and are dropped).
    fn panel_rows(&self, panel: usize, partial: bool) -> usize {
        if partial {
            self.real_rows(panel)
        } else {
            self.kern.mr
        }
    }

    /// The packed weight panel from depth `p0` (`(k − p0)·MR` floats) and, for the last
    /// depth block, its `MR` biases (null otherwise: no epilogue yet).
    fn weights(&self, grp: usize, panel: usize, p0: usize, last: bool) -> (*const f32, *const f32) {
        let mr = self.kern.mr;
        let a = self.a[((grp * self.panels + panel) * self.k + p0) * mr..].as_ptr();
        let bias =
            if last { self.bias[(grp * self.panels + panel) * mr..].as_ptr() } else { std::ptr::null() };
        (a, bias)
    }

    /// Where the microkernel writes tile `tile` (the task's `t`-th) × weight panel `panel`
    /// (the task's `i`-th): the output itself at row stride N for a [`Self::direct`] tile,
    /// else the edge buffer `c` (stride `ldc`). Either holds the rows the kernel writes
    /// ([`Self::panel_rows`]) of `NR` floats.
    #[allow(clippy::too_many_arguments)]
    fn destination(
        &self,
        out: SendPtr,
        out_base: usize,
        c: &mut [f32],
        ldc: usize,
        i: usize,
        t: usize,
        tile: usize,
        panel: usize,
        partial: bool,
    ) -> (*mut f32, usize) {
        let (mr, nr, n_pos) = (self.kern.mr, self.kern.nr, self.taps.n_pos);
        if self.direct(tile, panel, partial) {
            // SAFETY: rows panel·MR.. of this group and columns tile·NR.. of this image lie
            // inside the output (`direct`); only the task owning them writes there.
            (unsafe { out.ptr().add(out_base + panel * mr * n_pos + tile * nr) }, n_pos)
        } else {
            (c[i * mr * ldc + t * nr..].as_mut_ptr(), ldc)
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn task(
        &self,
        s: &mut Scratch,
        x: &[f32],
        run: u64,
        out: SendPtr,
        grp: usize,
        panels: std::ops::Range<usize>,
        img: usize,
        tiles: std::ops::Range<usize>,
    ) {
        let (mr, nr, n_pos) = (self.kern.mr, self.kern.nr, self.taps.n_pos);
        let ldi = self.tiles * nr;
        let nt = tiles.len();
        let ldc = nt * nr;
        let image_len = self.cg * self.groups * self.plane;
        // The base every tap offset of this task is relative to: image `img` of the input,
        // or of its expansion (which starts at image `first`, hence the wrapping offset).
        let x_img: *const f32 = match &self.expand {
            None => x[img * image_len..].as_ptr(),
            Some(e) => {
                let first = self.expanded(s, e, x, run, img, &tiles);
                s.dense.as_ptr().wrapping_sub(first * image_len).wrapping_add(img * image_len)
            }
        };
        let bary = self.taps.map_kind == 3;
        let rows = panels.len() * mr;
        s.c.resize(rows * ldc, 0.0);
        let depth_blocks = self.k.div_ceil(KC);
        let kc = self.k.div_ceil(depth_blocks);
        s.b.resize(nt * kc * nr, 0.0);
        // The output plane of this image's first channel of the group.
        let out_base = (img * self.out_channels + grp * self.tg) * n_pos;

        let indirect = tiles.clone().all(|t| self.regular[t]);
        // The packed path's kernel computes only a panel's real rows where it can.
        let partial = !indirect && self.kern.has_rows();
        for p0 in (0..self.k).step_by(kc) {
            let kcb = kc.min(self.k - p0);
            let last = p0 + kcb == self.k;
            if indirect {
                let keep_all = if nr == 64 { u64::MAX } else { (1u64 << nr) - 1 };
                for tile in tiles.clone() {
                    s.rows.clear();
                    for r in p0..p0 + kcb {
                        let (ci, c) = (r / self.khkw, r % self.khkw);
                        let read = &self.reads[c * self.tiles + tile];
                        let base = (grp * self.cg + ci) * self.plane;
                        // Lanes outside the input are masked out and never read.
                        let ptr = x_img.wrapping_add(base).wrapping_offset(read.start);
                        s.rows.push(BRow { ptr, keep: !read.pad & keep_all });
                    }
                    let t = tile - tiles.start;
                    for (i, panel) in panels.clone().enumerate() {
                        let (a, bias) = self.weights(grp, panel, p0, last);
                        let (c, ldc) =
                            self.destination(out, out_base, &mut s.c, ldc, i, t, tile, panel, false);
                        // SAFETY: kept lanes of every row lie inside the input (regular taps);
                        // A, C and bias as `weights` and `destination` give them.
                        unsafe { self.kern.run_indirect(kcb, a, &s.rows, c, ldc, p0 > 0, bias, self.relu) };
                    }
                }
                continue;
            }
            // Pack B: row r of the block is (input channel, kernel offset) = (r / khkw, r % khkw).
            let mut r = p0;
            while r < p0 + kcb {
                let (ci, c) = (r / self.khkw, r % self.khkw);
                let base = (grp * self.cg + ci) * self.plane;
                #[allow(clippy::cast_possible_wrap)]
                let ahead = (PREFETCH_ROWS * self.plane) as isize;
                if let Some(runs) = self.runs.as_ref().filter(|u| c % u.kw == 0 && r + u.kw <= p0 + kcb) {
                    self.pack_kernel_row(
                        runs,
                        x_img.wrapping_add(base),
                        &mut s.b,
                        &tiles,
                        r - p0,
                        kcb,
                        c,
                        ahead,
                    );
                    r += runs.kw;
                    continue;
                }
                let taps = &self.cols[c * ldi + tiles.start * nr..c * ldi + tiles.end * nr];
                if !bary {
                    let reads = &self.reads[c * self.tiles + tiles.start..c * self.tiles + tiles.end];
                    let b = s.b[(r - p0) * nr..].as_mut_ptr();
                    // SAFETY: every tap that is not PAD is inside the image's input from
                    // `base` (the tap table's construction); B holds nt micro-panels of kcb·NR.
                    // Rows are (channel, tap) pairs, so the same taps PREFETCH_ROWS channels on
                    // are this block's row r + PREFETCH_ROWS·khkw: fetched before their turn,
                    // since the hardware prefetcher sees only short runs here (a task's
                    // columns of each channel, a plane apart).
                    unsafe { (self.pack)(x_img.add(base), taps, reads, b, kcb * nr, nr, ahead) };
                    r += 1;
                    continue;
                }
                let image_stride = self.cg * self.groups * self.plane;
                // Barycentric taps through the map (never expanded here: `expand` is None).
                let x_img = &x[img * image_len..];
                for (t, tt) in taps.chunks_exact(nr).enumerate() {
                    let dst = &mut s.b[(t * kcb + (r - p0)) * nr..][..nr];
                    for (j, (d, &tap)) in dst.iter_mut().zip(tt).enumerate() {
                        let im = if self.fold { ((tiles.start + t) * nr + j) / n_pos } else { 0 };
                        *d = if tap == PAD {
                            0.0
                        } else {
                            read_mapped(
                                3,
                                &self.taps.map_table,
                                &x_img[im * image_stride + base..],
                                tap as usize,
                            )
                        };
                    }
                }
                r += 1;
            }
            for (t, tile) in tiles.clone().enumerate() {
                let b = s.b[t * kcb * nr..].as_ptr();
                for (i, panel) in panels.clone().enumerate() {
                    let (a, bias) = self.weights(grp, panel, p0, last);
                    let (c, ldc) = self.destination(out, out_base, &mut s.c, ldc, i, t, tile, panel, partial);
                    let rows = self.panel_rows(panel, partial);
                    // SAFETY: the B micro-panel holds kcb·NR floats; A, C and bias as
                    // `weights` and `destination` give them, C for `rows` rows (all MR unless
                    // the family has the partial-rows variant).
                    unsafe { self.kern.run_rows(rows, kcb, a, b, c, ldc, p0 > 0, bias, self.relu) };
                }
            }
        }

        // Edge tiles: copy their real rows and columns out of the buffer.
        for (t, tile) in tiles.clone().enumerate() {
            let cols = nr.min(self.width.saturating_sub(tile * nr));
            for (i, panel) in panels.clone().enumerate() {
                if self.direct(tile, panel, partial) {
                    continue;
                }
                for row in 0..self.real_rows(panel) {
                    let m = panel * mr + row;
                    let src = &s.c[(i * mr + row) * ldc + t * nr..][..cols];
                    if self.fold {
                        // Runs of columns within one image.
                        let mut jj = 0;
                        while jj < cols {
                            let j = tile * nr + jj;
                            let (im, e) = (j / n_pos, j % n_pos);
                            let run = (n_pos - e).min(cols - jj);
                            // SAFETY: (image im, channel, positions e..e + run) is inside the
                            // output; only this task writes this channel block's columns.
                            let dst = unsafe {
                                std::slice::from_raw_parts_mut(
                                    out.ptr().add((im * self.out_channels + grp * self.tg + m) * n_pos + e),
                                    run,
                                )
                            };
                            dst.copy_from_slice(&src[jj..jj + run]);
                            jj += run;
                        }
                        continue;
                    }
                    // SAFETY: (img, group channel m, columns tile·NR.. + cols) is inside the
                    // output; only this task writes it.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(out.ptr().add(out_base + m * n_pos + tile * nr), cols)
                    };
                    dst.copy_from_slice(src);
                }
            }
        }
    }
}
