// clip: out[i] = min(max(x[i], min), max), NaN kept (ReLU6 and other bounded activations).
//
// Bindings (CPU twin `cpu::clip` takes them in this order):
//   0 params  uniform  Params (Rust: `params::ClipParams`)
//   1 input   storage  f32 [len]
//   2 out     storage  f32 [len]
// Dispatch (`gpu::kernels::clip`): 1-D over len (`kernels::linear_workgroups`).

struct Params {
    len: u32,
    _pad: u32,
    min: f32,
    max: f32,
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
        out[i] = clamp_keep_nan(input[i], params.min, params.max);
    }
}
