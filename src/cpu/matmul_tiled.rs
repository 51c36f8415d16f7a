//! CPU twin of `shaders/matmul_tiled.wgsl`.

use ndarray::linalg::general_mat_mul;
use ndarray::{s, ArrayView2, ArrayViewMut2, ArrayViewMut3, Axis, ShapeBuilder};
use rayon::prelude::*;

use crate::params::MatmulTiledParams;

/// Narrowest column block handed to one rayon task (keeps the GEMM kernel efficient).
const MIN_BLOCK_COLS: usize = 64;

/// `out = act(A · B + bias)` for one group and one chunk of columns, scattered into the
/// `[images, out_channels, n_pos]` output as [`MatmulTiledParams`] describes.
///
/// The product is written straight into strided views of `out` (no temporary): each
/// image's run of columns is one view, split into column blocks that rayon multiplies in
/// parallel with ndarray's `general_mat_mul`.
///
/// Arguments follow the shader's bindings: params, a, b, bias, out.
#[track_caller]
pub fn matmul_tiled(
    params: &MatmulTiledParams,
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    let p = params;
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let (lda, ldb) = (p.lda as usize, p.ldb as usize);
    let (n_pos, out_channels) = (p.n_pos as usize, p.out_channels as usize);
    let a_start = p.a_row_offset as usize * lda;
    let a = ArrayView2::from_shape((m, k).strides((lda, 1)), &a[a_start..]).expect("A matrix view");
    let b = ArrayView2::from_shape((k, n).strides((ldb, 1)), b).expect("B matrix view");
    let images = out.len() / (out_channels * n_pos);
    let mut out =
        ArrayViewMut3::from_shape((images, out_channels, n_pos), out).expect("output view");

    // One contiguous run of global columns covers each image at most once.
    let rows = p.out_channel_offset as usize..p.out_channel_offset as usize + m;
    let mut per_image: Vec<Option<ArrayViewMut2<f32>>> = out.outer_iter_mut().map(Some).collect();
    let block = MIN_BLOCK_COLS.max(n.div_ceil(2 * rayon::current_num_threads()));
    let mut tasks: Vec<(ArrayViewMut2<f32>, usize)> = Vec::new();
    let (mut global, end) = (p.col_start as usize, p.col_start as usize + n);
    while global < end {
        let (image, pos0) = (global / n_pos, global % n_pos);
        let pos1 = n_pos.min(pos0 + (end - global));
        let mut view = per_image[image]
            .take()
            .expect("image visited twice")
            .slice_move(s![rows.clone(), pos0..pos1]);
        let mut j = global - p.col_start as usize;
        while view.ncols() > block {
            let (head, tail) = view.split_at(Axis(1), block);
            tasks.push((head, j));
            j += block;
            view = tail;
        }
        tasks.push((view, j));
        global += pos1 - pos0;
    }

    let bias = &bias[p.a_row_offset as usize..p.a_row_offset as usize + m];
    let relu = p.relu != 0;
    tasks.into_par_iter().for_each(|(mut c, j)| {
        general_mat_mul(1.0, &a, &b.slice(s![.., j..j + c.ncols()]), 0.0, &mut c);
        for (mut row, &beta) in c.outer_iter_mut().zip(bias) {
            if relu {
                row.mapv_inplace(|v| (v + beta).max(0.0));
            } else {
                row.mapv_inplace(|v| v + beta);
            }
        }
    });
}
