// gather_interp: compact -> dense through an interpolation map.
//
// Bindings (CPU twin `cpu::gather_interp` takes them in this order):
//   0 params   uniform  Params (Rust: `params::GatherInterpParams`)
//   1 compact  storage  f32 [planes, n_pos]
//   2 map      storage  u32 [plane]          index into a compact plane, per dense position
//   3 dense    storage  f32 [planes, plane]
// Dispatch (`gpu::kernels::gather_interp`): x = ceil(plane / 256) workgroups, one thread
// per dense position; y = min(planes, 65535) workgroups looping over planes with stride y.

struct Params {
    n_pos: u32,
    plane: u32,
    planes: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> compact: array<f32>;
@group(0) @binding(2) var<storage, read> map: array<u32>;
@group(0) @binding(3) var<storage, read_write> dense: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let p = gid.x;
    if p >= params.plane {
        return;
    }
    let src = map[p];
    for (var t = gid.y; t < params.planes; t += groups.y) {
        dense[t * params.plane + p] = compact[t * params.n_pos + src];
    }
}
