// lrn: local response normalisation across channels, ONNX semantics.
//
// Bindings (CPU twin `cpu::lrn` takes them in this order):
//   0 params  uniform  Params (Rust: `params::LrnParams`)
//   1 input   storage  f32 [images, channels, positions]   dense or compact alike
//   2 out     storage  f32 [images, channels, positions]
// Dispatch (`gpu::kernels::lrn`): x = ceil(positions / 256) workgroups, one thread per
// position; y = min(images*channels, 65535) workgroups looping over (image, channel).
//
// out = x / (bias + alpha / size * sum of x^2 over channels
//            c - (size-1)/2 ..= c + ceil((size-1)/2))^beta

struct Params {
    images: u32,
    channels: u32,
    positions: u32,
    size: u32,
    alpha: f32,
    beta: f32,
    bias: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let p = gid.x;
    if p >= params.positions {
        return;
    }
    let below = (params.size - 1u) / 2u;
    let above = params.size / 2u; // ceil((size - 1) / 2)
    for (var t = gid.y; t < params.images * params.channels; t += groups.y) {
        let c = t % params.channels;
        let image_base = (t - c) * params.positions;
        let lo = c - min(c, below);
        let hi = min(c + above, params.channels - 1u);
        var sum = 0.0;
        var infinite = false;
        for (var j = lo; j <= hi; j++) {
            let v = input[image_base + j * params.positions + p];
            sum += v * v;
            infinite = infinite || (bitcast<u32>(v) & 0x7fffffffu) == 0x7f800000u;
        }
        let x = input[t * params.positions + p];
        var r = x / pow(params.bias + params.alpha / f32(params.size) * sum, params.beta);
        // WGSL's pow of NaN or infinity is implementation-defined (pow(NaN, b) is 0 on
        // lavapipe), so those cases are written out as the twin's powf gives them: a NaN in
        // the window makes NaN; an infinite one makes the divisor inf, so x / inf is 0, or
        // NaN for an infinite x.
        let sum_bits = bitcast<u32>(sum) & 0x7fffffffu;
        if sum_bits > 0x7f800000u {
            r = sum;
        } else if infinite {
            let x_infinite = (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u;
            r = select(0.0, bitcast<f32>(0x7fc00000u | sum_bits), x_infinite);
        }
        out[t * params.positions + p] = r;
    }
}
