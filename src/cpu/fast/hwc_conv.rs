//! Channel-vectorised ("HWC") convolution. It runs any conv whose input is dense or read
//! through a nearest or zeros map; [`super::FastConv::new`] picks it where the implicit GEMM
//! would gather B values (perforated outputs, compact inputs) and for dense spatial convs
//! on small planes. Here the input is transposed once per run to channel-last rows
//! (`[B][plane + 1][C]`, the last row zeros for padding taps; 8 x 8 in-register
//! transposes, one gather per position below 8 channels on AVX-512), and each output position's tap is one offset to a row of `C`
//! contiguous values, resolved once per layer. The microkernel (`gemm::avx512::hwc_tile`,
//! or `gemm::avx2::hwc_tile` on CPUs without AVX-512) then vectorises over output channels:
//! an AVX-512 tile is 8 positions × 32 channels (× 16 for layers of at most 16 channels per
//! group), an AVX2 one 6 × 16 (12 × 8; 4 × 24 for multiples of 24 channels), the positions' values broadcast, the weights
//! (packed once as `[group][channel block][tap][ci][NR]`) loaded as vectors. Nothing is
//! gathered; the tile is written channel-major into `[B, T, N]` with bias and ReLU.
//!
//! Tasks: (image, group, channel block, block of positions), one parallel region; from
//! [`IMAGES_PER_THREAD`] images per thread, whole images, each transposed by its own task
//! into a per-thread buffer just before its tiles read it (the copy stays in L2).

use std::sync::Mutex;

use rayon::prelude::*;

use super::taps::{Taps, PAD};
use super::{Family, SendPtr};
use crate::layer::ConvLayer;

/// Tiles per task (a task's positions are this many tiles of `mr`).
const TILES_PER_TASK: usize = 8;

/// The HWC path's tile shapes per [`Family`].
impl Family {
    /// Output channels per tile for `tg` channels per group: AVX-512 16 up to 16, else 32;
    /// AVX2 8 up to 8, 24 for a multiple of 24, else 16. (A 4 x 24 AVX2 tile issues 7
    /// loads per 12 FMAs against the 6 x 16 tile's 8, and covers 24 channels exactly where
    /// 16-wide tiles compute 32: the 28x28 VGG's 24 -> 24 conv at batch 64, 3.98 -> 3.00
    /// ms; 48 and 96 channels 0.96-0.99x. A 12 x 8 tile for 24 channels measured even.)
    pub(crate) fn channel_tile(self, tg: usize) -> usize {
        let lanes = match self {
            Family::Avx512 => 16,
            Family::Avx2 => 8,
        };
        if tg <= lanes {
            lanes
        } else if self == Family::Avx2 && tg.is_multiple_of(24) {
            24
        } else {
            2 * lanes
        }
    }

    /// Whether `tg` output channels fill at least 3/4 of their channel tiles.
    pub(crate) fn fills_channel_tiles(self, tg: usize) -> bool {
        let nr = self.channel_tile(tg);
        4 * tg >= 3 * tg.div_ceil(nr) * nr
    }

    /// Positions per tile for `n_pos` positions and `nr` channels per tile. AVX-512: 8, 10
    /// or 12, whichever pads the positions least, the taller on a tie within 1/64 (a taller
    /// tile loads each weight vector once for more FMAs: 12 × 32 issues 24 FMAs per 14
    /// loads, 8 × 32 16 per 10; a 7x7 map takes 10: five tiles, not six full ones and one
    /// of a single position). AVX2: as many as 12 accumulators hold (6 × 16, 12 × 8,
    /// 4 × 24).
    fn tile_height(self, n_pos: usize, nr: usize) -> usize {
        if self == Family::Avx2 {
            return 96 / nr;
        }
        if let Ok(v) = std::env::var("PERFORATE_HWC_MR") {
            if let Ok(mr @ (8 | 10 | 12)) = v.parse::<usize>() {
                return mr;
            }
        }
        let padded = |mr: usize| n_pos.next_multiple_of(mr);
        let best = [12, 10, 8].into_iter().map(padded).min().unwrap_or(n_pos);
        [12, 10, 8].into_iter().find(|&mr| 64 * padded(mr) <= 65 * best).unwrap_or(8)
    }
}

/// Work (multiply-adds) below which the layer runs on the calling thread.
const SEQUENTIAL_MACS: usize = 1 << 20;
/// Images per thread from which tasks are whole images, each transposed by its task.
pub(super) const IMAGES_PER_THREAD: usize = 4;

thread_local! {
    /// One image's channel-last copy, for tasks of whole images.
    static IMAGE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A conv on the HWC path (AVX-512 or AVX2; see [`HwcConv::available`]).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct HwcConv {
    groups: usize,
    cg: usize,
    tg: usize,
    khkw: usize,
    batch: usize,
    plane: usize,
    in_channels: usize,
    out_channels: usize,
    /// The tiles' instruction set.
    family: Family,
    /// Positions per tile ([`Family::tile_height`]).
    mr: usize,
    /// Channels per tile ([`Family::channel_tile`]); a tile is `mr` positions × `nr`
    /// channels.
    nr: usize,
    cblocks: usize,
    /// `[group][channel block][tap][ci][NR]`, zero past `tg`.
    w: Vec<f32>,
    /// `[group][channel block][NR]`, zero past `tg`.
    bias: Vec<f32>,
    relu: bool,
    /// Computed output positions per image.
    n_pos: usize,
    /// `[tap][n_pad]`: where each position's tap row starts in the channel-last image
    /// (`row · C`; the zero row for padding and for positions past N).
    offs: Vec<u32>,
    /// Positions per tap row of `offs`: N rounded up to whole tasks.
    n_pad: usize,
    /// Read the input as stored (`[B, C, plane]`, channels a plane apart), with no
    /// channel-last copy: for layers without padding taps (see [`HwcConv::direct_applies`]).
    direct: bool,
    /// The channel-last copy of the input, reused between runs.
    hwc: Mutex<Vec<f32>>,
}

impl std::fmt::Debug for HwcConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HwcConv({}x{} tiles, groups {}, m {}, n {})",
            self.mr, self.nr, self.groups, self.tg, self.n_pos
        )
    }
}

impl HwcConv {
    /// Whether the path can run `layer` (on a CPU with a [`Family`]): an input that is
    /// dense or read through a nearest or zeros map (a barycentric input needs three reads
    /// per tap), and offsets that fit the tiles' integers.
    pub fn available(layer: &ConvLayer) -> bool {
        let g = layer.geometry();
        // Tap offsets (row · C) fit in u32.
        let offsets_fit = (layer.input_plane() + 1) * g.in_channels < u32::MAX as usize;
        offsets_fit && layer.input_map().is_none_or(|m| m.kind() != crate::interp::MapKind::Barycentric)
    }

    /// Whether the layer can be read as stored, without the channel-last copy: no tap reads
    /// padding (a pointwise conv, or one without padding), so every offset is a position of
    /// the input plane.
    pub fn direct_applies(layer: &ConvLayer) -> bool {
        Taps::new(layer).table.iter().all(|&t| t != PAD)
    }

    /// Prepares `layer` for tiles of `family` (where [`HwcConv::available`]); `direct`
    /// reads the input as stored (only where [`HwcConv::direct_applies`]).
    pub fn new(layer: &ConvLayer, relu: bool, direct: bool, family: Family) -> Self {
        let g = layer.geometry();
        let (cg, tg, khkw) = (g.in_channels_per_group(), g.out_channels_per_group(), g.kernel_h * g.kernel_w);
        let nr = family.channel_tile(tg);
        let cblocks = tg.div_ceil(nr);
        let weights = layer.weights();
        let mut w = vec![0.0f32; g.groups * cblocks * khkw * cg * nr];
        for grp in 0..g.groups {
            for m in 0..tg {
                let (cb, j) = (m / nr, m % nr);
                let o = grp * tg + m;
                for ci in 0..cg {
                    for c in 0..khkw {
                        w[((((grp * cblocks + cb) * khkw + c) * cg + ci) * nr) + j] =
                            weights[(o * cg + ci) * khkw + c];
                    }
                }
            }
        }
        let mut bias = vec![0.0f32; g.groups * cblocks * nr];
        for grp in 0..g.groups {
            for m in 0..tg {
                bias[(grp * cblocks + m / nr) * nr + m % nr] = layer.bias()[grp * tg + m];
            }
        }
        let taps = Taps::new(layer);
        let plane = layer.input_plane();
        let mr = family.tile_height(taps.n_pos, nr);
        let n_pad = taps.n_pos.next_multiple_of(mr * TILES_PER_TASK);
        // Channel-last: the tap's row start, padding and positions past N on the zero row.
        // As stored (direct, no padding taps): the position itself, and position 0 past N
        // (those results are never stored).
        let (scale, pad) = if direct { (1, 0) } else { (g.in_channels, plane * g.in_channels) };
        let pad = u32::try_from(pad).expect("checked by `available`: offsets fit in u32");
        let scale = u32::try_from(scale).expect("checked by `available`: offsets fit in u32");
        let mut offs = vec![pad; khkw * n_pad];
        for (tap, row) in offs.chunks_exact_mut(n_pad).enumerate() {
            for (o, &t) in row.iter_mut().zip(taps.row(tap)) {
                // Fits: `available` bounds (plane + 1) · C by u32::MAX.
                *o = if t == PAD { pad } else { t * scale };
            }
        }
        HwcConv {
            family,
            groups: g.groups,
            cg,
            tg,
            khkw,
            batch: g.batch,
            plane: layer.input_plane(),
            in_channels: g.in_channels,
            out_channels: g.out_channels,
            mr,
            nr,
            cblocks,
            w,
            bias,
            relu,
            n_pos: taps.n_pos,
            offs,
            n_pad,
            direct,
            hwc: Mutex::new(Vec::new()),
        }
    }

    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        let (c, plane, n_pos) = (self.in_channels, self.plane, self.n_pos);
        assert!(x.len() >= self.batch * c * plane, "conv input too short");
        assert!(out.len() >= self.batch * self.out_channels * n_pos, "conv output buffer too small");
        let macs = self.batch * self.out_channels * n_pos * self.khkw * self.cg;
        let parallel = macs >= SEQUENTIAL_MACS;
        if self.direct {
            let image_len = c * plane;
            return self.tasks(parallel, out, |img| &x[img * image_len..][..image_len]);
        }
        let image_len = (plane + 1) * c;
        // Transpose an image to channel-last rows; row `plane` stays zero.
        let transpose = |(dst, src): (&mut [f32], &[f32])| {
            to_channel_last(src, plane, c, dst);
            dst[plane * c..].fill(0.0);
        };
        if parallel && self.batch >= IMAGES_PER_THREAD * rayon::current_num_threads() {
            // Whole images per task: each is transposed into the thread's own buffer right
            // before its tiles read it, so the copy stays in L2 instead of making a pass
            // through memory for the whole batch first.
            let eblocks = self.n_pos.div_ceil(self.mr * TILES_PER_TASK);
            let out = SendPtr(out.as_mut_ptr());
            (0..self.batch).into_par_iter().for_each(|img| {
                IMAGE.with(|buf| {
                    let mut buf = buf.borrow_mut();
                    buf.resize(image_len, 0.0);
                    transpose((&mut buf[..], &x[img * c * plane..][..c * plane]));
                    for grp in 0..self.groups {
                        for cb in 0..self.cblocks {
                            for eb in 0..eblocks {
                                self.task(&buf, out, img, grp, cb, eb);
                            }
                        }
                    }
                });
            });
            return;
        }
        let mut fallback = Vec::new();
        let mut guard = self.hwc.try_lock().ok();
        let hwc = guard.as_deref_mut().unwrap_or(&mut fallback);
        hwc.resize(self.batch * image_len, 0.0);
        let (dst, src) = (&mut hwc[..self.batch * image_len], &x[..self.batch * c * plane]);
        if parallel && self.batch > 1 {
            dst.par_chunks_mut(image_len).zip(src.par_chunks(c * plane)).for_each(transpose);
        } else {
            dst.chunks_mut(image_len).zip(src.chunks(c * plane)).for_each(transpose);
        }

        let hwc: &[f32] = hwc;
        self.tasks(parallel, out, |img| &hwc[img * image_len..][..image_len]);
    }

    /// Runs every task, image `img` read from `image(img)` (channel-last, or as stored when
    /// direct).
    fn tasks<'a>(&self, parallel: bool, out: &mut [f32], image: impl Fn(usize) -> &'a [f32] + Sync) {
        let eblocks = self.n_pos.div_ceil(self.mr * TILES_PER_TASK);
        let tasks = self.batch * self.groups * self.cblocks * eblocks;
        let out = SendPtr(out.as_mut_ptr());
        let run_task = |t: usize| {
            let (eb, rest) = (t % eblocks, t / eblocks);
            let (cb, rest) = (rest % self.cblocks, rest / self.cblocks);
            let (grp, img) = (rest % self.groups, rest / self.groups);
            self.task(image(img), out, img, grp, cb, eb);
        };
        if parallel {
            (0..tasks).into_par_iter().for_each(run_task);
        } else {
            (0..tasks).for_each(run_task);
        }
    }

    /// Positions `eb·mr·TILES_PER_TASK..` of image `img`, channel block `cb` of group
    /// `grp`, from the image's channel-last copy `hwc`.
    fn task(&self, hwc: &[f32], out: SendPtr, img: usize, grp: usize, cb: usize, eb: usize) {
        let (nr, n_pos) = (self.nr, self.n_pos);
        let w = self.w[(grp * self.cblocks + cb) * self.khkw * self.cg * nr..].as_ptr();
        let bias = self.bias[(grp * self.cblocks + cb) * nr..].as_ptr();
        let channels = nr.min(self.tg - cb * nr);
        let ch0 = grp * self.tg + cb * nr;
        // Channel-last rows hold the group's channels from grp·cg; as stored, its planes.
        let (x, cs) = if self.direct {
            (hwc[grp * self.cg * self.plane..].as_ptr(), self.plane)
        } else {
            (hwc[grp * self.cg..].as_ptr(), 1)
        };
        let per_task = self.mr * TILES_PER_TASK;
        let e_end = ((eb + 1) * per_task).min(n_pos);
        for e0 in (eb * per_task..e_end).step_by(self.mr) {
            let positions = self.mr.min(n_pos - e0);
            // SAFETY: (img, channel ch0, position e0) is inside the output, and so is every
            // (channel < channels, position < positions) from it; only this task writes them.
            let dst = unsafe { out.ptr().add((img * self.out_channels + ch0) * n_pos + e0) };
            // SAFETY: the family's features were detected (`Family::of`); every offset of
            // `offs` leaves cg readable values of the image's channel-last copy from the
            // group's first channel (the zero row included); w and bias hold the block's
            // weights and NR biases; the output as above, with row stride N.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                use crate::cpu::gemm::{avx2, avx512};
                let offs = self.offs.as_ptr().add(e0);
                macro_rules! tile {
                    ($isa:ident, $mr:literal, $nv:literal) => {
                        $isa::hwc_tile::<$mr, $nv>(
                            self.khkw, self.cg, cs, x, offs, self.n_pad, w, bias, self.relu, dst, n_pos,
                            positions, channels,
                        )
                    };
                }
                match (self.family, self.mr, nr) {
                    (Family::Avx2, _, 8) => tile!(avx2, 12, 1),
                    (Family::Avx2, _, 24) => tile!(avx2, 4, 3),
                    (Family::Avx2, _, _) => tile!(avx2, 6, 2),
                    (_, 12, 16) => tile!(avx512, 12, 1),
                    (_, 12, _) => tile!(avx512, 12, 2),
                    (_, 10, 16) => tile!(avx512, 10, 1),
                    (_, 10, _) => tile!(avx512, 10, 2),
                    (_, _, 16) => tile!(avx512, 8, 1),
                    _ => tile!(avx512, 8, 2),
                }
            }
            // `Family::of` is `None` off x86_64, so no HwcConv exists there.
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (w, bias, x, cs, dst, positions, channels);
        }
    }
}

/// `dst[s · c + ch] = src[ch · plane + s]` for `c` channel planes of `plane` values.
pub(crate) fn to_channel_last(src: &[f32], plane: usize, c: usize, dst: &mut [f32]) {
    assert!(src.len() >= c * plane && dst.len() >= c * plane, "channel-last copy out of bounds");
    // From 8 channels the 8 x 8 transposes, on AVX-512 CPUs too: there they beat one gather
    // per 16 channels of a position (the 28x28 ResNet's HWC layers at batch 64 0.93-0.98x,
    // alternated, best of 5); the gather keeps the narrower inputs, which have no whole block.
    #[cfg(target_arch = "x86_64")]
    if c < 8 && std::arch::is_x86_feature_detected!("avx512f") && c * plane < i32::MAX as usize {
        // SAFETY: the feature was detected; the bounds were checked above.
        return unsafe { to_channel_last_avx512(src, plane, c, dst) };
    }
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the feature was detected; the bounds were checked above.
        return unsafe { to_channel_last_avx2(src, plane, c, dst) };
    }
    to_channel_last_portable(src, plane, c, dst);
}

/// [`to_channel_last`] in blocks of 64 positions (a block's rows of `dst` stay in L1).
#[inline(always)]
fn to_channel_last_portable(src: &[f32], plane: usize, c: usize, dst: &mut [f32]) {
    for s0 in (0..plane).step_by(64) {
        let s1 = (s0 + 64).min(plane);
        for (ch, row) in src.chunks_exact(plane).take(c).enumerate() {
            for (s, &v) in row[s0..s1].iter().enumerate() {
                dst[(s0 + s) * c + ch] = v;
            }
        }
    }
}

/// [`to_channel_last`] in 8 x 8 blocks (8 channels x 8 positions: eight loads, an
/// in-register transpose ([`super::transpose::transpose8`]), eight stores); the channels and positions past the last whole
/// block by the portable loop.
///
/// # Safety
/// AVX2 is available; `src` and `dst` hold `c · plane` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn to_channel_last_avx2(src: &[f32], plane: usize, c: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let (c8, p8) = (c / 8 * 8, plane / 8 * 8);
    for ch0 in (0..c8).step_by(8) {
        for s0 in (0..p8).step_by(8) {
            // SAFETY: rows ch0..ch0 + 8 < c, positions s0..s0 + 8 <= plane: inside `src`;
            // the stores write positions s0..s0 + 8, channels ch0..ch0 + 8 of `dst`.
            unsafe {
                let rows = super::transpose::transpose8(std::array::from_fn(|k| {
                    _mm256_loadu_ps(src.as_ptr().add((ch0 + k) * plane + s0))
                }));
                for (k, row) in rows.into_iter().enumerate() {
                    _mm256_storeu_ps(dst.as_mut_ptr().add((s0 + k) * c + ch0), row);
                }
            }
        }
        for s in p8..plane {
            for ch in ch0..ch0 + 8 {
                dst[s * c + ch] = src[ch * plane + s];
            }
        }
    }
    if c8 < c {
        for s0 in (0..plane).step_by(64) {
            for ch in c8..c {
                for s in s0..(s0 + 64).min(plane) {
                    dst[s * c + ch] = src[ch * plane + s];
                }
            }
        }
    }
}

/// [`to_channel_last`] with one hardware gather per 16 channels of a position.
///
/// # Safety
/// AVX-512F is available; `src` and `dst` hold `c · plane` floats, fewer than 2^31.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn to_channel_last_avx512(src: &[f32], plane: usize, c: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)]
    let stride = plane as i32;
    let lanes = _mm512_mullo_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(stride),
    );
    for ch0 in (0..c).step_by(16) {
        let n = (c - ch0).min(16);
        let keep: __mmask16 = if n == 16 { 0xffff } else { (1u16 << n) - 1 };
        for s in 0..plane {
            // SAFETY: lanes under `keep` read channels ch0.. ch0 + n of position s and write
            // that many floats of row s: inside both buffers.
            unsafe {
                let base = src.as_ptr().add(ch0 * plane + s);
                let v = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), keep, lanes, base);
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(s * c + ch0), keep, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every shape class of the blocked copies (whole 8 x 8 blocks, channel and position
    /// tails, fewer than one block) against the definition.
    #[test]
    fn channel_last_copies_match_the_definition() {
        for c in [1, 3, 8, 9, 16, 21] {
            for plane in [1, 7, 8, 13, 64, 70] {
                let src: Vec<f32> = (0..c * plane).map(|i| i as f32).collect();
                let want: Vec<f32> = (0..plane * c).map(|k| src[(k % c) * plane + k / c]).collect();
                let mut got = vec![f32::NAN; c * plane];
                to_channel_last(&src, plane, c, &mut got);
                assert_eq!(got, want, "c {c}, plane {plane} (detected)");
                got.fill(f32::NAN);
                to_channel_last_portable(&src, plane, c, &mut got);
                assert_eq!(got, want, "c {c}, plane {plane} (portable)");
            }
        }
    }
}
