//! Channel-vectorised ("HWC") convolution. It runs any conv whose input is dense or read
//! through a nearest or zeros map; [`super::FastConv::new`] picks it for compact inputs, where
//! the implicit GEMM would gather every B value. Here the input is transposed once per run to
//! channel-last rows (`[B][plane + 1][C]`, the last row zeros for padding taps), and each
//! output position's tap is one pointer to a row of `C` contiguous values. The microkernel
//! (`gemm::avx512::hwc_tile`) then vectorises over output channels: a tile is 8 positions ×
//! 32 channels (16 × 16 for layers of at most 16 channels per group), the positions'
//! values broadcast, the weights (packed once as `[group][channel block][tap][ci][NR]`)
//! loaded as vectors. Nothing is gathered; the tile is written transposed into `[B, T, N]`
//! with bias and ReLU.
//!
//! Tasks: (image, group, channel block, block of positions), one parallel region.

use std::cell::RefCell;
use std::sync::Mutex;

use rayon::prelude::*;

use super::taps::{Taps, PAD};
use super::SendPtr;
use crate::layer::ConvLayer;

/// Positions per task (a multiple of both tile heights).
const POSITIONS_PER_TASK: usize = 64;
/// Work (multiply-adds) below which the layer runs on the calling thread.
const SEQUENTIAL_MACS: usize = 1 << 20;

thread_local! {
    /// Per-thread row pointers of one tile (`taps × MR`).
    static ROWS: RefCell<Vec<*const f32>> = const { RefCell::new(Vec::new()) };
}

/// A conv on the HWC path (AVX-512 only; see [`HwcConv::applies`]).
pub(crate) struct HwcConv {
    groups: usize,
    cg: usize,
    tg: usize,
    khkw: usize,
    batch: usize,
    plane: usize,
    in_channels: usize,
    out_channels: usize,
    /// Tile: positions × channels (8 × 32 or 16 × 16).
    mr: usize,
    nr: usize,
    cblocks: usize,
    /// `[group][channel block][tap][ci][NR]`, zero past `tg`.
    w: Vec<f32>,
    bias: Vec<f32>,
    relu: bool,
    taps: Taps,
    /// The channel-last copy of the input, reused between runs.
    hwc: Mutex<Vec<f32>>,
}

impl std::fmt::Debug for HwcConv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HwcConv({}x{} tiles, groups {}, m {}, n {})",
            self.mr, self.nr, self.groups, self.tg, self.taps.n_pos
        )
    }
}

impl HwcConv {
    /// Whether the path can run `layer` on this CPU: AVX-512, and an input that is dense or
    /// read through a nearest or zeros map (a barycentric input needs three reads per tap).
    pub fn available(layer: &ConvLayer) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
                && layer.input_map().is_none_or(|m| m.kind() != crate::interp::MapKind::Barycentric)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = layer;
            false
        }
    }

    pub fn new(layer: &ConvLayer, relu: bool) -> Self {
        let g = layer.geometry();
        let (cg, tg, khkw) = (g.in_channels_per_group(), g.out_channels_per_group(), g.kernel_h * g.kernel_w);
        let (mr, nr) = if tg <= 16 { (16, 16) } else { (8, 32) };
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
        HwcConv {
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
            bias: layer.bias().to_vec(),
            relu,
            taps: Taps::new(layer),
            hwc: Mutex::new(Vec::new()),
        }
    }

    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        let (c, plane, n_pos) = (self.in_channels, self.plane, self.taps.n_pos);
        assert!(x.len() >= self.batch * c * plane, "conv input too short");
        assert!(out.len() >= self.batch * self.out_channels * n_pos, "conv output buffer too small");
        let mut fallback = Vec::new();
        let mut guard = self.hwc.try_lock().ok();
        let hwc = guard.as_deref_mut().unwrap_or(&mut fallback);
        let image_len = (plane + 1) * c;
        hwc.resize(self.batch * image_len, 0.0);
        let macs = self.batch * self.out_channels * n_pos * self.khkw * self.cg;
        let parallel = macs >= SEQUENTIAL_MACS;

        // Transpose each image to channel-last rows; row `plane` stays zero.
        let transpose = |(dst, src): (&mut [f32], &[f32])| {
            for s0 in (0..plane).step_by(64) {
                let s1 = (s0 + 64).min(plane);
                for (ch, row) in src.chunks_exact(plane).enumerate() {
                    for (s, &v) in row[s0..s1].iter().enumerate() {
                        dst[(s0 + s) * c + ch] = v;
                    }
                }
            }
            dst[plane * c..].fill(0.0);
        };
        let (dst, src) = (&mut hwc[..self.batch * image_len], &x[..self.batch * c * plane]);
        if parallel && self.batch > 1 {
            dst.par_chunks_mut(image_len).zip(src.par_chunks(c * plane)).for_each(transpose);
        } else {
            dst.chunks_mut(image_len).zip(src.chunks(c * plane)).for_each(transpose);
        }

        let hwc: &[f32] = hwc;
        let eblocks = n_pos.div_ceil(POSITIONS_PER_TASK);
        let tasks = self.batch * self.groups * self.cblocks * eblocks;
        let out = SendPtr(out.as_mut_ptr());
        let run_task = |t: usize| {
            let (eb, rest) = (t % eblocks, t / eblocks);
            let (cb, rest) = (rest % self.cblocks, rest / self.cblocks);
            let (grp, img) = (rest % self.groups, rest / self.groups);
            ROWS.with(|rows| {
                self.task(&mut rows.borrow_mut(), &hwc[img * image_len..][..image_len], out, img, grp, cb, eb)
            });
        };
        if parallel {
            (0..tasks).into_par_iter().for_each(run_task);
        } else {
            (0..tasks).for_each(run_task);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn task(
        &self,
        rows: &mut Vec<*const f32>,
        hwc: &[f32],
        out: SendPtr,
        img: usize,
        grp: usize,
        cb: usize,
        eb: usize,
    ) {
        let (mr, nr, n_pos, c) = (self.mr, self.nr, self.taps.n_pos, self.in_channels);
        let w = self.w[(grp * self.cblocks + cb) * self.khkw * self.cg * nr..].as_ptr();
        let channels = nr.min(self.tg - cb * nr);
        let ch0 = grp * self.tg + cb * nr;
        let mut tile = [0.0f32; 256];
        let e_end = ((eb + 1) * POSITIONS_PER_TASK).min(n_pos);
        for e0 in (eb * POSITIONS_PER_TASK..e_end).step_by(mr) {
            rows.clear();
            for tap in 0..self.khkw {
                let row = self.taps.row(tap);
                for i in 0..mr {
                    let t = if e0 + i < n_pos { row[e0 + i] } else { PAD };
                    let r = if t == PAD { self.plane } else { t as usize };
                    rows.push(hwc[r * c + grp * self.cg..].as_ptr());
                }
            }
            // SAFETY: AVX-512 was detected (`available`); every pointer has cg readable values
            // (a row of the image's channel-last copy, offset by the group), w holds the
            // block's taps·cg·NR weights, and the tile 256 floats.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                use crate::cpu::gemm::avx512::hwc_tile;
                if mr == 8 {
                    hwc_tile::<8, 2>(self.khkw, self.cg, rows.as_ptr(), w, tile.as_mut_ptr());
                } else {
                    hwc_tile::<16, 1>(self.khkw, self.cg, rows.as_ptr(), w, tile.as_mut_ptr());
                }
            }
            // `available` is false off x86_64, so no HwcConv exists there.
            #[cfg(not(target_arch = "x86_64"))]
            let _ = (w, &mut tile);
            let valid = mr.min(n_pos - e0);
            for j in 0..channels {
                let beta = self.bias[ch0 + j];
                // SAFETY: (img, channel ch0 + j, positions e0..e0 + valid) is inside the
                // output; only this task writes this channel block's positions.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(
                        out.ptr().add((img * self.out_channels + ch0 + j) * n_pos + e0),
                        valid,
                    )
                };
                for (i, d) in dst.iter_mut().enumerate() {
                    let v = tile[i * nr + j] + beta;
                    *d = if self.relu { v.max(0.0) } else { v };
                }
            }
        }
    }
}
