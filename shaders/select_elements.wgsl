// select_elements: out[i] = a[i] where cond[i] is not 0, else b[i] (ONNX Where; the
// condition is a comparison's 0 or 1).
//
// Bindings (CPU twin `cpu::select_elements` takes them in this order):
//   0 params  uniform  Params (Rust: `params::SelectElementsParams`)
//   1 cond    storage  f32 [len]
//   2 a       storage  f32 [len]
//   3 b       storage  f32 [len]
//   4 out     storage  f32 [len]
// Dispatch (`gpu::kernels::select_elements`): 1-D over len (`kernels::linear_workgroups`).

struct Params {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> cond: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * 256u;
    if i < params.len {
        // A branch, not arithmetic: the value not taken may be infinite or NaN.
        if cond[i] != 0.0 {
            out[i] = a[i];
        } else {
            out[i] = b[i];
        }
    }
}
