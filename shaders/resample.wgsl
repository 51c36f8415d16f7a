// resample: padding, cropping, slicing and resizing of the spatial axes through explicit
// separable taps (computed on the CPU when the model is imported):
//   out[p, y, x] = sum_i sum_j wr[y, i] * wc[x, j] * v(r[y, i], c[x, j])
// over `taps` row taps of output row y and `taps` column taps of output column x; v is
// the input value, or params.fill when either index is 0xffffffff. A tap of weight 0
// contributes nothing (NaN and infinity there included).
//
// Bindings (CPU twin `cpu::resample` takes them in this order):
//   0 params   uniform  Params (Rust: `params::ResampleParams`)
//   1 input    storage  f32 [planes · in_h · in_w]
//   2 index    storage  u32 [(out_h + out_w) · taps]: row taps, then column taps
//   3 weight   storage  f32 [(out_h + out_w) · taps], in the same order
//   4 out      storage  f32 [planes · out_h · out_w]
// Dispatch (`gpu::kernels::resample`): 1-D over the output (`kernels::linear_workgroups`).

struct Params {
    planes: u32,
    in_h: u32,
    in_w: u32,
    out_h: u32,
    out_w: u32,
    taps: u32,
    fill: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> index: array<u32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const FILL: u32 = 0xffffffffu;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let i = gid.x + gid.y * groups.x * 256u;
    let plane_out = params.out_h * params.out_w;
    if i >= params.planes * plane_out {
        return;
    }
    let x = i % params.out_w;
    let y = (i / params.out_w) % params.out_h;
    let base = (i / plane_out) * params.in_h * params.in_w;
    let cols = params.out_h * params.taps;
    var acc = 0.0;
    for (var a = 0u; a < params.taps; a++) {
        let wr = weight[y * params.taps + a];
        if wr == 0.0 {
            continue;
        }
        let r = index[y * params.taps + a];
        for (var b = 0u; b < params.taps; b++) {
            let wc = weight[cols + x * params.taps + b];
            if wc == 0.0 {
                continue;
            }
            let c = index[cols + x * params.taps + b];
            var v = params.fill;
            if r != FILL && c != FILL {
                v = input[base + r * params.in_w + c];
            }
            acc += wr * wc * v;
        }
    }
    out[i] = acc;
}
