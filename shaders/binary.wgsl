// binary: out[i] = f(a[ia], b[ib]), f chosen by params.op (`network::Binary::code`).
// broadcast 0: ia = ib = i; 1: b holds one value per plane, ib = i / plane; 2: a does
// (squeeze-and-excitation scales, per image and channel); 3: b holds one value per image
// and position, ib = (i / (channels * plane)) * plane + i % plane; 4: a does (statistics
// over the channels, as in a layer norm).
//
// Bindings (CPU twin `cpu::binary` takes them in this order):
//   0 params  uniform  Params (Rust: `params::BinaryParams`)
//   1 a       storage  f32 [len, or its broadcast size]
//   2 b       storage  f32 [len, or its broadcast size]
//   3 out     storage  f32 [len]
// Dispatch (`gpu::kernels::binary`): 1-D over len (`kernels::linear_workgroups`).

struct Params {
    len: u32,
    op: u32,
    plane: u32,
    broadcast: u32,
    channels: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

fn apply(x: f32, y: f32) -> f32 {
    switch params.op {
        case 0u: { return x + y; }
        case 1u: { return x - y; }
        case 2u: { return x * y; }
        case 3u: { return x / y; }
        case 4u: { return max_keep_nan(x, y); }
        default: { return min_keep_nan(x, y); }
    }
}

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * 256u;
    if i < params.len {
        let p = i / params.plane;
        let q = (i / (params.channels * params.plane)) * params.plane + i % params.plane;
        var ia = i;
        var ib = i;
        switch params.broadcast {
            case 1u: { ib = p; }
            case 2u: { ia = p; }
            case 3u: { ib = q; }
            case 4u: { ia = q; }
            default: {}
        }
        out[i] = apply(a[ia], b[ib]);
    }
}
