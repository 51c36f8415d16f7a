//! Every shader parses and validates with naga, and each kernel's WGSL `Params` struct
//! mirrors its Rust twin: same size, same field names in the same order, 4-byte fields
//! (u32, or f32 where a kernel needs a float constant).

use perforate::gpu::{Kernel, SNIPPETS};
use perforate::params::{DepthwiseMaskedParams, GatherInterpParams, Im2colMaskedParams, MatmulTiledParams};

fn params_struct(kernel: Kernel) -> (u32, Vec<(String, u32)>) {
    let module = kernel.validate().unwrap_or_else(|e| panic!("{e}"));
    let mut layouter = naga::proc::Layouter::default();
    layouter.update(module.to_ctx()).unwrap();
    let (handle, ty) = module
        .types
        .iter()
        .find(|(_, t)| t.name.as_deref() == Some("Params"))
        .unwrap_or_else(|| panic!("{} has no struct Params", kernel.label()));
    let naga::TypeInner::Struct { members, .. } = &ty.inner else { panic!("Params is not a struct") };
    let fields = members.iter().map(|m| (m.name.clone().unwrap_or_default(), m.offset)).collect();
    (layouter[handle].size, fields)
}

fn check(kernel: Kernel, rust_size: usize, rust_fields: &[&str]) {
    let (size, fields) = params_struct(kernel);
    assert_eq!(size as usize, rust_size, "{}: WGSL Params size", kernel.label());
    let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, rust_fields, "{}: field names", kernel.label());
    for (i, (name, offset)) in fields.iter().enumerate() {
        assert_eq!(*offset as usize, 4 * i, "{}: offset of {name}", kernel.label());
    }
    assert_eq!(rust_size % 16, 0, "uniform blocks are a multiple of 16 bytes");
    assert_eq!(rust_size, 4 * rust_fields.len(), "Rust Params are all 4-byte fields");
}

#[test]
fn every_shader_file_is_a_validated_kernel() {
    let mut files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".wgsl"))
        .collect();
    files.sort();
    let mut kernels: Vec<String> = Kernel::ALL.iter().map(|k| format!("{}.wgsl", k.label())).collect();
    kernels.extend(SNIPPETS.iter().map(|s| format!("{s}.wgsl")));
    kernels.sort();
    assert_eq!(files, kernels, "every file in shaders/ is a kernel or a snippet, and vice versa");
    for kernel in Kernel::ALL {
        kernel.validate().unwrap_or_else(|e| panic!("{e}"));
        let read = |stem: &str| {
            std::fs::read_to_string(format!("{}/shaders/{stem}.wgsl", env!("CARGO_MANIFEST_DIR"))).unwrap()
        };
        let mut on_disk = read(kernel.label());
        kernel.snippets().iter().for_each(|s| on_disk.push_str(&read(s)));
        assert_eq!(on_disk, kernel.source(), "embedded source is the file and its snippets");
    }
}

#[test]
fn im2col_masked_params_mirror() {
    check(
        Kernel::Im2colMasked,
        std::mem::size_of::<Im2colMaskedParams>(),
        &[
            "in_h",
            "in_w",
            "in_plane",
            "channels",
            "channel_offset",
            "group_channels",
            "kernel_h",
            "kernel_w",
            "stride_h",
            "stride_w",
            "pad_top",
            "pad_left",
            "dilation_h",
            "dilation_w",
            "out_w",
            "n_pos",
            "col_start",
            "cols",
            "ldb",
            "in_map_kind",
        ],
    );
}

/// Fields of `MatmulTiledParams`, the Params of both matmul kernels.
const MATMUL_FIELDS: [&str; 12] = [
    "m",
    "n",
    "k",
    "lda",
    "ldb",
    "a_row_offset",
    "relu",
    "col_start",
    "n_pos",
    "out_channels",
    "out_channel_offset",
    "relu_cap",
];

#[test]
fn depthwise_masked_params_mirror() {
    check(
        Kernel::DepthwiseMasked,
        std::mem::size_of::<DepthwiseMaskedParams>(),
        &[
            "in_h",
            "in_w",
            "in_plane",
            "channels",
            "out_channels",
            "channel_mult",
            "kernel_h",
            "kernel_w",
            "stride_h",
            "stride_w",
            "pad_top",
            "pad_left",
            "dilation_h",
            "dilation_w",
            "out_w",
            "n_pos",
            "images",
            "lda",
            "relu",
            "in_map_kind",
            "relu_cap",
            "_pad0",
            "_pad1",
            "_pad2",
        ],
    );
}

#[test]
fn matmul_tiled_params_mirror() {
    check(Kernel::MatmulTiled, std::mem::size_of::<MatmulTiledParams>(), &MATMUL_FIELDS);
}

#[test]
fn matmul_narrow_shares_the_matmul_params() {
    check(Kernel::MatmulNarrow, std::mem::size_of::<MatmulTiledParams>(), &MATMUL_FIELDS);
}

#[test]
fn gather_interp_params_mirror() {
    check(
        Kernel::GatherInterp,
        std::mem::size_of::<GatherInterpParams>(),
        &["n_pos", "plane", "planes", "map_kind", "relu", "residual", "_pad0", "_pad1"],
    );
}

#[test]
fn network_kernel_params_mirror() {
    use perforate::params::*;
    check(
        Kernel::Pool2d,
        std::mem::size_of::<Pool2dParams>(),
        &[
            "planes",
            "in_h",
            "in_w",
            "in_plane",
            "out_h",
            "out_w",
            "kernel_h",
            "kernel_w",
            "stride_h",
            "stride_w",
            "pad_top",
            "pad_left",
            "pad_bottom",
            "pad_right",
            "mode",
            "count_include_pad",
            "in_map_kind",
            "_pad0",
            "_pad1",
            "_pad2",
        ],
    );
    check(
        Kernel::Lrn,
        std::mem::size_of::<LrnParams>(),
        &["images", "channels", "positions", "size", "alpha", "beta", "bias", "_pad"],
    );
    check(Kernel::Relu, std::mem::size_of::<ReluParams>(), &["len", "_pad0", "_pad1", "_pad2"]);
    check(Kernel::Add, std::mem::size_of::<AddParams>(), &["len", "relu", "_pad0", "_pad1"]);
    check(
        Kernel::ChannelAffine,
        std::mem::size_of::<ChannelAffineParams>(),
        &["len", "channels", "plane", "relu"],
    );
    check(Kernel::Softmax, std::mem::size_of::<SoftmaxParams>(), &["rows", "cols", "plane", "_pad1"]);
    check(Kernel::Clip, std::mem::size_of::<ClipParams>(), &["len", "_pad", "min", "max"]);
    check(Kernel::Unary, std::mem::size_of::<UnaryParams>(), &["len", "op", "alpha", "beta"]);
    check(
        Kernel::Binary,
        std::mem::size_of::<BinaryParams>(),
        &["len", "op", "plane", "broadcast", "channels", "_pad0", "_pad1", "_pad2"],
    );
    check(
        Kernel::ReduceChannels,
        std::mem::size_of::<ReduceChannelsParams>(),
        &["images", "channels", "plane", "op"],
    );
    check(
        Kernel::SelectChannels,
        std::mem::size_of::<SelectChannelsParams>(),
        &["images", "in_channels", "out_channels", "plane"],
    );
    check(
        Kernel::Resample,
        std::mem::size_of::<ResampleParams>(),
        &["planes", "in_h", "in_w", "out_h", "out_w", "taps", "fill", "_pad0"],
    );
    check(
        Kernel::ConvFused,
        std::mem::size_of::<ConvFusedParams>(),
        &[
            "m",
            "n",
            "k",
            "lda",
            "a_row_offset",
            "relu",
            "col_start",
            "n_pos",
            "out_channels",
            "out_channel_offset",
            "relu_cap",
            "in_h",
            "in_w",
            "in_plane",
            "channels",
            "channel_offset",
            "kernel_h",
            "kernel_w",
            "stride_h",
            "stride_w",
            "pad_top",
            "pad_left",
            "dilation_h",
            "dilation_w",
            "out_w",
            "in_map_kind",
            "_pad0",
            "_pad1",
        ],
    );
    check(
        Kernel::SelectElements,
        std::mem::size_of::<SelectElementsParams>(),
        &["len", "_pad0", "_pad1", "_pad2"],
    );
    let axes: Vec<String> = (0..8).map(|i| format!("d{i}")).chain((0..8).map(|i| format!("s{i}"))).collect();
    let mut fields = vec!["images", "in_image", "out_image", "offset"];
    fields.extend(axes.iter().map(String::as_str));
    check(Kernel::StridedCopy, std::mem::size_of::<StridedCopyParams>(), &fields);
    check(
        Kernel::MatmulStrided,
        std::mem::size_of::<MatmulStridedParams>(),
        &[
            "images",
            "a_image",
            "b_image",
            "out_image",
            "b0",
            "b1",
            "m",
            "k",
            "n",
            "_pad0",
            "_pad1",
            "_pad2",
            "a_b0",
            "a_b1",
            "a_m",
            "a_k",
            "b_b0",
            "b_b1",
            "b_k",
            "b_n",
            "o_b0",
            "o_b1",
            "o_m",
            "o_n",
        ],
    );
}
