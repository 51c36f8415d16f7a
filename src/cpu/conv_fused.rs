//! CPU twin of `shaders/conv_fused.wgsl`.

use super::{im2col_masked, matmul_tiled};
use crate::params::{ConvFusedParams, Im2colMaskedParams, MatmulTiledParams};

/// One group of a conv for one chunk of columns: `out = act(A · B + bias)` with B the
/// column matrix `im2col_masked` would write for the same parameters. The twin builds
/// that matrix in a temporary and multiplies it (the same values as the shader, which
/// computes each B value where it loads it).
///
/// Arguments follow the shader's bindings: params, a, input, mask, in_map, bias, out.
#[track_caller]
pub fn conv_fused(
    params: &ConvFusedParams,
    a: &[f32],
    input: &[f32],
    mask: &[u32],
    in_map: &[u32],
    bias: &[f32],
    out: &mut [f32],
) {
    let p = params;
    let khw = (p.kernel_h * p.kernel_w).max(1);
    let ldb = p.n.next_multiple_of(4);
    let im2col = Im2colMaskedParams {
        in_h: p.in_h,
        in_w: p.in_w,
        in_plane: p.in_plane,
        channels: p.channels,
        channel_offset: p.channel_offset,
        group_channels: p.k / khw,
        kernel_h: p.kernel_h,
        kernel_w: p.kernel_w,
        stride_h: p.stride_h,
        stride_w: p.stride_w,
        pad_top: p.pad_top,
        pad_left: p.pad_left,
        dilation_h: p.dilation_h,
        dilation_w: p.dilation_w,
        out_w: p.out_w,
        n_pos: p.n_pos,
        col_start: p.col_start,
        cols: p.n,
        ldb,
        in_map_kind: p.in_map_kind,
    };
    let matmul = MatmulTiledParams {
        m: p.m,
        n: p.n,
        k: p.k,
        lda: p.lda,
        ldb,
        a_row_offset: p.a_row_offset,
        relu: p.relu,
        col_start: p.col_start,
        n_pos: p.n_pos,
        out_channels: p.out_channels,
        out_channel_offset: p.out_channel_offset,
        relu_cap: p.relu_cap,
    };
    let mut col = vec![0.0f32; p.k as usize * ldb as usize];
    im2col_masked(&im2col, input, mask, in_map, &mut col);
    matmul_tiled(&matmul, a, &col, bias, out);
}
