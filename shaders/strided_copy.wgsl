// strided_copy: per image, output element i (row-major over the axes d0..d7) is input
// element offset + sum(i_t * s_t); images are in_image (0: every image reads the same
// block, a constant) and out_image elements apart. Transposes, slices with steps,
// gathers of one index and broadcasts are all such views.
//
// Bindings (CPU twin `cpu::strided_copy` takes them in this order):
//   0 params  uniform  Params (Rust: `params::StridedCopyParams`)
//   1 input   storage  f32 [images, in_image] (or [in_image-less block])
//   2 out     storage  f32 [images, out_image]
// Dispatch (`gpu::kernels::strided_copy`): 1-D over images * out_image
// (`kernels::linear_workgroups`), one thread per output element.

struct Params {
    images: u32,
    in_image: u32,
    out_image: u32,
    offset: u32,
    d0: u32,
    d1: u32,
    d2: u32,
    d3: u32,
    d4: u32,
    d5: u32,
    d6: u32,
    d7: u32,
    s0: u32,
    s1: u32,
    s2: u32,
    s3: u32,
    s4: u32,
    s5: u32,
    s6: u32,
    s7: u32,
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
    if i >= params.images * params.out_image {
        return;
    }
    let img = i / params.out_image;
    var rest = i % params.out_image;
    var at = params.offset;
    at += (rest % params.d7) * params.s7; rest /= params.d7;
    at += (rest % params.d6) * params.s6; rest /= params.d6;
    at += (rest % params.d5) * params.s5; rest /= params.d5;
    at += (rest % params.d4) * params.s4; rest /= params.d4;
    at += (rest % params.d3) * params.s3; rest /= params.d3;
    at += (rest % params.d2) * params.s2; rest /= params.d2;
    at += (rest % params.d1) * params.s1; rest /= params.d1;
    at += (rest % params.d0) * params.s0;
    out[i] = input[img * params.in_image + at];
}
