// channel_affine: out[i] = act(x[i] * scale[c] + shift[c]), c = (i / plane) % channels.
// Inference batch normalisation that could not be folded into a convolution.
//
// Bindings (CPU twin `cpu::channel_affine` takes them in this order):
//   0 params  uniform  Params (Rust: `params::ChannelAffineParams`)
//   1 input   storage  f32 [len]
//   2 scale   storage  f32 [channels]
//   3 shift   storage  f32 [channels]
//   4 out     storage  f32 [len]
// Dispatch (`gpu::kernels::channel_affine`): 1-D over len (`kernels::linear_workgroups`).

struct Params {
    len: u32,
    channels: u32,
    plane: u32,
    relu: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;
@group(0) @binding(3) var<storage, read> shift: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * 256u;
    if i < params.len {
        let c = (i / params.plane) % params.channels;
        var v = input[i] * scale[c] + shift[c];
        if params.relu != 0u {
            v = relu_keep_nan(v);
        }
        out[i] = v;
    }
}
