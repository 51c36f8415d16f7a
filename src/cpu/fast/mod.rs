//! The throughput-first CPU conv path that [`crate::cpu::CpuExecutor`] runs: the same
//! arithmetic as the `im2col_masked → matmul_tiled` twins, without forming the column
//! matrix, on packed SIMD microkernels ([`crate::cpu::gemm`]), one parallel region per
//! layer. The twins stay the reference it is tested against (`tests/fast_conv.rs`).
//!
//! Which kernel runs is decided once per layer by [`FastConv::new`]:
//! - depthwise (one input channel per group): [`depthwise`], a direct kernel;
//! - at most [`gemv::MAX_COLS`] columns in all (fully connected layers at small batch):
//!   [`gemv`], dot products over row-major weights;
//! - a compact input (reads through the previous layer's map) on an AVX-512 CPU, when the
//!   layer has enough work per input value: [`hwc_conv`], channel-vectorised over a
//!   channel-last copy of the input;
//! - everything else: [`implicit_gemm`].

mod depthwise;
pub(crate) mod elementwise;
mod gemv;
mod hwc_conv;
mod implicit_gemm;
mod pack;
pub(crate) mod pool;
mod taps;

use crate::cpu::gemm::Microkernel;
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
    /// Channel-vectorised conv over a channel-last copy of a compact input.
    #[allow(private_interfaces)]
    Hwc(hwc_conv::HwcConv),
}

impl FastConv {
    /// Prepares `layer` (validated by [`crate::ConvSchedule::new`]) to write its compact
    /// `[B, T, N]` output; the ReLU is fused unless it must follow a barycentric gather.
    pub fn new(layer: &ConvLayer, kern: Microkernel) -> FastConv {
        let relu = layer.relu() && !layer.relu_after_gather();
        let cols = layer.geometry().batch * layer.mask().len();
        if depthwise::Depthwise::applies(layer) {
            FastConv::Depthwise(depthwise::Depthwise::new(layer, relu))
        } else if cols <= gemv::MAX_COLS {
            FastConv::Gemv(gemv::Gemv::new(layer, relu))
        } else if kern.name == "avx512" && hwc_pays_off(layer, kern.nr) && hwc_conv::HwcConv::available(layer)
        {
            FastConv::Hwc(hwc_conv::HwcConv::new(layer, relu))
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
            FastConv::Hwc(_) => "hwc_conv",
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
            FastConv::Hwc(k) => k.run(x, out),
        }
    }
}

/// Whether the HWC path pays off: the input is compact (the implicit GEMM would gather
/// every read through the map) and the layer has enough work per input value to amortise
/// the transposition (`PERFORATE_HWC=0` turns the path off, `PERFORATE_HWC=1` on wherever it is
/// available: comparisons only).
fn hwc_pays_off(layer: &ConvLayer, nr: usize) -> bool {
    if std::env::var("PERFORATE_HWC").is_ok_and(|v| v == "0") {
        return false;
    }
    if std::env::var("PERFORATE_HWC").is_ok_and(|v| v == "1") {
        return true;
    }
    // Measured on ResNet-18 at q = 1/2: a clear win where the input is compact (the implicit
    // GEMM gathers every read through the map); no better for perforated outputs or strides
    // over a dense input, where the implicit GEMM's gathers read a dense plane.
    // A dense output on a compact input reads the implicit GEMM's per-task expansion
    // regularly: faster there for few output channels, whose vectors here are short, when
    // the GEMM's tiles fill (fashion_resnet b64, 16 channels at 28x28: 1.82 -> 1.59 ms; 64
    // channels at 7x7: equal); slower for many channels (ResNet-18 b1, 128 at 28x28: 0.89 ms
    // on this path, 0.96 expanded) and where an image's positions leave a tile mostly empty
    // (256 at 14x14: 0.88 vs 1.08; 512 at 7x7: 1.08 vs 1.35).
    let g = layer.geometry();
    let expands = g.out_channels_per_group() < 64
        && implicit_gemm::expansion_pays_off(layer)
        && implicit_gemm::fills_tiles(layer, nr);
    let compact_input = layer.input_map().is_some() && !expands;
    // The channel-last copy costs about ten cycles per input value, a multiply-add 1/32:
    // the layer must do a few hundred multiply-adds per input value, and enough per tap.
    let macs = g.out_channels * layer.mask().len() * g.kernel_h * g.kernel_w * g.in_channels_per_group();
    compact_input && g.in_channels_per_group() >= 8 && macs >= 256 * g.in_channels * layer.input_plane()
}
