//! The CPU path: one twin per WGSL kernel (same name, same argument order as the shader's
//! bindings), and [`CpuConv`], which runs a [`crate::ConvSchedule`] with them.
//!
//! The twins are the reference every GPU kernel is checked against, and a fast path in
//! their own right: rayon spreads rows and column blocks over cores and the GEMM goes
//! through ndarray's `general_mat_mul`.

mod conv;
mod gather_interp;
mod im2col_masked;
mod matmul_tiled;

pub use conv::CpuConv;
pub use gather_interp::gather_interp;
pub use im2col_masked::im2col_masked;
pub use matmul_tiled::matmul_tiled;
