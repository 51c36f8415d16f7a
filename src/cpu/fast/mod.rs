//! The throughput-first CPU conv path that [`crate::cpu::CpuExecutor`] runs: the same
//! arithmetic as the `im2col_masked → matmul_tiled` twins, without forming the column
//! matrix, on packed SIMD microkernels ([`crate::cpu::gemm`]), one parallel region per
//! layer. The twins stay the reference it is tested against (`tests/fast_conv.rs`).
//!
//! Which kernel runs is decided once per layer by [`FastConv::new`]:
//! - depthwise (one input channel per group): [`depthwise`], a direct kernel;
//! - at most [`gemv::MAX_COLS`] columns in all (fully connected layers at small batch):
//!   [`gemv`], dot products over row-major weights;
//! - everything else: [`implicit_gemm`].

mod depthwise;
pub(crate) mod elementwise;
mod gemv;
mod implicit_gemm;
mod pack;
pub(crate) mod pool;
mod taps;

use crate::cpu::gemm::Microkernel;
use crate::interp::MapKind;
use crate::layer::ConvLayer;

/// A raw output pointer shared by the tasks of one parallel region, each of which writes a
/// disjoint part.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr(pub *mut f32);
impl SendPtr {
    /// The pointer (a method, so closures capture the whole `Send` wrapper, not the field).
    #[inline]
    pub fn ptr(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: tasks write disjoint elements; the region ends before the buffer is used again.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

/// One conv layer prepared for the fast path: tap tables resolved, weights packed.
#[derive(Debug)]
pub enum FastConv {
    /// Packed implicit GEMM.
    #[allow(private_interfaces)]
    Gemm(implicit_gemm::ImplicitGemm),
    /// Direct depthwise kernel.
    #[allow(private_interfaces)]
    Depthwise(depthwise::Depthwise),
    /// Dot products for a few columns.
    #[allow(private_interfaces)]
    Gemv(gemv::Gemv),
}

impl FastConv {
    /// Prepares `layer` (validated by [`crate::ConvSchedule::new`]) to write its compact
    /// `[B, T, N]` output; the ReLU is fused unless it must follow a barycentric gather.
    pub fn new(layer: &ConvLayer, kern: Microkernel) -> FastConv {
        let relu = layer.relu()
            && !(layer.interpolation_map().kind() == MapKind::Barycentric && !layer.mask().is_dense());
        let cols = layer.geometry().batch * layer.mask().len();
        if depthwise::Depthwise::applies(layer) {
            FastConv::Depthwise(depthwise::Depthwise::new(layer, relu))
        } else if cols <= gemv::MAX_COLS {
            FastConv::Gemv(gemv::Gemv::new(layer, relu))
        } else {
            FastConv::Gemm(implicit_gemm::ImplicitGemm::new(layer, relu, kern))
        }
    }

    /// The kernel family that runs (for benches and profiles).
    pub fn name(&self) -> &'static str {
        match self {
            FastConv::Gemm(_) => "implicit_gemm",
            FastConv::Depthwise(_) => "depthwise",
            FastConv::Gemv(_) => "gemv",
        }
    }

    /// Runs on the layer's input (`[B, C, H, W]`, or `[B, C, N_prev]` when compact) and
    /// writes the compact output `[B, T, N]`.
    ///
    /// # Panics
    /// When `x` or `out` is shorter than the layer's shapes (an internal invariant: the
    /// executor sizes both from the plan).
    #[track_caller]
    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        match self {
            FastConv::Gemm(k) => k.run(x, out),
            FastConv::Depthwise(k) => k.run(x, out),
            FastConv::Gemv(k) => k.run(x, out),
        }
    }
}
