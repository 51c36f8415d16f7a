// select_channels: out[n, k, p] = x[n, channels[k], p] (split, channel slices, channel
// shuffle). Works on dense and compact tensors alike (a plane is H·W or N positions).
//
// Bindings (CPU twin `cpu::select_channels` takes them in this order):
//   0 params    uniform  Params (Rust: `params::SelectChannelsParams`)
//   1 input     storage  f32 [images · in_channels · plane]
//   2 channels  storage  u32 [out_channels]
//   3 out       storage  f32 [images · out_channels · plane]
// Dispatch (`gpu::kernels::select_channels`): 1-D over the output
// (`kernels::linear_workgroups`).

struct Params {
    images: u32,
    in_channels: u32,
    out_channels: u32,
    plane: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> channels: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * 256u;
    if i < params.images * params.out_channels * params.plane {
        let p = i % params.plane;
        let k = (i / params.plane) % params.out_channels;
        let n = i / (params.plane * params.out_channels);
        out[i] = input[(n * params.in_channels + channels[k]) * params.plane + p];
    }
}
