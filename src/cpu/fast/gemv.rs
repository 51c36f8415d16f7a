//! Narrow products (fully connected layers at small batch: a handful of columns) as dot
//! products over row-major weights: a packed GEMM would pad the few columns to a whole
//! register tile and repack the weights' panels for nothing; here each weight row is
//! read once per run, which is what bounds these layers (memory, not FLOPs).

use rayon::prelude::*;

use super::taps::{Taps, PAD};
use super::SendPtr;
use crate::cpu::read_mapped;
use crate::layer::ConvLayer;

/// Columns up to which the narrow path is used.
pub(crate) const MAX_COLS: usize = 4;

/// A conv (usually a fully connected layer lowered to a 1×1 conv) with few columns.
#[derive(Debug)]
pub(crate) struct Gemv {
    groups: usize,
    cg: usize,
    tg: usize,
    k: usize,
    khkw: usize,
    batch: usize,
    plane: usize,
    out_channels: usize,
    /// Row-major `[T, k]`.
    w: Vec<f32>,
    bias: Vec<f32>,
    relu: bool,
    taps: Taps,
    /// The packed columns, reused between runs.
    cols: std::sync::Mutex<Vec<f32>>,
}

impl Gemv {
    pub fn new(layer: &ConvLayer, relu: bool) -> Self {
        let g = layer.geometry();
        Gemv {
            groups: g.groups,
            cg: g.in_channels_per_group(),
            tg: g.out_channels_per_group(),
            k: g.k_per_group(),
            khkw: g.kernel_h * g.kernel_w,
            batch: g.batch,
            plane: layer.input_plane(),
            out_channels: g.out_channels,
            w: layer.weights().to_vec(),
            bias: layer.bias().to_vec(),
            relu,
            taps: Taps::new(layer),
            cols: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        let n_pos = self.taps.n_pos;
        let cols = self.batch * n_pos;
        let image_stride = self.cg * self.groups * self.plane;
        assert!(out.len() >= cols * self.out_channels, "conv output buffer too small");
        // The columns, each k contiguous values per group: [group][col][k].
        let mut fallback = Vec::new();
        let mut guard = self.cols.try_lock().ok();
        let b = guard.as_deref_mut().unwrap_or(&mut fallback);
        b.resize(self.groups * cols * self.k, 0.0);
        for grp in 0..self.groups {
            for j in 0..cols {
                let (img, e) = (j / n_pos, j % n_pos);
                let dst = &mut b[(grp * cols + j) * self.k..][..self.k];
                for (r, d) in dst.iter_mut().enumerate() {
                    let (ci, c) = (r / self.khkw, r % self.khkw);
                    let t = self.taps.row(c)[e];
                    let src = &x[img * image_stride + (grp * self.cg + ci) * self.plane..];
                    *d = match (t, self.taps.map_kind) {
                        (PAD, _) => 0.0,
                        (t, 3) => read_mapped(3, &self.taps.map_table, src, t as usize),
                        (t, _) => src[t as usize],
                    };
                }
            }
        }
        let out = SendPtr(out.as_mut_ptr());
        let chunk = 16;
        (0..self.out_channels.div_ceil(chunk)).into_par_iter().for_each(|blk| {
            for ch in blk * chunk..((blk + 1) * chunk).min(self.out_channels) {
                let grp = ch / self.tg;
                let row = &self.w[ch * self.k..(ch + 1) * self.k];
                for j in 0..cols {
                    let v = dot(row, &b[(grp * cols + j) * self.k..][..self.k]) + self.bias[ch];
                    let v = if self.relu { crate::cpu::nan::relu_keep_nan(v) } else { v };
                    let (img, e) = (j / n_pos, j % n_pos);
                    // SAFETY: (img, ch, e) is inside the output; channel blocks are disjoint.
                    unsafe { *out.ptr().add((img * self.out_channels + ch) * n_pos + e) = v };
                }
            }
        });
    }
}

/// Dot product with 16 independent partial sums (vectorisable without reassociation).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the feature was detected.
            return unsafe { dot_avx512(a, b) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was detected.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_lanes(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_lanes(a, b)
}

#[inline(always)]
fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 32];
    let (ca, cb) = (a.chunks_exact(32), b.chunks_exact(32));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..32 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}
