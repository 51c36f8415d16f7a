// softmax: over the cols channels at each of the plane positions of each of the rows
// images, exp(x - max) / sum(exp(x - max)) (a flat tensor has plane 1).
//
// Bindings (CPU twin `cpu::softmax` takes them in this order):
//   0 params  uniform  Params (Rust: `params::SoftmaxParams`)
//   1 input   storage  f32 [rows, cols, plane]
//   2 out     storage  f32 [rows, cols, plane]
// Dispatch (`gpu::kernels::softmax`): 1-D over rows * plane (`kernels::linear_workgroups`),
// one thread per position (classes and attention rows are at most a few thousand).

struct Params {
    rows: u32,
    cols: u32,
    plane: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * 256u;
    let plane = max(params.plane, 1u);
    if i >= params.rows * plane {
        return;
    }
    let r = i / plane;
    let base = r * params.cols * plane + i % plane;
    var m = -3.402823e38;
    for (var j = 0u; j < params.cols; j++) {
        m = max(m, input[base + j * plane]);
    }
    var sum = 0.0;
    for (var j = 0u; j < params.cols; j++) {
        let e = exp(input[base + j * plane] - m);
        out[base + j * plane] = e;
        sum += e;
    }
    for (var j = 0u; j < params.cols; j++) {
        out[base + j * plane] = out[base + j * plane] / sum;
    }
}
