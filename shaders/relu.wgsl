// relu: out[i] = max(x[i], 0), NaN kept.
//
// Bindings (CPU twin `cpu::relu` takes them in this order):
//   0 params  uniform  Params (Rust: `params::ReluParams`)
//   1 input   storage  f32 [len]
//   2 out     storage  f32 [len]
// Dispatch (`gpu::kernels::relu`): 1-D over len, workgroups of 256 folded into x and y
// (`kernels::linear_workgroups`); i = gid.x + gid.y * num_workgroups.x * 256.

struct Params {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
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
    if i < params.len {
        out[i] = relu_keep_nan(input[i]);
    }
}
