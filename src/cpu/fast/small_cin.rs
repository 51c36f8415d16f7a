//! Convolutions with few input channels (first layers: 1 to 4, RGB or grey images), dense
//! input and output: output-channel vectors, as the HWC path, but read from a zero-padded
//! copy of the input as stored (`[B][C][HP][WP]`), so every tap of every position is one
//! shared offset from the position's window corner, and a tile's positions are
//! consecutive along one output row (`stride_w` apart in the input). The implicit GEMM
//! spent about half of these layers packing (a stride-2 gather per B value for 3-deep
//! products), the HWC path as much setting up per-position pointers for 3 channels.
//!
//! Tasks: (image, channel block, block of output rows), one parallel region.

use std::sync::Mutex;

use rayon::prelude::*;

use super::hwc_conv::{channel_tile, tile_height};
use super::SendPtr;
use crate::layer::ConvLayer;

/// Input channels up to which a conv takes this path.
pub(crate) const MAX_IN_CHANNELS: usize = 4;

/// Work (multiply-adds) below which the layer runs on the calling thread.
const SEQUENTIAL_MACS: usize = 1 << 20;

/// A small-input-channel conv (see the module docs).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct SmallCin {
    batch: usize,
    in_channels: usize,
    in_h: usize,
    in_w: usize,
    pad_top: usize,
    pad_left: usize,
    /// Padded input plane: `hp × wp`.
    hp: usize,
    wp: usize,
    out_h: usize,
    out_w: usize,
    out_channels: usize,
    stride_h: usize,
    stride_w: usize,
    /// Positions per tile ([`tile_height`] of an output row).
    mr: usize,
    /// Channels per tile: 32, or 16 for layers of at most 16.
    nr: usize,
    cblocks: usize,
    /// Per tap `(ci, ky, kx)`: its offset from a window corner of the padded input.
    offs: Vec<u32>,
    /// `[channel block][tap][nr]`, zero past the last channel.
    w: Vec<f32>,
    /// `[channel block][nr]`.
    bias: Vec<f32>,
    relu: bool,
    /// The padded input, reused between runs (its borders stay zero).
    padded: Mutex<Vec<f32>>,
}

impl std::fmt::Debug for SmallCin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SmallCin({}x{} tiles, {} taps, {} channels)",
            self.mr,
            self.nr,
            self.offs.len(),
            self.out_channels
        )
    }
}

impl SmallCin {
    /// Whether `layer` can take the path on this CPU: AVX-512, one group of at most
    /// [`MAX_IN_CHANNELS`] input channels, a dense input and output, a column stride of 1
    /// or 2, and offsets that fit 32 bits.
    pub fn applies(layer: &ConvLayer) -> bool {
        let g = layer.geometry();
        let padded = (g.in_h + g.pad_top + g.pad_bottom) * (g.in_w + g.pad_left + g.pad_right);
        let fits =
            (g.in_channels * padded) < u32::MAX as usize && 32 * g.out_h() * g.out_w() < i32::MAX as usize;
        #[cfg(target_arch = "x86_64")]
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        #[cfg(not(target_arch = "x86_64"))]
        let avx512 = false;
        avx512
            && fits
            && g.groups == 1
            && g.in_channels <= MAX_IN_CHANNELS
            && (1..=2).contains(&g.stride_w)
            && layer.input_map().is_none()
            && layer.mask().is_dense()
    }

    /// Prepares `layer` ([`SmallCin::applies`]), with its ReLU when `relu`.
    pub fn new(layer: &ConvLayer, relu: bool) -> Self {
        let g = *layer.geometry();
        let (hp, wp) = (g.in_h + g.pad_top + g.pad_bottom, g.in_w + g.pad_left + g.pad_right);
        let (kh, kw) = (g.kernel_h, g.kernel_w);
        let offs: Vec<u32> = (0..g.in_channels)
            .flat_map(|ci| (0..kh).flat_map(move |ky| (0..kw).map(move |kx| (ci, ky, kx))))
            .map(|(ci, ky, kx)| {
                u32::try_from(ci * hp * wp + ky * g.dilation_h * wp + kx * g.dilation_w)
                    .expect("checked by `applies`: offsets fit in u32")
            })
            .collect();
        let k = offs.len();
        let nr = channel_tile(g.out_channels);
        let cblocks = g.out_channels.div_ceil(nr);
        let mut w = vec![0.0f32; cblocks * k * nr];
        let mut bias = vec![0.0f32; cblocks * nr];
        for (o, (row, &b)) in layer.weights().chunks_exact(k).zip(layer.bias()).enumerate() {
            let (cb, j) = (o / nr, o % nr);
            bias[cb * nr + j] = b;
            // OIHW: tap t of row o is (ci, ky, kx) in the order of `offs`.
            for (t, &v) in row.iter().enumerate() {
                w[(cb * k + t) * nr + j] = v;
            }
        }
        SmallCin {
            batch: g.batch,
            in_channels: g.in_channels,
            in_h: g.in_h,
            in_w: g.in_w,
            pad_top: g.pad_top,
            pad_left: g.pad_left,
            hp,
            wp,
            out_h: g.out_h(),
            out_w: g.out_w(),
            out_channels: g.out_channels,
            stride_h: g.stride_h,
            stride_w: g.stride_w,
            mr: tile_height(g.out_w()),
            nr,
            cblocks,
            offs,
            w,
            bias,
            relu,
            padded: Mutex::new(Vec::new()),
        }
    }

    /// `x` is the `[B, C, H, W]` input, `out` the `[B, T, out_h·out_w]` output.
    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        let (c, plane) = (self.in_channels, self.in_h * self.in_w);
        let n_pos = self.out_h * self.out_w;
        assert!(x.len() >= self.batch * c * plane, "conv input too short");
        assert!(out.len() >= self.batch * self.out_channels * n_pos, "conv output buffer too small");
        let image = c * self.hp * self.wp;
        // Slack past the last image: a tile's lanes past the row's end read (never store)
        // up to MR·stride values beyond its last real position's window.
        let len = self.batch * image + self.mr * self.stride_w;
        let mut fallback = Vec::new();
        let mut guard = self.padded.try_lock().ok();
        let padded = guard.as_deref_mut().unwrap_or(&mut fallback);
        if padded.len() != len {
            padded.clear();
            padded.resize(len, 0.0);
        }
        let copy = |(dst, src): (&mut [f32], &[f32])| {
            for (dst, src) in dst.chunks_exact_mut(self.hp * self.wp).zip(src.chunks_exact(plane)) {
                for (y, row) in src.chunks_exact(self.in_w).enumerate() {
                    dst[(y + self.pad_top) * self.wp + self.pad_left..][..self.in_w].copy_from_slice(row);
                }
            }
        };
        let macs = self.batch * self.out_channels * n_pos * self.offs.len();
        let parallel = macs >= SEQUENTIAL_MACS;
        let (dst, src) = (&mut padded[..self.batch * image], &x[..self.batch * c * plane]);
        if parallel && self.batch > 1 {
            dst.par_chunks_mut(image).zip(src.par_chunks(c * plane)).for_each(copy);
        } else {
            dst.chunks_mut(image).zip(src.chunks(c * plane)).for_each(copy);
        }
        let padded: &[f32] = padded;
        // Rows per task: about 8 tasks per thread.
        let units = self.batch * self.cblocks;
        let want = 8 * rayon::current_num_threads();
        let rows_per = (self.out_h * units).div_ceil(want).clamp(1, self.out_h);
        let row_blocks = self.out_h.div_ceil(rows_per);
        let out = SendPtr(out.as_mut_ptr());
        let task = |t: usize| {
            let (rb, rest) = (t % row_blocks, t / row_blocks);
            let (cb, img) = (rest % self.cblocks, rest / self.cblocks);
            let rows = rb * rows_per..((rb + 1) * rows_per).min(self.out_h);
            self.task(&padded[img * image..], out, img, cb, rows);
        };
        if parallel {
            (0..units * row_blocks).into_par_iter().for_each(task);
        } else {
            (0..units * row_blocks).for_each(task);
        }
    }

    /// Output rows `rows` of channel block `cb` of image `img`, from the image's padded
    /// input `x` (with the slack after it).
    fn task(&self, x: &[f32], out: SendPtr, img: usize, cb: usize, rows: std::ops::Range<usize>) {
        let (nr, mr, n_pos) = (self.nr, self.mr, self.out_h * self.out_w);
        let k = self.offs.len();
        let w = self.w[cb * k * nr..].as_ptr();
        let bias = self.bias[cb * nr..].as_ptr();
        let channels = nr.min(self.out_channels - cb * nr);
        let ch0 = cb * nr;
        for oy in rows {
            for ox0 in (0..self.out_w).step_by(mr) {
                let positions = mr.min(self.out_w - ox0);
                let e0 = oy * self.out_w + ox0;
                let corner = oy * self.stride_h * self.wp + ox0 * self.stride_w;
                // SAFETY: (img, channel ch0, position e0) is inside the output, and so is
                // every (channel < channels, position < positions) from it; only this task
                // writes them.
                let dst = unsafe { out.ptr().add((img * self.out_channels + ch0) * n_pos + e0) };
                // SAFETY: AVX-512 was detected (`applies`); every tap offset from the
                // corner, plus i·stride for i < MR, lies in this image's padded input or the
                // slack after the last one (the geometry keeps real positions' windows inside
                // the padded plane); w and bias hold the block's k·NR weights and NR biases.
                #[cfg(target_arch = "x86_64")]
                unsafe {
                    use crate::cpu::gemm::avx512::small_cin_tile;
                    let (xp, offs) = (x.as_ptr().add(corner), self.offs.as_ptr());
                    macro_rules! tile {
                        ($mr:literal, $nv:literal, $sw:literal) => {
                            small_cin_tile::<$mr, $nv, $sw>(
                                k, offs, xp, w, bias, self.relu, dst, n_pos, positions, channels,
                            )
                        };
                    }
                    match (mr, nr, self.stride_w) {
                        (12, 16, 1) => tile!(12, 1, 1),
                        (12, 16, _) => tile!(12, 1, 2),
                        (12, _, 1) => tile!(12, 2, 1),
                        (12, _, _) => tile!(12, 2, 2),
                        (10, 16, 1) => tile!(10, 1, 1),
                        (10, 16, _) => tile!(10, 1, 2),
                        (10, _, 1) => tile!(10, 2, 1),
                        (10, _, _) => tile!(10, 2, 2),
                        (_, 16, 1) => tile!(8, 1, 1),
                        (_, 16, _) => tile!(8, 1, 2),
                        (_, _, 1) => tile!(8, 2, 1),
                        _ => tile!(8, 2, 2),
                    }
                }
                #[cfg(not(target_arch = "x86_64"))]
                let _ = (x, w, bias, dst, positions, channels, corner, k);
            }
        }
    }
}
