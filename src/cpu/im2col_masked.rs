//! CPU twin of `shaders/im2col_masked.wgsl`.

use rayon::prelude::*;

use crate::params::Im2colMaskedParams;

/// Writes the masked column matrix `col[r · ldb + j]` for rows
/// `r = (channel, ky, kx)` of one group and the chunk's columns `j` (see
/// [`Im2colMaskedParams`]). Padding reads as 0; with `use_in_map` the input is compact
/// and each spatial read goes through `in_map` (implicit interpolation). Columns
/// `cols .. ldb` are zeroed.
///
/// Arguments follow the shader's bindings: params, input, mask, in_map, col.
#[track_caller]
pub fn im2col_masked(
    params: &Im2colMaskedParams,
    input: &[f32],
    mask: &[u32],
    in_map: &[u32],
    col: &mut [f32],
) {
    let p = params;
    let (kh, kw) = (p.kernel_h as usize, p.kernel_w as usize);
    let rows = p.group_channels as usize * kh * kw;
    let (cols, ldb) = (p.cols as usize, p.ldb as usize);
    assert!(
        col.len() >= rows * ldb,
        "column buffer too small for the chunk"
    );
    let (in_h, in_w) = (p.in_h as i64, p.in_w as i64);
    let plane = p.in_plane as usize;
    let use_map = p.use_in_map != 0;

    // Per column: where its image starts in `input`, and the top-left input coordinate.
    let origin: Vec<(usize, i64, i64)> = (0..cols)
        .map(|j| {
            let global = p.col_start as usize + j;
            let (image, entry) = (global / p.n_pos as usize, global % p.n_pos as usize);
            let pos = mask[entry];
            let (y, x) = (i64::from(pos / p.out_w), i64::from(pos % p.out_w));
            (
                image * p.channels as usize * plane,
                y * i64::from(p.stride_h) - i64::from(p.pad_top),
                x * i64::from(p.stride_w) - i64::from(p.pad_left),
            )
        })
        .collect();

    col[..rows * ldb]
        .par_chunks_mut(ldb)
        .enumerate()
        .for_each(|(r, row)| {
            let (ci, c) = (r / (kh * kw), r % (kh * kw));
            let dy = (c / kw) as i64 * i64::from(p.dilation_h);
            let dx = (c % kw) as i64 * i64::from(p.dilation_w);
            let channel_base = (p.channel_offset as usize + ci) * plane;
            for (out, &(image_base, y0, x0)) in row[..cols].iter_mut().zip(&origin) {
                let (yi, xi) = (y0 + dy, x0 + dx);
                *out = if yi >= 0 && yi < in_h && xi >= 0 && xi < in_w {
                    let s = (yi * in_w + xi) as usize;
                    let s = if use_map { in_map[s] as usize } else { s };
                    input[image_base + channel_base + s]
                } else {
                    0.0
                };
            }
            row[cols..].fill(0.0);
        });
}
