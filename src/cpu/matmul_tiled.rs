//! CPU twin of `shaders/matmul_tiled.wgsl`.

use ndarray::linalg::general_mat_mul;
use ndarray::{s, ArrayView2, ArrayViewMut2, ArrayViewMut3, Axis, ShapeBuilder};
use rayon::prelude::*;

use crate::params::MatmulTiledParams;

/// Narrowest column block worth a task of its own (keeps the GEMM kernel efficient).
const MIN_BLOCK_COLS: usize = 64;
/// Fewest rows in a block.
const MIN_BLOCK_ROWS: usize = 16;

/// One block of the product: `c` = rows `row..` × columns `col..` of this chunk.
struct Task<'a> {
    c: ArrayViewMut2<'a, f32>,
    row: usize,
    col: usize,
}

/// Splits one image's output view into about `target` blocks, as `r` row blocks ×
/// `c` column blocks. Each block's GEMM packs its rows of A and its columns of B, so the
/// split minimises the packed volume `c·|A| + r·|B|` ∝ `c·m + r·n`: wide products
/// (early layers) split by columns, tall ones (deep layers, perforated products with few
/// positions, fully connected layers) by rows.
fn split_into_blocks<'a>(
    view: ArrayViewMut2<'a, f32>,
    first_col: usize,
    target: usize,
    tasks: &mut Vec<Task<'a>>,
) {
    let (m, n) = view.dim();
    let max_cols = (n / MIN_BLOCK_COLS).max(1);
    let max_rows = (m / MIN_BLOCK_ROWS).max(1);
    let (row_blocks, col_blocks) = (1..=target.min(max_cols))
        .map(|c| (target.div_ceil(c).min(max_rows), c))
        .min_by_key(|&(r, c)| c * m + r * n)
        .unwrap_or((1, 1));
    let (width, height) = (n.div_ceil(col_blocks), m.div_ceil(row_blocks));
    let mut rest = view;
    let mut col = first_col;
    while rest.ncols() > 0 {
        let w = width.min(rest.ncols());
        let (mut strip, tail) = rest.split_at(Axis(1), w);
        let mut row = 0;
        while strip.nrows() > 0 {
            let h = height.min(strip.nrows());
            let (c, below) = strip.split_at(Axis(0), h);
            tasks.push(Task { c, row, col });
            row += height;
            strip = below;
        }
        col += width;
        rest = tail;
    }
}

/// `out = act(A · B + bias)` for one group and one chunk of columns, scattered into the
/// `[images, out_channels, n_pos]` output as [`MatmulTiledParams`] describes.
///
/// The product is written straight into strided views of `out` (no temporary): each
/// image's run of columns is one view, split into blocks that rayon multiplies in
/// parallel with ndarray's `general_mat_mul`.
///
/// Arguments follow the shader's bindings: params, a, b, bias, out.
#[track_caller]
pub fn matmul_tiled(params: &MatmulTiledParams, a: &[f32], b: &[f32], bias: &[f32], out: &mut [f32]) {
    let p = params;
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let (lda, ldb) = (p.lda as usize, p.ldb as usize);
    let (n_pos, out_channels) = (p.n_pos as usize, p.out_channels as usize);
    let a_start = p.a_row_offset as usize * lda;
    let a = ArrayView2::from_shape((m, k).strides((lda, 1)), &a[a_start..]).expect("A matrix view");
    let b = ArrayView2::from_shape((k, n).strides((ldb, 1)), b).expect("B matrix view");
    let images = out.len() / (out_channels * n_pos);
    let mut out = ArrayViewMut3::from_shape((images, out_channels, n_pos), out).expect("output view");

    // One contiguous run of global columns covers each image at most once; each image's
    // run is one strided view of `out`, split into blocks for rayon.
    let rows = p.out_channel_offset as usize..p.out_channel_offset as usize + m;
    let mut per_image: Vec<Option<ArrayViewMut2<f32>>> = out.outer_iter_mut().map(Some).collect();
    let mut segments = Vec::new();
    let (mut global, end) = (p.col_start as usize, p.col_start as usize + n);
    while global < end {
        let (image, pos0) = (global / n_pos, global % n_pos);
        let pos1 = n_pos.min(pos0 + (end - global));
        let view =
            per_image[image].take().expect("image visited twice").slice_move(s![rows.clone(), pos0..pos1]);
        segments.push((view, global - p.col_start as usize));
        global += pos1 - pos0;
    }
    // About two blocks per thread for the whole chunk, not per image: a microbatched chunk
    // of several images must not multiply into many narrow GEMMs that each repack A.
    let target = (2 * rayon::current_num_threads()).div_ceil(segments.len());
    let mut tasks: Vec<Task> = Vec::new();
    for (view, first_col) in segments {
        split_into_blocks(view, first_col, target, &mut tasks);
    }

    let relu = p.relu != 0;
    // The ReLU's upper bound (`relu_cap`, 0 for none).
    let cap = if p.relu_cap > 0.0 { p.relu_cap } else { f32::INFINITY };
    let bias = &bias[p.a_row_offset as usize..p.a_row_offset as usize + m];
    tasks.into_par_iter().for_each(|Task { mut c, row, col }| {
        let a = a.slice(s![row..row + c.nrows(), ..]);
        general_mat_mul(1.0, &a, &b.slice(s![.., col..col + c.ncols()]), 0.0, &mut c);
        for (mut row, &beta) in c.outer_iter_mut().zip(&bias[row..]) {
            if relu {
                row.mapv_inplace(|v| super::nan::cap_keep_nan(super::nan::relu_keep_nan(v + beta), cap));
            } else {
                row.mapv_inplace(|v| v + beta);
            }
        }
    });
}
