// im2col_masked: the column matrix of one group for one chunk of masked output positions.
//
// Bindings (CPU twin `cpu::im2col_masked` takes them in this order):
//   0 params  uniform  Params (Rust: `params::Im2colMaskedParams`)
//   1 input   storage  f32 [batch, channels, in_plane]   dense (in_plane = H*W) or compact
//   2 mask    storage  u32 [n_pos]                       sorted output positions y*W'+x
//   3 in_map  storage  u32 [H*W*words]                   read only when in_map_kind != 0 (read_mapped.wgsl)
//   4 col     storage  f32 [rows, ldb]                   rows = group_channels*kh*kw
// Dispatch (`gpu::kernels::im2col_masked`): x = ceil(ldb / 256) workgroups, one thread
// per column; y = min(rows, 65535) workgroups, each looping over rows with stride y.
//
// Column j is global column g = col_start + j: image g / n_pos, mask entry g % n_pos.
// Out-of-bounds taps (padding) read 0; columns cols..ldb are written as 0.

struct Params {
    in_h: u32,
    in_w: u32,
    in_plane: u32,
    channels: u32,
    channel_offset: u32,
    group_channels: u32,
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
    col_start: u32,
    cols: u32,
    ldb: u32,
    in_map_kind: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> mask: array<u32>;
@group(0) @binding(3) var<storage, read> in_map: array<u32>;
@group(0) @binding(4) var<storage, read_write> col: array<f32>;

@compute @workgroup_size(256)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let j = gid.x;
    if j >= params.ldb {
        return;
    }
    let khw = params.kernel_h * params.kernel_w;
    let rows = params.group_channels * khw;
    let valid = j < params.cols;

    var image_base = 0u;
    var y0 = 0i;
    var x0 = 0i;
    if valid {
        let global = params.col_start + j;
        let pos = mask[global % params.n_pos];
        image_base = (global / params.n_pos) * params.channels * params.in_plane;
        y0 = i32((pos / params.out_w) * params.stride_h) - i32(params.pad_top);
        x0 = i32((pos % params.out_w) * params.stride_w) - i32(params.pad_left);
    }

    for (var r = gid.y; r < rows; r += groups.y) {
        var v = 0.0;
        if valid {
            let ci = r / khw;
            let c = r % khw;
            let yi = y0 + i32((c / params.kernel_w) * params.dilation_h);
            let xi = x0 + i32((c % params.kernel_w) * params.dilation_w);
            if yi >= 0 && yi < i32(params.in_h) && xi >= 0 && xi < i32(params.in_w) {
                let s = u32(yi) * params.in_w + u32(xi);
                let base = image_base + (params.channel_offset + ci) * params.in_plane;
                if params.in_map_kind != 0u {
                    v = read_mapped(params.in_map_kind, base, s);
                } else {
                    v = input[base + s];
                }
            }
        }
        col[r * params.ldb + j] = v;
    }
}
