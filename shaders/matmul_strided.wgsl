// matmul_strided: per image and batch index (i, j) of b0 x b1, out = A B with A m x k
// and B k x n, every operand addressed through its strides (batch 0, batch 1, row,
// column): attention's Q K^T and P V read their operands' transposes in place. Each
// output element sums its k products in order.
//
// Bindings (CPU twin `cpu::matmul_strided` takes them in this order):
//   0 params  uniform  Params (Rust: `params::MatmulStridedParams`)
//   1 a       storage  f32 [images, a_image]
//   2 b       storage  f32 [images, b_image]
//   3 out     storage  f32 [images, out_image]
// Dispatch (`gpu::kernels::matmul_strided`): 1-D over images * out_image
// (`kernels::linear_workgroups`), one thread per output element.

struct Params {
    images: u32,
    a_image: u32,
    b_image: u32,
    out_image: u32,
    b0: u32,
    b1: u32,
    m: u32,
    k: u32,
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
    a_b0: u32,
    a_b1: u32,
    a_m: u32,
    a_k: u32,
    b_b0: u32,
    b_b1: u32,
    b_k: u32,
    b_n: u32,
    o_b0: u32,
    o_b1: u32,
    o_m: u32,
    o_n: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let t = gid.x + gid.y * groups.x * 256u;
    if t >= params.images * params.out_image {
        return;
    }
    let img = t / params.out_image;
    // The thread's output element in (batch 0, batch 1, row, column) order.
    var rest = t % params.out_image;
    let c = rest % params.n; rest /= params.n;
    let r = rest % params.m; rest /= params.m;
    let j = rest % params.b1;
    let i = rest / params.b1;
    let a0 = img * params.a_image + i * params.a_b0 + j * params.a_b1 + r * params.a_m;
    let b0 = img * params.b_image + i * params.b_b0 + j * params.b_b1 + c * params.b_n;
    var acc = 0.0;
    for (var p = 0u; p < params.k; p++) {
        acc += a[a0 + p * params.a_k] * b[b0 + p * params.b_k];
    }
    out[img * params.out_image + i * params.o_b0 + j * params.o_b1 + r * params.o_m + c * params.o_n] = acc;
}
