// reduce_channels: out[n, 0, p] = reduce over c of x[n, c, p]; op 0 mean, 1 sum, 2 max.
// Statistics over the channels at each position (layer norm over channels, keepdims
// reductions over axis 1). Dense and compact tensors alike (a plane is H·W or N).
//
// Bindings (CPU twin `cpu::reduce_channels` takes them in this order):
//   0 params  uniform  Params (Rust: `params::ReduceChannelsParams`)
//   1 input   storage  f32 [images · channels · plane]
//   2 out     storage  f32 [images · plane]
// Dispatch (`gpu::kernels::reduce_channels`): 1-D over images · plane
// (`kernels::linear_workgroups`).

struct Params {
    images: u32,
    channels: u32,
    plane: u32,
    op: u32,
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
    if i < params.images * params.plane {
        let n = i / params.plane;
        let p = i % params.plane;
        let base = n * params.channels * params.plane + p;
        var acc = input[base];
        for (var c = 1u; c < params.channels; c++) {
            let v = input[base + c * params.plane];
            if params.op == 2u {
                acc = max_keep_nan(acc, v);
            } else {
                acc += v;
            }
        }
        if params.op == 0u {
            acc = acc / f32(params.channels);
        }
        out[i] = acc;
    }
}
