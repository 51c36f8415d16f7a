// conv_fused: one group of a perforated conv for one chunk of columns as a single launch
// (implicit GEMM): out = act(A * B + bias) where B, the column matrix of im2col_masked, is
// never written out: each B value is computed where the tile loads it, from the input,
// through the mask (and the input map for a compact input).
//
// Bindings (CPU twin `cpu::conv_fused` takes them in this order):
//   0 params  uniform  Params (Rust: `params::ConvFusedParams`)
//   1 a       storage  vec4<f32> [rows of A, lda / 4]   weights, zero-padded beyond k
//   2 input   storage  f32 [batch, channels, in_plane]  dense (in_plane = H*W) or compact
//   3 mask    storage  u32 [n_pos]                      sorted output positions y*W'+x
//   4 in_map  storage  u32 [H*W*words]                  read when in_map_kind != 0
//   5 bias    storage  f32 [rows of A]
//   6 out     storage  f32 [images, out_channels, n_pos]
// Dispatch (`gpu::kernels::conv_fused`): as matmul_tiled, x = ceil(n / TILE),
// y = ceil(m / TILE) workgroups of 16x16 threads; TILE overridable (64 or 128).
//
// Loop structure: matmul_tiled's (`shaders/gemm_tiles.wgsl`, appended). Only `load_b`
// differs: B row r = (channel c of the group, ky, kx), column j = global column
// col_start + j = (image, mask entry) reads the input at (y·stride − pad + ky·dilation,
// x·stride − pad + kx·dilation) of that image's channel c, 0 in the padding, as
// im2col_masked computes it.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    a_row_offset: u32,
    relu: u32,
    col_start: u32,
    n_pos: u32,
    out_channels: u32,
    out_channel_offset: u32,
    relu_cap: f32,
    in_h: u32,
    in_w: u32,
    in_plane: u32,
    channels: u32,
    channel_offset: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    dilation_h: u32,
    dilation_w: u32,
    out_w: u32,
    in_map_kind: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read> mask: array<u32>;
@group(0) @binding(4) var<storage, read> in_map: array<u32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

// One B value: row `krow`, column `j` of this chunk, 0 outside the product.
fn b_value(krow: u32, j: u32) -> f32 {
    if krow >= params.k || j >= params.n {
        return 0.0;
    }
    let global = params.col_start + j;
    let pos = mask[global % params.n_pos];
    let khw = params.kernel_h * params.kernel_w;
    let c = krow % khw;
    let yi = i32((pos / params.out_w) * params.stride_h + (c / params.kernel_w) * params.dilation_h)
        - i32(params.pad_top);
    let xi = i32((pos % params.out_w) * params.stride_w + (c % params.kernel_w) * params.dilation_w)
        - i32(params.pad_left);
    if yi < 0 || yi >= i32(params.in_h) || xi < 0 || xi >= i32(params.in_w) {
        return 0.0;
    }
    let s = u32(yi) * params.in_w + u32(xi);
    let base = ((global / params.n_pos) * params.channels + params.channel_offset + krow / khw)
        * params.in_plane;
    if params.in_map_kind != 0u {
        return read_mapped(params.in_map_kind, base, s);
    }
    return input[base + s];
}

// B at k row `krow`, column quad `quad` (global), computed from the input.
fn load_b(krow: u32, quad: u32) -> vec4<f32> {
    let j = quad * 4u;
    return vec4<f32>(b_value(krow, j), b_value(krow, j + 1u), b_value(krow, j + 2u), b_value(krow, j + 3u));
}
