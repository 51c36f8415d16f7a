//! CPU twin of `shaders/im2col_masked.wgsl`.

use rayon::prelude::*;

use super::read_mapped;
use crate::interp::ZERO_TAP;
use crate::params::Im2colMaskedParams;

/// Marks a padding tap in the per-offset read table.
const PAD: u32 = u32::MAX;

/// Writes the masked column matrix `col[r · ldb + j]` for rows
/// `r = (channel, ky, kx)` of one group and the chunk's columns `j` (see
/// [`Im2colMaskedParams`]). Padding reads as 0; with `in_map_kind` set the input is
/// compact and each spatial read goes through `in_map` (implicit interpolation). Columns
/// `cols .. ldb` are zeroed.
///
/// Arguments follow the shader's bindings: params, input, mask, in_map, col.
///
/// Loop structure: first the read table `J[c][j]` (METHOD.md §1) for each kernel offset
/// `c = (ky, kx)`: the offset of column j's tap within one channel of its image, or `PAD`.
/// It depends on neither the channel nor the row, so it is built once per call
/// (kh·kw·cols entries, 1/C of the output). Then every row `r = (channel, c)` is a plain
/// gather `row[j] = input[channel_base + J[c][j]]`, rows spread over rayon. Through a
/// nearest or zeros map the table already holds the compact index (a skipped zeros
/// position becomes `PAD`); through a barycentric map it holds the dense position and
/// each read combines three compact values.
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
    assert!(col.len() >= rows * ldb, "column buffer too small for the chunk");
    let plane = p.in_plane as usize;
    let image_stride = p.channels as usize * plane;
    assert!(
        image_stride * ((p.col_start + p.cols).div_ceil(p.n_pos) as usize) <= input.len(),
        "input shorter than the chunk's images"
    );

    let table: Vec<u32> = (0..p.kernel_h * p.kernel_w)
        .into_par_iter()
        .flat_map_iter(|c| {
            let dy = (c / p.kernel_w) * p.dilation_h;
            let dx = (c % p.kernel_w) * p.dilation_w;
            (0..cols).map(move |j| {
                let global = p.col_start as usize + j;
                let (image, entry) = (global / p.n_pos as usize, global % p.n_pos as usize);
                let pos = mask[entry];
                // Unsigned arithmetic with the padding added back: y_in = y·sy + dy − pad_top.
                let yp = (pos / p.out_w) * p.stride_h + dy;
                let xp = (pos % p.out_w) * p.stride_w + dx;
                if yp < p.pad_top || xp < p.pad_left || yp - p.pad_top >= p.in_h || xp - p.pad_left >= p.in_w
                {
                    return PAD;
                }
                let s = (yp - p.pad_top) * p.in_w + (xp - p.pad_left);
                let s = match p.in_map_kind {
                    0 | 3 => s,
                    _ => match in_map[s as usize] {
                        ZERO_TAP => return PAD,
                        i => i,
                    },
                };
                if p.in_map_kind == 3 {
                    return s;
                }
                let image_base = u32::try_from(image * image_stride)
                    .expect("validated geometry: input indices fit in u32");
                image_base + s
            })
        })
        .collect();

    col[..rows * ldb].par_chunks_mut(ldb).enumerate().for_each(|(r, row)| {
        let (ci, c) = (r / (kh * kw), r % (kh * kw));
        let channel = &input[(p.channel_offset as usize + ci) * plane..];
        let taps = &table[c * cols..(c + 1) * cols];
        if p.in_map_kind == 3 {
            for (j, (out, &t)) in row[..cols].iter_mut().zip(taps).enumerate() {
                let image = (p.col_start as usize + j) / p.n_pos as usize;
                *out = if t == PAD {
                    0.0
                } else {
                    read_mapped(3, in_map, &channel[image * image_stride..], t as usize)
                };
            }
        } else {
            for (out, &t) in row[..cols].iter_mut().zip(taps) {
                *out = if t == PAD { 0.0 } else { channel[t as usize] };
            }
        }
        row[cols..].fill(0.0);
    });
}
