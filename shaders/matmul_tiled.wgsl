// matmul_tiled: out = act(A * B + bias) for one group and one chunk of columns.
//
// Bindings (CPU twin `cpu::matmul_tiled` takes them in this order):
//   0 params  uniform  Params (Rust: `params::MatmulTiledParams`)
//   1 a       storage  vec4<f32> [rows of A, lda / 4]   weights, zero-padded beyond k
//   2 b       storage  vec4<f32> [k, ldb / 4]           the im2col_masked column matrix
//   3 bias    storage  f32 [rows of A]
//   4 out     storage  f32 [images, out_channels, n_pos]
// Dispatch (`gpu::kernels::matmul_tiled`): x = ceil(n / 64), y = ceil(m / 64) workgroups
// of 16x16 threads.
//
// Loop structure:
//   workgroup      one 64x64 tile of the product, rows m0.., columns n0..
//   k0 loop        16-deep slabs of k: the 256 threads each load one vec4 of A (row
//                  tid/4, k-quad tid%4, stored transposed so that 4 rows sit in one vec4)
//                  and one vec4 of B (k row tid/16, column-quad tid%16) into workgroup
//                  memory; out-of-range loads are zero
//   kk loop        per thread, a 4x4 register block: rows 4*lid.y.., columns 4*lid.x..;
//                  one vec4 of A and one of B per kk, four vec4 FMAs
//   epilogue       bias, optional ReLU, and the scatter of global column col_start + j to
//                  (image, position) = divmod(col_start + j, n_pos) of the output tensor.
// lda and ldb are multiples of 4 by construction (the host pads), so every vec4 load is
// aligned and either wholly inside a row or wholly in its zero padding.

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
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> b: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;
const QUADS_M: u32 = 16u; // TILE_M / 4
const QUADS_N: u32 = 16u; // TILE_N / 4

// a_tile[kk * QUADS_M + q] = A rows 4q..4q+3 of the tile at depth kk.
var<workgroup> a_tile: array<vec4<f32>, 256>;
// b_tile[kk * QUADS_N + q] = B columns 4q..4q+3 of the tile at depth kk.
var<workgroup> b_tile: array<vec4<f32>, 256>;

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let m0 = wg.y * TILE_M;
    let n0 = wg.x * TILE_N;
    let lda4 = params.lda / 4u;
    let ldb4 = params.ldb / 4u;

    let a_row = tid / 4u;   // 0..63: tile row this thread loads
    let a_quad = tid % 4u;  // 0..3: k-quad within the slab
    let b_row = tid / 16u;  // 0..15: k row within the slab
    let b_quad = tid % 16u; // 0..15: column quad within the tile

    var acc: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) {
        acc[i] = vec4<f32>(0.0);
    }

    for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
        var av = vec4<f32>(0.0);
        let ar = m0 + a_row;
        let aq = k0 / 4u + a_quad;
        if ar < params.m && aq < lda4 {
            av = a[(params.a_row_offset + ar) * lda4 + aq];
        }
        let a_dst = (a_quad * 4u) * QUADS_M + a_row / 4u;
        let lane = a_row % 4u;
        a_tile[a_dst][lane] = av.x;
        a_tile[a_dst + QUADS_M][lane] = av.y;
        a_tile[a_dst + 2u * QUADS_M][lane] = av.z;
        a_tile[a_dst + 3u * QUADS_M][lane] = av.w;

        var bv = vec4<f32>(0.0);
        let br = k0 + b_row;
        let bq = n0 / 4u + b_quad;
        if br < params.k && bq < ldb4 {
            bv = b[br * ldb4 + bq];
        }
        b_tile[b_row * QUADS_N + b_quad] = bv;
        workgroupBarrier();

        for (var kk = 0u; kk < TILE_K; kk++) {
            let at = a_tile[kk * QUADS_M + lid.y];
            let bt = b_tile[kk * QUADS_N + lid.x];
            acc[0] = fma(vec4<f32>(at.x), bt, acc[0]);
            acc[1] = fma(vec4<f32>(at.y), bt, acc[1]);
            acc[2] = fma(vec4<f32>(at.z), bt, acc[2]);
            acc[3] = fma(vec4<f32>(at.w), bt, acc[3]);
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 4u; i++) {
        let row = m0 + lid.y * 4u + i;
        if row >= params.m {
            break;
        }
        let beta = bias[params.a_row_offset + row];
        let out_row = params.out_channel_offset + row;
        for (var j = 0u; j < 4u; j++) {
            let colj = n0 + lid.x * 4u + j;
            if colj >= params.n {
                break;
            }
            var v = acc[i][j] + beta;
            if params.relu != 0u {
                v = max(v, 0.0);
            }
            let global = params.col_start + colj;
            let image = global / params.n_pos;
            let pos = global % params.n_pos;
            out[(image * params.out_channels + out_row) * params.n_pos + pos] = v;
        }
    }
}
