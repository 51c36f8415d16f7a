// matmul_narrow: out = act(A * B + bias) for products at most 8 columns wide: fully
// connected layers at small batch, where a 64-column tile would waste most of its work.
//
// Bindings (CPU twin `cpu::matmul_narrow` takes them in this order); Params and the
// output scatter are those of matmul_tiled:
//   0 params  uniform  Params (Rust: `params::MatmulTiledParams`)
//   1 a       storage  vec4<f32> [rows of A, lda / 4]   weights, zero-padded beyond k
//   2 b       storage  vec4<f32> [k, ldb / 4]           ldb <= 8
//   3 bias    storage  f32 [rows of A]
//   4 out     storage  f32 [images, out_channels, n_pos]
// Dispatch (`gpu::kernels::matmul_narrow`): one workgroup of 256 threads per row of the
// product, folded into x and y: row = workgroup_id.x + workgroup_id.y * num_workgroups.x.
//
// Loop structure: each thread walks the row of A one vec4 (4 values of k) at a time with
// stride 256, multiplying by rows 4q..4q+3 of B into two vec4 accumulators (columns 0..3
// and 4..7); a tree reduction in workgroup memory sums the 256 partial results, and thread
// 0 applies bias, ReLU and the scatter.

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

const THREADS: u32 = 256u;

var<workgroup> low: array<vec4<f32>, 256>;
var<workgroup> high: array<vec4<f32>, 256>;

@compute @workgroup_size(256)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) tid: u32,
) {
    let row = wg.x + wg.y * groups.x;
    if row >= params.m {
        return;
    }
    let lda4 = params.lda / 4u;
    let ldb4 = params.ldb / 4u;
    let a_base = (params.a_row_offset + row) * lda4;
    var acc_low = vec4<f32>(0.0);
    var acc_high = vec4<f32>(0.0);
    for (var q = tid; q < lda4; q += THREADS) {
        let av = a[a_base + q];
        for (var c = 0u; c < 4u; c++) {
            let k = q * 4u + c;
            if k < params.k {
                acc_low = fma(vec4<f32>(av[c]), b[k * ldb4], acc_low);
                if ldb4 > 1u {
                    acc_high = fma(vec4<f32>(av[c]), b[k * ldb4 + 1u], acc_high);
                }
            }
        }
    }
    low[tid] = acc_low;
    high[tid] = acc_high;
    workgroupBarrier();
    for (var s = THREADS / 2u; s > 0u; s = s / 2u) {
        if tid < s {
            low[tid] += low[tid + s];
            high[tid] += high[tid + s];
        }
        workgroupBarrier();
    }
    if tid == 0u {
        let beta = bias[params.a_row_offset + row];
        let out_row = params.out_channel_offset + row;
        for (var j = 0u; j < min(params.n, 8u); j++) {
            var v = beta;
            if j < 4u {
                v += low[0][j];
            } else {
                v += high[0][j - 4u];
            }
            if params.relu != 0u {
                v = relu_keep_nan(v);
                if params.relu_cap > 0.0 {
                    v = cap_keep_nan(v, params.relu_cap);
                }
            }
            let global = params.col_start + j;
            let image = global / params.n_pos;
            let pos = global % params.n_pos;
            out[(image * params.out_channels + out_row) * params.n_pos + pos] = v;
        }
    }
}
