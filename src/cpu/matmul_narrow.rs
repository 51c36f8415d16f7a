//! CPU twin of `shaders/matmul_narrow.wgsl`.

use rayon::prelude::*;

use crate::params::MatmulTiledParams;

/// Threads per row in the shader: the partial sums the twin reduces the same way.
const THREADS: usize = 256;

/// `out = act(A · B + bias)` for products at most 8 columns wide (fully connected layers
/// at small batch), scattered into `[images, out_channels, n_pos]` as
/// [`MatmulTiledParams`] describes.
///
/// Loop structure (the shader's): per row of the product, `THREADS` partial sums, partial
/// `t` over the depth steps `4q..4q + 3` for `q = t, t + THREADS, ...`; then the pairwise
/// tree reduction of the partials (halving strides), bias, ReLU and cap, and the scatter.
///
/// Arguments follow the shader's bindings: params, a, b, bias, out.
#[track_caller]
pub fn matmul_narrow(params: &MatmulTiledParams, a: &[f32], b: &[f32], bias: &[f32], out: &mut [f32]) {
    let p = params;
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let (lda, ldb) = (p.lda as usize, p.ldb as usize);
    assert!(n <= 8 && ldb <= 8, "matmul_narrow takes at most 8 columns");
    let rows: Vec<[f32; 8]> = (0..m)
        .into_par_iter()
        .map(|row| {
            let a_row = &a[(p.a_row_offset as usize + row) * lda..][..lda];
            let mut partial = vec![[0.0f32; 8]; THREADS];
            for (t, acc) in partial.iter_mut().enumerate() {
                for q in (t..lda / 4).step_by(THREADS) {
                    for c in 0..4 {
                        let kk = q * 4 + c;
                        if kk < k {
                            for j in 0..ldb {
                                acc[j] = a_row[kk].mul_add(b[kk * ldb + j], acc[j]);
                            }
                        }
                    }
                }
            }
            let mut s = THREADS / 2;
            while s > 0 {
                for t in 0..s {
                    let other = partial[t + s];
                    for (x, y) in partial[t].iter_mut().zip(other) {
                        *x += y;
                    }
                }
                s /= 2;
            }
            partial[0]
        })
        .collect();
    let (n_pos, out_channels) = (p.n_pos as usize, p.out_channels as usize);
    for (row, sums) in rows.iter().enumerate() {
        let beta = bias[p.a_row_offset as usize + row];
        let out_row = p.out_channel_offset as usize + row;
        for (j, &sum) in sums.iter().enumerate().take(n) {
            let mut v = beta + sum;
            if p.relu != 0 {
                v = super::nan::relu_keep_nan(v);
                if p.relu_cap > 0.0 {
                    v = super::nan::cap_keep_nan(v, p.relu_cap);
                }
            }
            let global = p.col_start as usize + j;
            let (image, pos) = (global / n_pos, global % n_pos);
            out[(image * out_channels + out_row) * n_pos + pos] = v;
        }
    }
}
