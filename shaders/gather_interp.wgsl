// gather_interp: compact -> dense through an interpolation map, optionally plus a dense
// addend (a residual Add with one compact operand) and then a ReLU (a barycentric map does
// not commute with the ReLU).
//
// Bindings (CPU twin `cpu::gather_interp` takes them in this order):
//   0 params  uniform  Params (Rust: `params::GatherInterpParams`)
//   1 input   storage  f32 [planes, n_pos]      the compact tensor
//   2 in_map  storage  u32 [plane * words]      the map's table (read_mapped.wgsl)
//   3 addend  storage  f32 [planes, plane]      read only when params.residual == 1
//                                               (residual == 2: the addend is `dense` itself)
//   4 dense   storage  f32 [planes, plane]
// Dispatch (`gpu::kernels::gather_interp`): x = ceil(plane / 256) workgroups, one thread
// per dense position; y = min(planes, 65535) workgroups looping over planes with stride y.

struct Params {
    n_pos: u32,
    plane: u32,
    planes: u32,
    map_kind: u32,
    relu: u32,
    residual: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> in_map: array<u32>;
@group(0) @binding(3) var<storage, read> addend: array<f32>;
@group(0) @binding(4) var<storage, read_write> dense: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let p = gid.x;
    if p >= params.plane {
        return;
    }
    for (var t = gid.y; t < params.planes; t += groups.y) {
        var v = read_mapped(params.map_kind, t * params.n_pos, p);
        if params.residual == 1u {
            v += addend[t * params.plane + p];
        } else if params.residual == 2u {
            v += dense[t * params.plane + p];
        }
        if params.relu != 0u {
            v = relu_keep_nan(v);
        }
        dense[t * params.plane + p] = v;
    }
}
