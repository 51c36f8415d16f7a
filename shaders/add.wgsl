// add: out[i] = act(a[i] + b[i]), act = ReLU when params.relu == 1 (residual connections).
//
// Bindings (CPU twin `cpu::add` takes them in this order):
//   0 params  uniform  Params (Rust: `params::AddParams`)
//   1 a       storage  f32 [len]
//   2 b       storage  f32 [len]
//   3 out     storage  f32 [len]
// Dispatch (`gpu::kernels::add`): 1-D over len (`kernels::linear_workgroups`).

struct Params {
    len: u32,
    relu: u32,
    _pad0: u32,
    _pad1: u32,
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
    let i = gid.x + gid.y * groups.x * 256u;
    if i < params.len {
        var v = a[i] + b[i];
        if params.relu != 0u {
            v = relu_keep_nan(v);
        }
        out[i] = v;
    }
}
