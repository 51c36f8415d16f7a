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
                let src = &x[img * image_stride + grp * self.cg * self.plane..];
                // Row r of the column is (input channel, kernel offset) = (r / khkw, r % khkw).
                for (ci, dst) in dst.chunks_exact_mut(self.khkw).enumerate() {
                    let src = &src[ci * self.plane..];
                    for (c, d) in dst.iter_mut().enumerate() {
                        *d = match (self.taps.row(c)[e], self.taps.map_kind) {
                            (PAD, _) => 0.0,
                            (t, 3) => read_mapped(3, &self.taps.map_table, src, t as usize),
                            (t, _) => src[t as usize],
                        };
                    }
                }
            }
        }
        let out = SendPtr(out.as_mut_ptr());
        // Blocks of ROWS output channels: each column value is loaded once per block, not
        // once per channel (the columns of a wide layer live in L2, the weights stream
        // from memory once).
        let chunk = 16;
        (0..self.out_channels.div_ceil(chunk)).into_par_iter().for_each(|blk| {
            let (start, end) = (blk * chunk, ((blk + 1) * chunk).min(self.out_channels));
            let mut ch = start;
            while ch < end {
                let grp = ch / self.tg;
                // Channels of one group, at most ROWS.
                let n = ROWS.min(end - ch).min((grp + 1) * self.tg - ch);
                for j in 0..cols {
                    let col = &b[(grp * cols + j) * self.k..][..self.k];
                    let sums = dot_rows(&self.w[ch * self.k..(ch + n) * self.k], self.k, col);
                    let (img, e) = (j / n_pos, j % n_pos);
                    for (r, &sum) in sums.iter().enumerate().take(n) {
                        let v = sum + self.bias[ch + r];
                        let v = if self.relu { crate::cpu::nan::relu_keep_nan(v) } else { v };
                        // SAFETY: (img, ch + r, e) is inside the output; channel blocks are
                        // disjoint.
                        unsafe { *out.ptr().add((img * self.out_channels + ch + r) * n_pos + e) = v };
                    }
                }
                ch += n;
            }
        });
    }
}

/// Output channels per [`dot_rows`] call.
const ROWS: usize = 4;

/// The dot products of `col` with each of the (up to [`ROWS`]) rows of `w`, `k` values each
/// (unused entries 0).
fn dot_rows(w: &[f32], k: usize, col: &[f32]) -> [f32; ROWS] {
    let mut sums = [0.0f32; ROWS];
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && w.len() == ROWS * k {
        // SAFETY: the feature was detected; w holds ROWS rows of k, col k values.
        return unsafe { dot_rows_avx512(w, k, col) };
    }
    for (s, row) in sums.iter_mut().zip(w.chunks_exact(k)) {
        *s = dot(row, col);
    }
    sums
}

/// [`dot_rows`] for exactly [`ROWS`] rows: per 16 values, one column load and one FMA per
/// row, two partial sums per row; a masked tail.
///
/// # Safety
/// AVX-512F is available; `w` holds `ROWS·k` floats, `col` at least `k`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot_rows_avx512(w: &[f32], k: usize, col: &[f32]) -> [f32; ROWS] {
    use std::arch::x86_64::*;
    assert!(w.len() >= ROWS * k && col.len() >= k, "dot_rows operands too short");
    let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
    let (wp, cp) = (w.as_ptr(), col.as_ptr());
    let mut i = 0;
    while i < k {
        for h in 0..2 {
            let at = i + 16 * h;
            let left = k.saturating_sub(at);
            #[allow(clippy::cast_possible_truncation)]
            let m: __mmask16 = if left >= 16 { 0xffff } else { ((1u32 << left) - 1) as u16 };
            // SAFETY: lanes under the mask lie below k in col and in each row.
            unsafe {
                let c = _mm512_maskz_loadu_ps(m, cp.add(at.min(k)));
                for (r, a) in acc.iter_mut().enumerate() {
                    let v = _mm512_maskz_loadu_ps(m, wp.add(r * k + at.min(k)));
                    a[h] = _mm512_fmadd_ps(v, c, a[h]);
                }
            }
        }
        i += 32;
    }
    let mut sums = [0.0f32; ROWS];
    for (s, a) in sums.iter_mut().zip(&acc) {
        *s = _mm512_reduce_add_ps(_mm512_add_ps(a[0], a[1]));
    }
    sums
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
