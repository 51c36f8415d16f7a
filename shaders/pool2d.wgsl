// pool2d: max or average pooling, reading a compact input through its interpolation map.
//
// Bindings (CPU twin `cpu::pool2d` takes them in this order):
//   0 params  uniform  Params (Rust: `params::Pool2dParams`)
//   1 input   storage  f32 [planes, in_plane]   dense (in_plane = H*W) or compact
//   2 in_map  storage  u32 [H*W*words]          read only when in_map_kind != 0 (read_mapped.wgsl)
//   3 out     storage  f32 [planes, out_h*out_w]
// Dispatch (`gpu::kernels::pool2d`): x = ceil(out_h*out_w / 256) workgroups, one thread per
// output position; y = min(planes, 65535) workgroups looping over planes with stride y.
//
// Windows are clipped to the padded input for the count_include_pad divisor and to the
// input for the values (PyTorch / ONNX Runtime semantics). A read through the map keeps
// duplicates: average pooling then equals pooling of the interpolated map, and max pooling
// is unaffected by them.

struct Params {
    planes: u32,
    in_h: u32,
    in_w: u32,
    in_plane: u32,
    out_h: u32,
    out_w: u32,
    kernel_h: u32,
    kernel_w: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    pad_bottom: u32,
    pad_right: u32,
    mode: u32,
    count_include_pad: u32,
    in_map_kind: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> in_map: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let out_plane = params.out_h * params.out_w;
    let p = gid.x;
    if p >= out_plane {
        return;
    }
    // Window bounds in padded coordinates (offset by the top/left padding).
    let hs = (p / params.out_w) * params.stride_h;
    let ws = (p % params.out_w) * params.stride_w;
    let he_pad = min(hs + params.kernel_h, params.in_h + params.pad_top + params.pad_bottom);
    let we_pad = min(ws + params.kernel_w, params.in_w + params.pad_left + params.pad_right);
    let h0 = max(hs, params.pad_top);
    let w0 = max(ws, params.pad_left);
    let h1 = min(he_pad, params.in_h + params.pad_top);
    let w1 = min(we_pad, params.in_w + params.pad_left);
    var divisor = f32((h1 - min(h0, h1)) * (w1 - min(w0, w1)));
    if params.count_include_pad != 0u {
        divisor = f32((he_pad - hs) * (we_pad - ws));
    }

    for (var t = gid.y; t < params.planes; t += groups.y) {
        let base = t * params.in_plane;
        var acc = 0.0;
        var best = neg_infinity(0u);
        for (var y = h0; y < h1; y++) {
            for (var x = w0; x < w1; x++) {
                let s = (y - params.pad_top) * params.in_w + (x - params.pad_left);
                var v = 0.0;
                if params.in_map_kind != 0u {
                    v = read_mapped(params.in_map_kind, base, s);
                } else {
                    v = input[base + s];
                }
                acc += v;
                best = max_keep_nan(best, v);
            }
        }
        var result = best;
        if params.mode == 1u {
            result = acc / divisor;
        }
        out[t * out_plane + p] = result;
    }
}
