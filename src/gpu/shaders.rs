//! The WGSL sources, embedded at compile time, one per kernel.

use crate::error::{Error, Result};

/// The files of `shaders/` that are not kernels but snippets appended to kernels.
pub const SNIPPETS: [&str; 3] = ["read_mapped", "keep_nan", "gemm_tiles"];

/// Every compute kernel of the crate. The label is the shader file stem, the CPU twin's
/// name, the pipeline label and the benchmark id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// `shaders/im2col_masked.wgsl`
    Im2colMasked,
    /// `shaders/matmul_tiled.wgsl`
    MatmulTiled,
    /// `shaders/depthwise_masked.wgsl`
    DepthwiseMasked,
    /// `shaders/matmul_narrow.wgsl`
    MatmulNarrow,
    /// `shaders/gather_interp.wgsl`
    GatherInterp,
    /// `shaders/pool2d.wgsl`
    Pool2d,
    /// `shaders/lrn.wgsl`
    Lrn,
    /// `shaders/relu.wgsl`
    Relu,
    /// `shaders/add.wgsl`
    Add,
    /// `shaders/channel_affine.wgsl`
    ChannelAffine,
    /// `shaders/softmax.wgsl`
    Softmax,
    /// `shaders/clip.wgsl`
    Clip,
    /// `shaders/unary.wgsl`
    Unary,
    /// `shaders/binary.wgsl`
    Binary,
    /// `shaders/select_channels.wgsl`
    SelectChannels,
    /// `shaders/reduce_channels.wgsl`
    ReduceChannels,
    /// `shaders/resample.wgsl`
    Resample,
    /// `shaders/select_elements.wgsl`
    SelectElements,
    /// `shaders/conv_fused.wgsl`
    ConvFused,
    /// `shaders/strided_copy.wgsl`
    StridedCopy,
    /// `shaders/matmul_strided.wgsl`
    MatmulStrided,
}

impl Kernel {
    /// All kernels.
    pub const ALL: [Kernel; 21] = [
        Kernel::Im2colMasked,
        Kernel::MatmulTiled,
        Kernel::DepthwiseMasked,
        Kernel::MatmulNarrow,
        Kernel::GatherInterp,
        Kernel::Pool2d,
        Kernel::Lrn,
        Kernel::Relu,
        Kernel::Add,
        Kernel::ChannelAffine,
        Kernel::Softmax,
        Kernel::Clip,
        Kernel::Unary,
        Kernel::Binary,
        Kernel::SelectChannels,
        Kernel::ReduceChannels,
        Kernel::Resample,
        Kernel::SelectElements,
        Kernel::ConvFused,
        Kernel::StridedCopy,
        Kernel::MatmulStrided,
    ];

    /// The kernel's one name.
    pub fn label(self) -> &'static str {
        match self {
            Kernel::Im2colMasked => "im2col_masked",
            Kernel::MatmulTiled => "matmul_tiled",
            Kernel::DepthwiseMasked => "depthwise_masked",
            Kernel::MatmulNarrow => "matmul_narrow",
            Kernel::GatherInterp => "gather_interp",
            Kernel::Pool2d => "pool2d",
            Kernel::Lrn => "lrn",
            Kernel::Relu => "relu",
            Kernel::Add => "add",
            Kernel::ChannelAffine => "channel_affine",
            Kernel::Softmax => "softmax",
            Kernel::Clip => "clip",
            Kernel::Unary => "unary",
            Kernel::Binary => "binary",
            Kernel::SelectChannels => "select_channels",
            Kernel::ReduceChannels => "reduce_channels",
            Kernel::Resample => "resample",
            Kernel::SelectElements => "select_elements",
            Kernel::StridedCopy => "strided_copy",
            Kernel::MatmulStrided => "matmul_strided",
            Kernel::ConvFused => "conv_fused",
        }
    }

    /// The WGSL source (kernels that read through an interpolation map get
    /// `shaders/read_mapped.wgsl` appended, kernels with a ReLU or a max
    /// `shaders/keep_nan.wgsl`).
    pub fn source(self) -> &'static str {
        match self {
            Kernel::Im2colMasked => concat!(
                include_str!("../../shaders/im2col_masked.wgsl"),
                include_str!("../../shaders/read_mapped.wgsl")
            ),
            Kernel::MatmulTiled => concat!(
                include_str!("../../shaders/matmul_tiled.wgsl"),
                include_str!("../../shaders/gemm_tiles.wgsl"),
                include_str!("../../shaders/keep_nan.wgsl")
            ),
            Kernel::DepthwiseMasked => concat!(
                include_str!("../../shaders/depthwise_masked.wgsl"),
                include_str!("../../shaders/read_mapped.wgsl"),
                include_str!("../../shaders/keep_nan.wgsl")
            ),
            Kernel::MatmulNarrow => concat!(
                include_str!("../../shaders/matmul_narrow.wgsl"),
                include_str!("../../shaders/keep_nan.wgsl")
            ),
            Kernel::GatherInterp => concat!(
                include_str!("../../shaders/gather_interp.wgsl"),
                include_str!("../../shaders/read_mapped.wgsl"),
                include_str!("../../shaders/keep_nan.wgsl")
            ),
            Kernel::Pool2d => concat!(
                include_str!("../../shaders/pool2d.wgsl"),
                include_str!("../../shaders/read_mapped.wgsl"),
                include_str!("../../shaders/keep_nan.wgsl")
            ),
            Kernel::Lrn => include_str!("../../shaders/lrn.wgsl"),
            Kernel::Relu => {
                concat!(include_str!("../../shaders/relu.wgsl"), include_str!("../../shaders/keep_nan.wgsl"))
            }
            Kernel::Add => {
                concat!(include_str!("../../shaders/add.wgsl"), include_str!("../../shaders/keep_nan.wgsl"))
            }
            Kernel::ChannelAffine => concat!(
                include_str!("../../shaders/channel_affine.wgsl"),
                include_str!("../../shaders/keep_nan.wgsl")
            ),
            Kernel::Softmax => include_str!("../../shaders/softmax.wgsl"),
            Kernel::Clip => {
                concat!(include_str!("../../shaders/clip.wgsl"), include_str!("../../shaders/keep_nan.wgsl"))
            }
            Kernel::Unary => {
                concat!(include_str!("../../shaders/unary.wgsl"), include_str!("../../shaders/keep_nan.wgsl"))
            }
            Kernel::Binary => concat!(
                include_str!("../../shaders/binary.wgsl"),
                include_str!("../../shaders/keep_nan.wgsl")
            ),
            Kernel::SelectChannels => include_str!("../../shaders/select_channels.wgsl"),
            Kernel::ReduceChannels => concat!(
                include_str!("../../shaders/reduce_channels.wgsl"),
                include_str!("../../shaders/keep_nan.wgsl")
            ),
            Kernel::Resample => include_str!("../../shaders/resample.wgsl"),
            Kernel::SelectElements => include_str!("../../shaders/select_elements.wgsl"),
            Kernel::StridedCopy => include_str!("../../shaders/strided_copy.wgsl"),
            Kernel::MatmulStrided => include_str!("../../shaders/matmul_strided.wgsl"),
            Kernel::ConvFused => concat!(
                include_str!("../../shaders/conv_fused.wgsl"),
                include_str!("../../shaders/gemm_tiles.wgsl"),
                include_str!("../../shaders/read_mapped.wgsl"),
                include_str!("../../shaders/keep_nan.wgsl")
            ),
        }
    }

    /// The shared WGSL snippets appended to this kernel's own file (by file stem).
    pub fn snippets(self) -> &'static [&'static str] {
        match self {
            Kernel::Im2colMasked => &["read_mapped"],
            Kernel::MatmulTiled => &["gemm_tiles", "keep_nan"],
            Kernel::ConvFused => &["gemm_tiles", "read_mapped", "keep_nan"],
            Kernel::DepthwiseMasked | Kernel::GatherInterp | Kernel::Pool2d => &["read_mapped", "keep_nan"],
            Kernel::Add
            | Kernel::Binary
            | Kernel::ChannelAffine
            | Kernel::Clip
            | Kernel::MatmulNarrow
            | Kernel::ReduceChannels
            | Kernel::Relu
            | Kernel::Unary => &["keep_nan"],
            _ => &[],
        }
    }

    /// Parses and validates the shader with naga (no device needed).
    pub fn validate(self) -> Result<naga::Module> {
        let module = naga::front::wgsl::parse_str(self.source())
            .map_err(|e| Error::Gpu(format!("{}.wgsl: {}", self.label(), e.emit_to_string(self.source()))))?;
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::all())
            .validate(&module)
            .map_err(|e| Error::Gpu(format!("{}.wgsl: {}", self.label(), e.emit_to_string(self.source()))))?;
        Ok(module)
    }
}
