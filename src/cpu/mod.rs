//! The CPU path: one twin per WGSL kernel (same name, same argument order as the shader's
//! bindings), and [`CpuConv`], which runs a [`crate::ConvSchedule`] with them.
//!
//! The twins are the reference every GPU kernel is checked against, and a fast path in
//! their own right: rayon spreads rows and column blocks over cores and the GEMM goes
//! through ndarray's `general_mat_mul`.

mod add;
mod binary;
mod channel_affine;
mod clip;
mod conv;
mod conv_fused;
mod depthwise_masked;
pub(crate) mod fast;
mod gather_interp;
pub mod gemm;
mod im2col_masked;
mod lrn;
mod matmul_narrow;
pub(crate) mod matmul_strided;
mod matmul_tiled;
pub mod nan;
mod network;
pub(crate) use network::spinning;
pub(crate) mod pool2d;
mod read_mapped;
mod reduce_channels;
mod relu;
mod resample;
mod select_channels;
mod select_elements;
mod softmax;
pub(crate) mod step;
mod strided_copy;
mod unary;

/// Element-wise and pooling steps over fewer elements than this run on the calling thread
/// (rayon's `with_min_len`): at batch 1 a parallel region costs more than the work.
pub(crate) const MIN_PARALLEL_ELEMENTS: usize = 1 << 15;

pub use add::add;
pub use binary::binary;
pub use channel_affine::channel_affine;
pub use clip::clip;
pub use conv::CpuConv;
pub use conv_fused::conv_fused;
pub use depthwise_masked::depthwise_masked;
pub use fast::FastConv;
pub use gather_interp::gather_interp;
pub use im2col_masked::im2col_masked;
pub use lrn::lrn;
pub use matmul_narrow::matmul_narrow;
pub use matmul_strided::matmul_strided;
pub use matmul_tiled::matmul_tiled;
pub use network::CpuExecutor;
pub use pool2d::pool2d;
pub use read_mapped::read_mapped;
pub use reduce_channels::reduce_channels;
pub use relu::relu;
pub use resample::resample;
pub use select_channels::select_channels;
pub use select_elements::select_elements;
pub use softmax::softmax;
pub use strided_copy::strided_copy;
pub use unary::unary;
