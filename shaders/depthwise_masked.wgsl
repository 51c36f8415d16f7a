// depthwise_masked: a grouped convolution with one input channel per group (depthwise,
// channel multiplier `channel_mult`), computed directly at the masked output positions:
// no column matrix, one thread per output value of the compact [images, out_channels, n_pos]
// result.
//
// Bindings (CPU twin `cpu::depthwise_masked` takes them in this order):
//   0 params   uniform  Params (Rust: `params::DepthwiseMaskedParams`)
//   1 input    storage  f32 [images, channels, in_plane]   dense (in_plane = H*W) or compact
//   2 mask     storage  u32 [n_pos]                        sorted output positions y*W'+x
//   3 in_map   storage  u32 [H*W*words]                    read only when in_map_kind != 0 (read_mapped.wgsl)
//   4 weights  storage  f32 [out_channels, lda]            kh*kw taps per channel, zero-padded
//   5 bias     storage  f32 [out_channels]
//   6 out      storage  f32 [images, out_channels, n_pos]
// Dispatch (`gpu::kernels::depthwise_masked`): 1-D over images*out_channels*n_pos
// (`kernels::linear_workgroups`).
//
// Output channel t reads input channel t / channel_mult. Padding taps read 0. The taps are
// summed in (ky, kx) order from 0, then the bias is added, as the GEMM path does.

struct Params {
    in_h: u32,
    in_w: u32,
    in_plane: u32,
    channels: u32,
    out_channels: u32,
    channel_mult: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    dilation_h: u32,
    dilation_w: u32,
    out_w: u32,
    n_pos: u32,
    images: u32,
    lda: u32,
    relu: u32,
    in_map_kind: u32,
    relu_cap: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<u32>;
@group(0) @binding(3) var<storage, read> in_map: array<u32>;
@group(0) @binding(4) var<storage, read> weights: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * 256u;
    let len = params.images * params.out_channels * params.n_pos;
    if i >= len {
        return;
    }
    let entry = i % params.n_pos;
    let plane = i / params.n_pos; // image * out_channels + t
    let t = plane % params.out_channels;
    let image = plane / params.out_channels;
    let base = (image * params.channels + t / params.channel_mult) * params.in_plane;
    let pos = mask[entry];
    let y0 = i32((pos / params.out_w) * params.stride_h) - i32(params.pad_top);
    let x0 = i32((pos % params.out_w) * params.stride_w) - i32(params.pad_left);
    let w0 = t * params.lda;
    var acc = 0.0;
    for (var ky = 0u; ky < params.kernel_h; ky++) {
        let yi = y0 + i32(ky * params.dilation_h);
        if yi < 0 || yi >= i32(params.in_h) {
            continue;
        }
        for (var kx = 0u; kx < params.kernel_w; kx++) {
            let xi = x0 + i32(kx * params.dilation_w);
            if xi < 0 || xi >= i32(params.in_w) {
                continue;
            }
            let s = u32(yi) * params.in_w + u32(xi);
            var v: f32;
            if params.in_map_kind != 0u {
                v = read_mapped(params.in_map_kind, base, s);
            } else {
                v = input[base + s];
            }
            acc = fma(weights[w0 + ky * params.kernel_w + kx], v, acc);
        }
    }
    var r = acc + bias[t];
    if params.relu != 0u {
        r = relu_keep_nan(r);
        if params.relu_cap > 0.0 {
            r = cap_keep_nan(r, params.relu_cap);
        }
    }
    out[i] = r;
}
