// softmax: each row of cols values becomes exp(x - max) / sum(exp(x - max)).
//
// Bindings (CPU twin `cpu::softmax` takes them in this order):
//   0 params  uniform  Params (Rust: `params::SoftmaxParams`)
//   1 input   storage  f32 [rows, cols]
//   2 out     storage  f32 [rows, cols]
// Dispatch (`gpu::kernels::softmax`): x = ceil(rows / 64) workgroups of 64, one thread
// per row (rows are images: few, and classes are at most a few thousand).

struct Params {
    rows: u32,
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if r >= params.rows {
        return;
    }
    let base = r * params.cols;
    var m = -3.402823e38;
    for (var j = 0u; j < params.cols; j++) {
        m = max(m, input[base + j]);
    }
    var sum = 0.0;
    for (var j = 0u; j < params.cols; j++) {
        let e = exp(input[base + j] - m);
        out[base + j] = e;
        sum += e;
    }
    for (var j = 0u; j < params.cols; j++) {
        out[base + j] = out[base + j] / sum;
    }
}
