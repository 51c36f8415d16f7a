// gemm_tiles: the tiled product, its loop and epilogue, shared by matmul_tiled and
// conv_fused (see matmul_tiled.wgsl for the loop structure). The kernel appending it
// declares `params` (with m, n, k, lda, a_row_offset, relu, relu_cap, col_start, n_pos,
// out_channels, out_channel_offset), the bindings `a` (the packed weights), `bias`, `out`,
// and `load_b(krow, quad)` (a vec4 of B, 0 outside the product).

// Rows and columns of the product per workgroup: 64 or 128.
override TILE: u32 = 64u;
const TILE_K: u32 = 16u;

// a_tile[kk * TILE / 4 + q] = A rows 4q..4q+3 of the tile at depth kk.
var<workgroup> a_tile: array<vec4<f32>, 512>;
// b_tile[kk * TILE / 4 + q] = B columns 4q..4q+3 of the tile at depth kk.
var<workgroup> b_tile: array<vec4<f32>, 512>;

// Row `row` of the tile's A at k-quad `quad` (global k-quad `quad`), 0 outside.
fn load_a(m0: u32, row: u32, quad: u32) -> vec4<f32> {
    let r = m0 + row;
    let lda4 = params.lda / 4u;
    if r < params.m && quad < lda4 {
        return a[(params.a_row_offset + r) * lda4 + quad];
    }
    return vec4<f32>(0.0);
}

// Stores the 4 k values `v` of tile row `row` (slab k-quad `quad`) transposed.
fn store_a(row: u32, quad: u32, v: vec4<f32>) {
    let qm = TILE / 4u;
    let dst = quad * 4u * qm + row / 4u;
    let lane = row % 4u;
    a_tile[dst][lane] = v.x;
    a_tile[dst + qm][lane] = v.y;
    a_tile[dst + 2u * qm][lane] = v.z;
    a_tile[dst + 3u * qm][lane] = v.w;
}

// c[i] += at[i] * bt: one rank-1 update of a 4x4 block.
fn outer4(c: ptr<function, array<vec4<f32>, 4>>, at: vec4<f32>, bt: vec4<f32>) {
    (*c)[0] = fma(vec4<f32>(at.x), bt, (*c)[0]);
    (*c)[1] = fma(vec4<f32>(at.y), bt, (*c)[1]);
    (*c)[2] = fma(vec4<f32>(at.z), bt, (*c)[2]);
    (*c)[3] = fma(vec4<f32>(at.w), bt, (*c)[3]);
}

// Bias, ReLU and the scatter of a 4x4 block at product rows row0.., columns col0...
fn store_block(c: array<vec4<f32>, 4>, row0: u32, col0: u32) {
    for (var i = 0u; i < 4u; i++) {
        let row = row0 + i;
        if row >= params.m {
            break;
        }
        let beta = bias[params.a_row_offset + row];
        let out_row = params.out_channel_offset + row;
        for (var j = 0u; j < 4u; j++) {
            let colj = col0 + j;
            if colj >= params.n {
                break;
            }
            var v = c[i][j] + beta;
            if params.relu != 0u {
                v = relu_keep_nan(v);
                if params.relu_cap > 0.0 {
                    v = cap_keep_nan(v, params.relu_cap);
                }
            }
            let global = params.col_start + colj;
            let image = global / params.n_pos;
            let pos = global % params.n_pos;
            out[(image * params.out_channels + out_row) * params.n_pos + pos] = v;
        }
    }
}

fn tile64(wg: vec3<u32>, lid: vec3<u32>, tid: u32) {
    let m0 = wg.y * 64u;
    let n0 = wg.x * 64u;
    let a_row = tid / 4u;   // 0..63: tile row this thread loads
    let a_quad = tid % 4u;  // 0..3: k-quad within the slab
    let b_row = tid / 16u;  // 0..15: k row within the slab
    let b_quad = tid % 16u; // 0..15: column quad within the tile
    var c: array<vec4<f32>, 4>;
    var av = load_a(m0, a_row, a_quad);
    var bv = load_b(b_row, n0 / 4u + b_quad);
    for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
        store_a(a_row, a_quad, av);
        b_tile[tid] = bv;
        workgroupBarrier();
        let k1 = k0 + TILE_K;
        if k1 < params.k {
            av = load_a(m0, a_row, k1 / 4u + a_quad);
            bv = load_b(k1 + b_row, n0 / 4u + b_quad);
        }
        for (var kk = 0u; kk < TILE_K; kk++) {
            outer4(&c, a_tile[kk * 16u + lid.y], b_tile[kk * 16u + lid.x]);
        }
        workgroupBarrier();
    }
    store_block(c, m0 + lid.y * 4u, n0 + lid.x * 4u);
}

fn tile128(wg: vec3<u32>, lid: vec3<u32>, tid: u32) {
    let m0 = wg.y * 128u;
    let n0 = wg.x * 128u;
    // Two A loads per thread (tile rows tid/4 and 64 + tid/4) and two B loads (k rows
    // tid/32 and 8 + tid/32, column quad tid%32).
    let a_row = tid / 4u;
    let a_quad = tid % 4u;
    let b_row = tid / 32u;
    let b_quad = n0 / 4u + tid % 32u;
    var c00: array<vec4<f32>, 4>;
    var c01: array<vec4<f32>, 4>;
    var c10: array<vec4<f32>, 4>;
    var c11: array<vec4<f32>, 4>;
    var av0 = load_a(m0, a_row, a_quad);
    var av1 = load_a(m0, a_row + 64u, a_quad);
    var bv0 = load_b(b_row, b_quad);
    var bv1 = load_b(b_row + 8u, b_quad);
    for (var k0 = 0u; k0 < params.k; k0 += TILE_K) {
        store_a(a_row, a_quad, av0);
        store_a(a_row + 64u, a_quad, av1);
        b_tile[tid] = bv0;
        b_tile[tid + 256u] = bv1;
        workgroupBarrier();
        let k1 = k0 + TILE_K;
        if k1 < params.k {
            av0 = load_a(m0, a_row, k1 / 4u + a_quad);
            av1 = load_a(m0, a_row + 64u, k1 / 4u + a_quad);
            bv0 = load_b(k1 + b_row, b_quad);
            bv1 = load_b(k1 + b_row + 8u, b_quad);
        }
        for (var kk = 0u; kk < TILE_K; kk++) {
            let a0 = a_tile[kk * 32u + lid.y];
            let a1 = a_tile[kk * 32u + 16u + lid.y];
            let b0 = b_tile[kk * 32u + lid.x];
            let b1 = b_tile[kk * 32u + 16u + lid.x];
            outer4(&c00, a0, b0);
            outer4(&c01, a0, b1);
            outer4(&c10, a1, b0);
            outer4(&c11, a1, b1);
        }
        workgroupBarrier();
    }
    let r = m0 + lid.y * 4u;
    let q = n0 + lid.x * 4u;
    store_block(c00, r, q);
    store_block(c01, r, q + 64u);
    store_block(c10, r + 64u, q);
    store_block(c11, r + 64u, q + 64u);
}

@compute @workgroup_size(16, 16)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    if TILE == 128u {
        tile128(wg, lid, tid);
    } else {
        tile64(wg, lid, tid);
    }
}
