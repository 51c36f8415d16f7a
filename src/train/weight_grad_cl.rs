//! A conv's weight gradient on AVX2 and AVX-512 from channel-last operands, as a
//! register-tiled product over the output positions:
//! `dW[t, c, tap] = Σ_images Σ_p dY[p, t] · Xpad[base(p) + offset(tap), c]`.
//!
//! Each image's input is laid out zero-padded and channel-last (`[Hp][Wp][C]`), its output
//! gradient position-major (`[n][Tp]`, `Tp` = the output channels rounded up to 8, the
//! extra lanes zero). A column of the product is one (tap, input channel) pair: one
//! address offset from a position's base. A tile is 16 output channels (two vectors of
//! the gradient row, loaded as stored) x 6 columns (each one broadcast scalar), 12
//! accumulators, per position 2 + 6 loads for 12 FMAs, with no packing and no
//! horizontal sums: the shape of the forward's HWC tile with positions as the reduction.
//! (The dot-product tiles of `weight_grad`, which the other families keep, reach 6 loads
//! per 8 FMAs and end every call in horizontal sums.)
//!
//! On AVX-512 the roles turn: a tile is 3 vectors of 16 columns (16 input channels of one
//! tap: one load each from the channel-last input, so the input channels are a multiple
//! of 16) x 8 output channels (broadcasts of the gradient row), 24 accumulators, per
//! position 3 + 8 loads for 24 FMAs. The AVX2 tiles, run on AVX-512 CPUs, measured no
//! faster than `weight_grad`'s AVX-512 dot products; these are 1.4-1.7x faster than them
//! on the 28x28 ResNet's 3x3 convs at batch 64 and 1.8-1.9x on its strided 1x1 convs.

// Indices are bounded by validated geometries.
#![allow(clippy::cast_possible_truncation)]

use rayon::prelude::*;

use super::buffers;
use crate::cpu::fast::to_channel_last;
use crate::geometry::ConvGeometry;

/// Floats per column of a tile's sums (the widest tile: 3 vectors of output channels).
const LANES: usize = 24;
/// Columns are padded to a multiple of every tile's column count (8, 6, 3).
const COLUMN_PAD: usize = 24;
/// Input bytes per block of positions (their lines stay in L1 with the block's gradient).
const BLOCK_BYTES: usize = 16384;
/// About how many bytes of layouts one pass over the tiles reads (within L2).
const PASS_BYTES: usize = 1 << 17;

/// Whether this path computes `g`'s weight gradient: ungrouped convs, on CPUs where the
/// executor runs the AVX2 family.
///
/// Dense unpadded 1x1 convs (whose operands `weight_grad` reads in place, no layout) and
/// convs over fewer than 8 input channels (first layers: few columns, most of the work
/// the layouts) keep `weight_grad`.
///
/// On the AVX-512 family it takes convs whose input channels are a multiple of 16 (the
/// zmm tiles' column vectors lie within one tap); the AVX2 tiles there measured no
/// faster than `weight_grad`'s AVX-512 dot products.
pub(crate) fn applies(g: &ConvGeometry, positions: usize) -> bool {
    let as_stored = g.is_pointwise() && positions == g.in_h * g.in_w;
    g.groups == 1 && g.in_channels >= 8 && !as_stored && tiles(g).is_some()
}

/// The tiles that compute `g`'s weight gradient here, if any.
fn tiles(g: &ConvGeometry) -> Option<Tiles> {
    match crate::cpu::gemm::Microkernel::detect().name {
        "avx2" => Some(Tiles::Ymm),
        "avx512" if g.in_channels.is_multiple_of(16) => Some(Tiles::Zmm),
        _ => None,
    }
}

/// How the product is tiled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tiles {
    /// AVX2: vectors of output channels x broadcast columns; sums per output-channel
    /// block, `LANES` floats per column.
    Ymm,
    /// AVX-512: vectors of 16 columns (16 input channels of one tap, contiguous in the
    /// channel-last input) x 8 broadcast output channels; sums as `[tp][k]`.
    Zmm,
}

/// The output-channel blocks of a tile pass: `(first lane, vectors)`. Multiples of 24
/// lanes (not of 16) take 3-vector tiles; otherwise 2-vector tiles and a last 1-vector
/// one.
fn blocks(tp: usize) -> Vec<(usize, usize)> {
    if !tp.is_multiple_of(16) && tp.is_multiple_of(24) {
        return (0..tp).step_by(24).map(|t0| (t0, 3)).collect();
    }
    (0..tp).step_by(16).map(|t0| (t0, if tp - t0 >= 16 { 2 } else { 1 })).collect()
}

/// The layout of one image: the padded channel-last input and the position-major
/// gradient, and where each computed position and each column start in them (shared
/// with `input_grad_cl`, whose padded gradient has the input's layout).
pub(super) struct Layout {
    /// Padded input width and height.
    pub(super) wp: usize,
    hp: usize,
    /// Floats of one image's input layout.
    pub(super) x_len: usize,
    /// Output channels rounded up to a vector.
    pub(super) tp: usize,
    /// Floats of one image's gradient layout.
    dy_len: usize,
    /// Each computed position's first input value (its top-left tap, channel 0).
    pub(super) at: Vec<u32>,
    /// Each column's offset from a position's base, columns in (tap, channel) order.
    pub(super) cols: Vec<usize>,
}

impl Layout {
    pub(super) fn of(g: &ConvGeometry, positions: &[u32]) -> Self {
        let c = g.in_channels;
        let wp = g.in_w + g.pad_left + g.pad_right;
        let hp = g.in_h + g.pad_top + g.pad_bottom;
        let ow = g.out_w();
        let at = positions
            .iter()
            .map(|&p| {
                let (y, x) = (p as usize / ow, p as usize % ow);
                ((y * g.stride_h * wp + x * g.stride_w) * c) as u32
            })
            .collect();
        let mut cols = Vec::with_capacity(g.kernel_h * g.kernel_w * c);
        for ky in 0..g.kernel_h {
            for kx in 0..g.kernel_w {
                let tap = (ky * g.dilation_h * wp + kx * g.dilation_w) * c;
                cols.extend((0..c).map(|ch| tap + ch));
            }
        }
        let tp = g.out_channels.next_multiple_of(8);
        Layout { wp, hp, x_len: hp * wp * c, tp, dy_len: positions.len() * tp, at, cols }
    }

    /// Each column's index in an output channel's row of the weight gradient (OIHW: the
    /// channel's taps are consecutive, the columns run over channels first).
    fn weight_columns(g: &ConvGeometry) -> Vec<usize> {
        let (c, taps) = (g.in_channels, g.kernel_h * g.kernel_w);
        (0..c * taps).map(|k| (k % c) * taps + k / c).collect()
    }
}

/// The weight gradient (OIHW) and the bias gradient of an ungrouped conv with input `x`
/// (`[B, C, H, W]`) and output gradient `dy` (`[B, T, n]` at the `n` output `positions`);
/// callers check [`applies`].
pub(crate) fn weight_grad_cl(
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    positions: &[u32],
) -> (Vec<f32>, Vec<f32>) {
    debug_assert!(applies(g, positions.len()));
    let n = positions.len();
    let (t_all, in_len) = (g.out_channels, g.in_channels * g.in_h * g.in_w);
    let lay = Layout::of(g, positions);
    let per_task = g.batch.div_ceil(2 * rayon::current_num_threads()).max(1);
    // Images per pass over the tiles: as many as fit the pass's bytes.
    let pass = (PASS_BYTES / (4 * (lay.x_len + lay.dy_len)).max(1)).clamp(1, per_task);
    let k = lay.cols.len();
    let tiles = tiles(g).expect("callers check `applies`");
    // The tiles' sums: per block of output channels, `LANES` floats per column (Ymm), or
    // one row of `k` per output-channel lane (Zmm).
    let acc_block = k.next_multiple_of(COLUMN_PAD) * LANES;
    let acc_len = match tiles {
        Tiles::Ymm => blocks(lay.tp).len() * acc_block,
        Tiles::Zmm => lay.tp * k,
    };
    let zero = || Task {
        acc: buffers::zeroed(acc_len),
        db: vec![0.0; t_all],
        // The padding is written once (zeros) and never again.
        x: buffers::zeroed(pass * lay.x_len),
        // Lanes past the output channels stay zero.
        dy: buffers::zeroed(pass * lay.dy_len),
        plane: buffers::scratch(in_len.max(n * t_all)),
    };
    let mut task = x
        .par_chunks(per_task * in_len)
        .zip(dy.par_chunks(per_task * t_all * n))
        .fold(zero, |mut task, (x, dy)| {
            for (j, row) in dy.chunks_exact(n.max(1)).enumerate() {
                task.db[j % t_all] += super::weight_grad::sum(row);
            }
            for (x, dy) in x.chunks(pass * in_len).zip(dy.chunks(pass * t_all * n)) {
                let count = x.len() / in_len;
                for (i, (x, dy)) in x.chunks_exact(in_len).zip(dy.chunks_exact(t_all * n)).enumerate() {
                    lay_out_input(g, &lay, x, &mut task.plane, &mut task.x[i * lay.x_len..][..lay.x_len]);
                    let out = &mut task.dy[i * lay.dy_len..][..lay.dy_len];
                    position_major(dy, n, t_all, lay.tp, &mut task.plane, out);
                }
                match tiles {
                    Tiles::Ymm => accumulate(g, &lay, &task.x, &task.dy, count, &mut task.acc),
                    Tiles::Zmm => accumulate_zmm(g, &lay, &task.x, &task.dy, count, &mut task.acc),
                }
            }
            task
        })
        .reduce_with(|mut a, b| {
            a.acc.iter_mut().zip(&b.acc).for_each(|(p, q)| *p += q);
            a.db.iter_mut().zip(&b.db).for_each(|(p, q)| *p += q);
            b.recycle();
            a
        })
        .unwrap_or_else(zero);
    // The sums into OIHW order.
    let mut dw = vec![0.0; g.weight_len()];
    let at_column = Layout::weight_columns(g);
    match tiles {
        Tiles::Ymm => {
            for ((t0, vectors), block) in blocks(lay.tp).into_iter().zip(task.acc.chunks_exact(acc_block)) {
                for (kk, lanes) in block.chunks_exact(LANES).take(k).enumerate() {
                    for (i, &v) in lanes.iter().enumerate().take((8 * vectors).min(t_all.saturating_sub(t0)))
                    {
                        dw[(t0 + i) * k + at_column[kk]] = v;
                    }
                }
            }
        }
        Tiles::Zmm => {
            for (dst, row) in dw.chunks_exact_mut(k).zip(task.acc.chunks_exact(k)) {
                for (kk, &v) in row.iter().enumerate() {
                    dst[at_column[kk]] = v;
                }
            }
        }
    }
    let db = std::mem::take(&mut task.db);
    task.recycle();
    (dw, db)
}

/// One rayon task's partial gradients and layouts (`plane`: the channel-last copy
/// before it is padded, and the gradient's).
struct Task {
    acc: Vec<f32>,
    db: Vec<f32>,
    x: Vec<f32>,
    dy: Vec<f32>,
    plane: Vec<f32>,
}

impl Task {
    fn recycle(self) {
        for v in [self.acc, self.x, self.dy, self.plane] {
            buffers::recycle(v);
        }
    }
}

/// One image's input into its padded channel-last layout (whose padding is zero).
fn lay_out_input(g: &ConvGeometry, lay: &Layout, x: &[f32], plane: &mut [f32], out: &mut [f32]) {
    let (c, w) = (g.in_channels, g.in_w);
    to_channel_last(x, g.in_h * w, c, plane);
    for (yi, row) in plane[..g.in_h * w * c].chunks_exact(w * c).enumerate() {
        out[((yi + g.pad_top) * lay.wp + g.pad_left) * c..][..w * c].copy_from_slice(row);
    }
    debug_assert_eq!(out.len(), lay.hp * lay.wp * c);
}

/// One image's output gradient (`dy`: `[T][n]`) position-major with `tp >= T` lanes per
/// position (`out`: `[n][tp]`; lanes past `T` are left as they are). `plane` holds
/// `n · T` floats of scratch.
pub(super) fn position_major(dy: &[f32], n: usize, t: usize, tp: usize, plane: &mut [f32], out: &mut [f32]) {
    if t == tp {
        to_channel_last(dy, n, t, out);
        return;
    }
    to_channel_last(dy, n, t, plane);
    for (dst, src) in out.chunks_exact_mut(tp).zip(plane.chunks_exact(t)) {
        dst[..t].copy_from_slice(src);
    }
}

/// Adds the tiles' sums over `count` laid-out images to `acc` (per block of 16 output
/// channels, 16 lanes per column; a last block of 8 channels uses the first 8 lanes).
/// Output-channel blocks, then positions in blocks (their gradient lines and input lines
/// stay in L1 while every column block reads them), then column blocks.
fn accumulate(g: &ConvGeometry, lay: &Layout, x: &[f32], dy: &[f32], count: usize, acc: &mut [f32]) {
    let k = lay.cols.len();
    let n = lay.at.len();
    // Every position of the pass's images: its base in `x`.
    let bases: Vec<u32> =
        (0..count).flat_map(|img| lay.at.iter().map(move |&a| (img * lay.x_len) as u32 + a)).collect();
    let reach = bases.iter().max().map_or(0, |&a| a as usize) + lay.cols.iter().max().copied().unwrap_or(0);
    assert!(
        count * lay.x_len < u32::MAX as usize && x.len() > reach && dy.len() >= count * n * lay.tp,
        "weight gradient layouts out of bounds"
    );
    let acc_block = k.next_multiple_of(COLUMN_PAD) * LANES;
    for ((t0, vectors), acc) in blocks(lay.tp).into_iter().zip(acc.chunks_exact_mut(acc_block)) {
        let nc = [8, 6, 3][vectors - 1];
        // A position's input line and its gradient lanes, `BLOCK_BYTES` for the block.
        let block_len = (BLOCK_BYTES / (4 * (g.in_channels + 8 * vectors))).clamp(32, 256);
        for q0 in (0..bases.len()).step_by(block_len) {
            let block = &bases[q0..(q0 + block_len).min(bases.len())];
            // SAFETY: inside `dy` (asserted): rows q0.. of `tp` lanes, from lane t0.
            let d = unsafe { dy.as_ptr().add(q0 * lay.tp + t0) };
            for (c0, sums) in (0..k).step_by(nc).zip(acc.chunks_exact_mut(nc * LANES)) {
                let cols = nc.min(k - c0);
                // Past the last column: the last one again (its sums are not used).
                let col = |j: usize| lay.cols[c0 + j.min(cols - 1)];
                let (x, sums) = (x.as_ptr(), sums.as_mut_ptr());
                // SAFETY: AVX2 and FMA were detected (`applies`); every base plus every
                // column offset lies below `reach < x.len()`; the gradient rows hold
                // `t0 + 8·vectors <= tp` lanes (`blocks`); `sums` holds `nc` columns of
                // `LANES` floats.
                unsafe {
                    match vectors {
                        1 => avx2::tile::<1, 8>(x, d, lay.tp, block, std::array::from_fn(col), sums),
                        2 => avx2::tile::<2, 6>(x, d, lay.tp, block, std::array::from_fn(col), sums),
                        _ => avx2::tile::<3, 3>(x, d, lay.tp, block, std::array::from_fn(col), sums),
                    }
                }
            }
        }
    }
}

/// `accumulate` for the AVX-512 tiles: adds the sums over `count` laid-out images to `acc`
/// (`[tp][k]`, columns in (tap, channel) order). Output channels in blocks of 8, then
/// positions in blocks (their lines stay in L1), then column vectors in threes.
fn accumulate_zmm(g: &ConvGeometry, lay: &Layout, x: &[f32], dy: &[f32], count: usize, acc: &mut [f32]) {
    let (c, k) = (g.in_channels, lay.cols.len());
    let n = lay.at.len();
    let bases: Vec<u32> =
        (0..count).flat_map(|img| lay.at.iter().map(move |&a| (img * lay.x_len) as u32 + a)).collect();
    // Each 16-column vector's offset from a position's base (c is a multiple of 16).
    let vectors: Vec<usize> = lay.cols.iter().step_by(16).copied().collect();
    let reach =
        bases.iter().max().map_or(0, |&a| a as usize) + vectors.iter().max().copied().unwrap_or(0) + 16;
    assert!(
        c.is_multiple_of(16)
            && count * lay.x_len < u32::MAX as usize
            && x.len() >= reach
            && dy.len() >= count * n * lay.tp
            && acc.len() >= lay.tp * k,
        "weight gradient layouts out of bounds"
    );
    let block_len = (BLOCK_BYTES / (4 * (c + 8))).clamp(32, 256);
    for t0 in (0..lay.tp).step_by(8) {
        for q0 in (0..bases.len()).step_by(block_len) {
            let block = &bases[q0..(q0 + block_len).min(bases.len())];
            // SAFETY: inside `dy` (asserted): rows q0.. of `tp` lanes, from lane t0.
            let d = unsafe { dy.as_ptr().add(q0 * lay.tp + t0) };
            for v0 in (0..vectors.len()).step_by(3) {
                let nv = 3.min(vectors.len() - v0);
                let off = |j: usize| vectors[v0 + j.min(nv - 1)];
                // SAFETY: AVX-512F was detected (`tiles`); every base plus every vector
                // offset plus 16 lies within `x` (asserted through `reach`); the gradient
                // rows hold lanes t0..t0 + 8 <= tp; sums rows t0..t0 + 8 of `k` columns,
                // from column 16·v0, hold the `nv` vectors.
                unsafe {
                    let (x, sums) = (x.as_ptr(), acc.as_mut_ptr().add(t0 * k + 16 * v0));
                    match nv {
                        3 => avx512::tile::<3>(x, d, lay.tp, block, std::array::from_fn(off), sums, k),
                        2 => avx512::tile::<2>(x, d, lay.tp, block, std::array::from_fn(off), sums, k),
                        _ => avx512::tile::<1>(x, d, lay.tp, block, std::array::from_fn(off), sums, k),
                    }
                }
            }
        }
    }
}

mod avx512 {
    use std::arch::x86_64::*;

    /// `V` vectors of 16 columns x 8 output channels (`8·V` accumulators) over the
    /// positions `bases` (gradient rows from `d`, `tp` floats apart), added to `sums`
    /// (row `j` for output channel `j`, `ldk` floats apart): per position `V` input loads
    /// and 8 broadcasts for `8·V` FMAs.
    ///
    /// # Safety
    /// AVX-512F is available; every base plus every offset starts 16 readable floats of
    /// `x`; `d` starts `bases.len()` rows of 8 readable lanes, `tp` apart; `sums` starts 8
    /// rows of `16·V` writable floats, `ldk` apart.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile<const V: usize>(
        x: *const f32,
        d: *const f32,
        tp: usize,
        bases: &[u32],
        offs: [usize; V],
        sums: *mut f32,
        ldk: usize,
    ) {
        let mut acc: [[__m512; V]; 8] = std::array::from_fn(|j| {
            // SAFETY: row j of `sums`.
            std::array::from_fn(|v| unsafe { _mm512_loadu_ps(sums.add(j * ldk + 16 * v)) })
        });
        let mut d = d;
        for &a in bases {
            // SAFETY: the caller's contract.
            unsafe {
                let b = x.add(a as usize);
                let xv: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(b.add(offs[v])));
                for (j, row) in acc.iter_mut().enumerate() {
                    let s = _mm512_set1_ps(*d.add(j));
                    for v in 0..V {
                        row[v] = _mm512_fmadd_ps(s, xv[v], row[v]);
                    }
                }
                d = d.add(tp);
            }
        }
        for (j, row) in acc.iter().enumerate() {
            for (v, &r) in row.iter().enumerate() {
                // SAFETY: row j of `sums`.
                unsafe { _mm512_storeu_ps(sums.add(j * ldk + 16 * v), r) };
            }
        }
    }
}

mod avx2 {
    use super::LANES;
    use std::arch::x86_64::*;

    /// `V` vectors of output channels x `NC` columns (`V · NC = 12` accumulators) over
    /// the positions `bases` (gradient rows from `d`, `tp` floats apart), added to
    /// `sums`: per position `V` gradient loads and `NC` broadcasts.
    ///
    /// # Safety
    /// AVX2 and FMA are available; every base plus every column offset lies inside `x`;
    /// `d` starts `bases.len()` rows of `8·V` readable lanes, `tp` apart; `sums` holds `NC`
    /// columns of `LANES` floats.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile<const V: usize, const NC: usize>(
        x: *const f32,
        d: *const f32,
        tp: usize,
        bases: &[u32],
        cols: [usize; NC],
        sums: *mut f32,
    ) {
        let mut acc: [[__m256; V]; NC] = std::array::from_fn(|j| {
            // SAFETY: column j of `sums`.
            std::array::from_fn(|v| unsafe { _mm256_loadu_ps(sums.add(j * LANES + 8 * v)) })
        });
        let mut d = d;
        for &a in bases {
            // SAFETY: the caller's contract.
            unsafe {
                let b = x.add(a as usize);
                let dv: [__m256; V] = std::array::from_fn(|v| _mm256_loadu_ps(d.add(8 * v)));
                for (j, &o) in cols.iter().enumerate() {
                    let s = _mm256_broadcast_ss(&*b.add(o));
                    for v in 0..V {
                        acc[j][v] = _mm256_fmadd_ps(s, dv[v], acc[j][v]);
                    }
                }
                d = d.add(tp);
            }
        }
        for (j, a) in acc.iter().enumerate() {
            for (v, &r) in a.iter().enumerate() {
                // SAFETY: column j of `sums`.
                unsafe { _mm256_storeu_ps(sums.add(j * LANES + 8 * v), r) };
            }
        }
    }
}
