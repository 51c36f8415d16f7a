// matmul_tiled: out = act(A * B + bias) for one group and one chunk of columns.
//
// Bindings (CPU twin `cpu::matmul_tiled` takes them in this order):
//   0 params  uniform  Params (Rust: `params::MatmulTiledParams`)
//   1 a       storage  vec4<f32> [rows of A, lda / 4]   weights, zero-padded beyond k
//   2 b       storage  vec4<f32> [k, ldb / 4]           the im2col_masked column matrix
//   3 bias    storage  f32 [rows of A]
//   4 out     storage  f32 [images, out_channels, n_pos]
// Dispatch (`gpu::kernels::matmul_tiled`): x = ceil(n / TILE), y = ceil(m / TILE)
// workgroups of 16x16 threads.
//
// The pipeline-overridable constant TILE picks the variant
// (`gpu::kernels::matmul_tiled::MatmulTile`), each with its own body below:
//   TILE = 64    `tile64`: 4x4 outputs per thread
//   TILE = 128   `tile128`: 8x8 outputs per thread, as four 4x4 blocks 64 rows and 64
//                columns apart (rows 64*hi + 4*lid.y + i, columns 64*hj + 4*lid.x + j), so
//                that neighbouring threads read neighbouring vec4s of workgroup memory
// The accumulators are indexed by constants only (`outer4`), so they stay in registers.
//
// Loop structure (both variants):
//   workgroup      one TILE x TILE tile of the product, rows m0.., columns n0..
//   k0 loop        16-deep slabs of k. The slab's A values (TILE rows x 4 k-quads) and
//                  B values (16 k rows x TILE/4 column quads) are loaded as vec4 into
//                  registers one slab ahead (register prefetch: the loads of slab k0+16
//                  are in flight while slab k0 is multiplied), then stored into workgroup
//                  memory, A transposed so that 4 rows sit in one vec4; out-of-range loads
//                  are zero
//   kk loop        per thread, one vec4 of A and one of B per 4x4 block: four vec4 FMAs
//   epilogue       bias, optional ReLU (capped at relu_cap when that is > 0), and the scatter of global column col_start + j to
//                  (image, position) = divmod(col_start + j, n_pos) of the output tensor.
// lda and ldb are multiples of 4 by construction (the host pads), so every vec4 load is
// aligned and either wholly inside a row or wholly in its zero padding.
//
// This file declares the bindings and `load_b`; the tiles, `load_a`, the loop
// and the epilogue are `shaders/gemm_tiles.wgsl`, appended (shared with conv_fused, whose
// `load_b` computes B from the input instead of reading a column matrix).

struct Params {
    m: u32,
    n: u32,
    k: u32,
    lda: u32,
    ldb: u32,
    a_row_offset: u32,
    relu: u32,
    col_start: u32,
    n_pos: u32,
    out_channels: u32,
    out_channel_offset: u32,
    relu_cap: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// B at k row `krow`, column quad `quad` (global), 0 outside.
fn load_b(krow: u32, quad: u32) -> vec4<f32> {
    let ldb4 = params.ldb / 4u;
    if krow < params.k && quad < ldb4 {
        return b[krow * ldb4 + quad];
    }
    return vec4<f32>(0.0);
}

