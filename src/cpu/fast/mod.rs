//! The throughput-first CPU conv path that [`crate::cpu::CpuExecutor`] runs: the same
//! arithmetic as the `im2col_masked → matmul_tiled` twins, without forming the column
//! matrix, on packed SIMD microkernels ([`crate::cpu::gemm`]), one parallel region per
//! layer. The twins stay the reference it is tested against (`tests/fast_conv.rs`).
//!
//! Which kernel runs is decided once per layer by [`FastConv::new`]:
//! - depthwise (one input channel per group): [`depthwise`], a direct kernel;
//! - at most [`gemv::MAX_COLS`] columns in all (fully connected layers at small batch):
//!   [`gemv`], dot products over row-major weights;
//! - a 1x1 conv: [`pointwise`], the product read from the input planes (or a gathered
//!   copy of their columns) and written to the output planes in place (on AVX2 by the
//!   batch, plane, stride and weight-size rule of `pointwise_pays_off`);
//! - on an AVX-512 CPU, a dense conv of at most 4 input channels (first layers):
//!   [`row_conv`], positions vectorised along output rows of a padded, phase-split copy;
//! - on an AVX-512 CPU, a spatial conv with a perforated output or a compact input (where
//!   the implicit GEMM would gather its B values), or a dense one on a small plane:
//!   [`hwc_conv`], channel-vectorised over a channel-last copy of the input (see
//!   `hwc_pays_off` for the measured rule);
//! - everything else: [`implicit_gemm`] (which expands a compact input per task when its
//!   output is dense, so its tiles read regularly).

mod depthwise;
pub(crate) mod elementwise;
mod gemv;
mod hwc_conv;
pub(crate) use hwc_conv::to_channel_last;
mod implicit_gemm;
pub(crate) mod matmul_strided;
mod pack;
mod pointwise;
pub(crate) mod pool;
mod row_conv;
mod taps;
pub(crate) mod transpose;

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

/// One conv layer prepared for the fast path: tap tables resolved, weights packed, and
/// the layer's epilogue (bias, ReLU, its cap) part of every run.
#[derive(Debug)]
pub struct FastConv {
    kernel: Kernel,
    /// The fused ReLU's upper bound ([`ConvLayer::relu_cap`]), 0 for none: applied to the
    /// output just written (still in cache), not as a separate step.
    cap: f32,
    /// Floats of the compact output `[B, T, N]`.
    out_len: usize,
}

/// The kernel family a [`FastConv`] runs.
#[derive(Debug)]
enum Kernel {
    /// Packed implicit GEMM.
    Gemm(implicit_gemm::ImplicitGemm),
    /// Direct depthwise kernel.
    Depthwise(depthwise::Depthwise),
    /// Dot products for a few columns.
    Gemv(gemv::Gemv),
    /// Channel-vectorised conv over a channel-last (or as-stored) input.
    Hwc(hwc_conv::HwcConv),
    /// A 1x1 product read and written in place.
    Pointwise(pointwise::Pointwise),
    /// Position-vectorised direct conv of a few input channels over a padded copy.
    Row(row_conv::RowConv),
}

impl FastConv {
    /// Prepares `layer` (validated by [`crate::ConvSchedule::new`]) to write its compact
    /// `[B, T, N]` output; the ReLU is fused unless it must follow a barycentric gather.
    pub fn new(layer: &ConvLayer, kern: Microkernel) -> FastConv {
        let relu = fused_relu(layer);
        let cols = layer.geometry().batch * layer.mask().len();
        let family = Family::of(kern.name);
        // The direct HWC variant is AVX-512 only.
        let avx512 = family == Some(Family::Avx512);
        let kernel = if depthwise::Depthwise::applies(layer) {
            Kernel::Depthwise(depthwise::Depthwise::new(layer, relu))
        } else if cols <= gemv::MAX_COLS {
            Kernel::Gemv(gemv::Gemv::new(layer, relu))
        } else if avx512
            && pointwise_direct_pays_off(layer)
            && hwc_conv::HwcConv::available(layer)
            && hwc_conv::HwcConv::direct_applies(layer)
        {
            Kernel::Hwc(hwc_conv::HwcConv::new(layer, relu, true, Family::Avx512))
        } else if let Some(f) =
            family.filter(|&f| pointwise_pays_off(layer, f) && pointwise::Pointwise::applies(layer))
        {
            Kernel::Pointwise(pointwise::Pointwise::new(layer, relu, f))
        } else if let Some(f) =
            family.filter(|&f| row_conv_pays_off(layer, f) && row_conv::RowConv::applies(layer, f))
        {
            Kernel::Row(row_conv::RowConv::new(layer, relu, f))
        } else if let Some(f) =
            family.filter(|&f| hwc_pays_off(layer, f) && hwc_conv::HwcConv::available(layer))
        {
            Kernel::Hwc(hwc_conv::HwcConv::new(layer, relu, false, f))
        } else {
            Kernel::Gemm(implicit_gemm::ImplicitGemm::new(layer, relu, kern))
        };
        FastConv::with(kernel, layer)
    }

    /// The channel-vectorised (HWC) path for `layer` whatever [`FastConv::new`]'s choice
    /// would be, reading the input through a channel-last copy or, with `direct`, as stored;
    /// `None` where it cannot run (no AVX-512, a barycentric input map, offsets past 32 bits,
    /// or `direct` with taps that read padding): for tests and comparisons.
    pub fn hwc(layer: &ConvLayer, direct: bool) -> Option<FastConv> {
        let family = Family::detect()?;
        let possible =
            hwc_conv::HwcConv::available(layer) && (!direct || hwc_conv::HwcConv::direct_applies(layer));
        possible.then(|| {
            let relu = fused_relu(layer);
            FastConv::with(Kernel::Hwc(hwc_conv::HwcConv::new(layer, relu, direct, family)), layer)
        })
    }

    /// The [`pointwise`] product for `layer` with `kern`'s family of tiles whatever
    /// [`FastConv::new`]'s choice would be; `None` where it cannot run (no tiles for the
    /// family, or not a 1x1 conv it applies to): for tests and comparisons.
    pub fn pointwise(layer: &ConvLayer, kern: Microkernel) -> Option<FastConv> {
        let family = Family::of(kern.name)?;
        pointwise::Pointwise::applies(layer).then(|| {
            let kernel = pointwise::Pointwise::new(layer, fused_relu(layer), family);
            FastConv::with(Kernel::Pointwise(kernel), layer)
        })
    }

    /// The row path for `layer` with `kern`'s family of tiles whatever [`FastConv::new`]'s
    /// choice would be; `None` where it cannot run (no row tiles for the family, or
    /// [`row_conv::RowConv::applies`] fails): for tests and comparisons.
    pub fn row(layer: &ConvLayer, kern: Microkernel) -> Option<FastConv> {
        let family = Family::of(kern.name)?;
        row_conv::RowConv::applies(layer, family).then(|| {
            FastConv::with(Kernel::Row(row_conv::RowConv::new(layer, fused_relu(layer), family)), layer)
        })
    }

    fn with(kernel: Kernel, layer: &ConvLayer) -> FastConv {
        let g = layer.geometry();
        // The depthwise kernel applies the cap in its own epilogue; the others leave it to
        // one pass over the output (`run`).
        let caps_itself = matches!(&kernel, Kernel::Depthwise(_));
        let cap = if fused_relu(layer) && !caps_itself { layer.relu_cap() } else { 0.0 };
        FastConv { kernel, cap, out_len: g.batch * g.out_channels * layer.mask().len() }
    }

    /// The kernel family that runs (for benches and profiles).
    pub fn name(&self) -> &'static str {
        match self.kernel {
            Kernel::Gemm(_) => "implicit_gemm",
            Kernel::Depthwise(_) => "depthwise",
            Kernel::Gemv(_) => "gemv",
            Kernel::Hwc(_) => "hwc_conv",
            Kernel::Pointwise(_) => "pointwise",
            Kernel::Row(_) => "row_conv",
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
        match &self.kernel {
            Kernel::Gemm(k) => k.run(x, out),
            Kernel::Depthwise(k) => k.run(x, out),
            Kernel::Gemv(k) => k.run(x, out),
            Kernel::Hwc(k) => k.run(x, out),
            Kernel::Pointwise(k) => k.run(x, out),
            Kernel::Row(k) => k.run(x, out),
        }
        if self.cap > 0.0 {
            elementwise::cap_in_place(&mut out[..self.out_len], self.cap);
        }
    }
}

/// Whether the kernels apply the layer's ReLU (and its cap) themselves: not when it must
/// follow a barycentric gather.
fn fused_relu(layer: &ConvLayer) -> bool {
    layer.relu() && !layer.relu_after_gather()
}

/// The x86 vector family whose explicit tiles the HWC and row paths run, from the CPU
/// executor's microkernel family (each path keeps its tile shapes in its own `impl`
/// block: `hwc_conv`, `row_conv`); none off x86_64.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) enum Family {
    /// AVX-512F: 16-lane vectors, 32 registers.
    Avx512,
    /// AVX2 and FMA: 8-lane vectors, 16 registers.
    Avx2,
}

impl Family {
    /// The family of the microkernel family named `name` (`Microkernel::name`), where the
    /// CPU runs it; `None` for the others (generic, NEON).
    pub(crate) fn of(name: &str) -> Option<Family> {
        let family = match name {
            "avx512" => Family::Avx512,
            "avx2" => Family::Avx2,
            _ => return None,
        };
        family.available().then_some(family)
    }

    /// The family of the microkernel the CPU executor picks.
    pub(crate) fn detect() -> Option<Family> {
        Family::of(crate::cpu::gemm::Microkernel::detect().name)
    }

    /// Whether this CPU has the family's features (what makes its tiles safe to run).
    pub(crate) fn available(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return match self {
            Family::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            Family::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
            }
        };
        #[cfg(not(target_arch = "x86_64"))]
        false
    }
}

/// Whether a 1x1 conv runs on the [`pointwise`] product (`PERFORATE_POINTWISE=0` turns it
/// off, `=all` takes it wherever it applies: comparisons only).
/// Planes of fewer than 16 positions (fully connected layers at batch > 1: one position
/// per image) stay on the implicit GEMM, which folds images into its columns (the 28x28
/// VGG's 3136 -> 256 layer at batch 64: 0.25 ms there, 1.77 as pointwise).
///
/// On AVX2 (6 × 16 tiles: a third of the AVX-512 tile's positions, so a third of its
/// weight reuse) only with weights that stay in L2 (under 512 KB), at batch 1 or on planes
/// of at most 64 positions, where the implicit GEMM packs B for few panels or folds
/// images. Measured at batch 1 (implicit GEMM -> pointwise, best of 3-4): MobileNetV2
/// dense 12.3 -> 10.2 ms (its 1x1 layers 0.5-1.0x), at q = 1/2 7.4 -> 6.4 ms (gathered:
/// 0.5-1.05x); SqueezeNet's expand and squeeze layers 0.35-0.9x but its 512 -> 1000
/// classifier (2 MB of weights) 1.2 -> 2.0 ms; GoogLeNet's 1x1 layers 0.47-1.1x;
/// ResNet-18's strided 1x1 convs 0.81-0.88x, but 1.14x for 256 -> 512 (512 KB). The 28x28
/// NIN at batch 64: 7x7 layers 0.29 and 0.76x, 28x28 and 14x14 ones 0.87-1.11x dense
/// and 1.04-1.28x at q = 1/2.
///
/// Unstrided, weights of 512 KB to 1 MB, or more on planes of at most 64 positions, also
/// take it (batch 1, alternated, best of 4): GoogLeNet's 528 -> 256 at 14x14 and 832 -> *
/// at 7x7 0.84-0.98x, MobileNetV2's 160 -> 960, 960 -> 160/320 and 320 -> 1280 (1.6 MB) at
/// 7x7 0.85-1.0x.
///
/// Strided 1x1 convs at batch > 1 also take it, whatever their weights or planes: both
/// paths gather the strided columns, and the pointwise product skips the GEMM's packing
/// of them. Measured at batch 64 (best of 3-4, alternated): ResNet-18's three downsamples
/// 0.85-0.97x dense and 0.78-1.01x at q = 1/2 (256 -> 512 included), the 28x28 ResNet's
/// 16 -> 32 one 0.94x dense and 0.51x at q = 1/2.
///
/// Unstrided ones at batch > 1 with weights under 512 KB too, since the tile's output
/// prefetch and shared row accumulation (the 28x28 NIN at batch 64, alternated in both
/// orders, best of 5: its 28x28 and 14x14 layers 0.88-0.98x and 0.92-0.95x dense, 0.96-1.04x
/// and 0.89-0.91x at q = 1/2; they measured 0.87-1.11x and 1.04-1.28x before).
fn pointwise_pays_off(layer: &ConvLayer, family: Family) -> bool {
    let env = std::env::var("PERFORATE_POINTWISE");
    if layer.mask().len() < 16 || env.as_ref().is_ok_and(|v| v == "0") {
        return false;
    }
    if family == Family::Avx512 || env.is_ok_and(|v| v == "all") {
        return true;
    }
    let g = layer.geometry();
    let weights = g.in_channels_per_group() * g.out_channels_per_group() * std::mem::size_of::<f32>();
    let strided = g.stride_h > 1 || g.stride_w > 1;
    let positions = layer.mask().len();
    // Weights past L2 are streamed again for every 16-position tile: up to 1 MB, or on
    // planes of at most 4 tiles, when the columns are read in place (not gathered).
    let weights_fit = weights < 512 << 10 || !strided && (weights <= 1 << 20 || positions <= 64);
    let batched_fit = g.batch > 1 && (strided || weights < 512 << 10);
    batched_fit || (weights_fit && (g.batch == 1 || positions <= 64))
}

/// Whether a dense conv runs on the [`row_conv`] path: a few input channels (first
/// layers), or a stride-1 conv along the padded grid that the HWC path does not take, with
/// weights that stay in L2 (`PERFORATE_ROW_CONV=0` turns the path off, `=first` limits it
/// to first layers, `=all` takes it wherever it applies: comparisons only).
fn row_conv_pays_off(layer: &ConvLayer, family: Family) -> bool {
    let few_channels = layer.geometry().in_channels <= row_conv::MAX_IN_CHANNELS;
    match std::env::var("PERFORATE_ROW_CONV").as_deref() {
        Ok("0") => false,
        Ok("first") => few_channels,
        Ok("all") => true,
        _ if family == Family::Avx2 => few_channels && avx2_row_tiles_pay_off(layer),
        _ => {
            let batched = layer.geometry().batch > 1;
            few_channels
                || row_operands_fit(layer)
                    && (!hwc_pays_off(layer, Family::Avx512) || batched && hwc_tiles_partial(layer))
        }
    }
}

/// Whether the AVX2 row tiles (6 channels x 16 positions, first layers only) beat the
/// implicit GEMM on a first layer: long output rows (at least 56: few partial tiles) and at
/// least 27 taps (a 3x3 RGB window: enough FMAs per tile for its epilogue). Measured at
/// batch 1 on 224x224 inputs (implicit GEMM vs row path): ResNet-18's 7x7 conv 2.43-2.46 vs
/// 1.63-2.16 ms, GoogLeNet's 2.34-2.73 vs 1.65-2.32, MobileNetV2's 3x3 0.55-0.59 vs
/// 0.38-0.47, SqueezeNet's 0.94-1.07 vs 0.78-1.07; at batch 64 on 28x28 grey images (rows
/// of 28, 9 or 25 taps) the row path lost: 5x5 0.87-1.03 vs 0.95-1.48, 3x3 0.41-0.66 vs
/// 0.55-0.81.
fn avx2_row_tiles_pay_off(layer: &ConvLayer) -> bool {
    let g = layer.geometry();
    g.out_w() >= 56 && g.in_channels * g.kernel_h * g.kernel_w >= 27
}

/// Whether the HWC path's channel tiles of a layer are narrow (16) or partly empty, where
/// the row path's 8-channel panels measured faster on dense stride-1 convs at batch 64: the
/// 28x28 VGG's 24 and 48 channels at 28x28 and 14x14 2.2 -> 1.8 and 1.09 -> 0.88 ms, the
/// 28x28 ResNet's 16 channels 1.05 -> 0.99; with full 32-wide tiles the HWC path stays
/// ahead (its 32 channels at 14x14 0.84 vs 0.96; ResNet-18's 128 and 256 channels at
/// 28x28 and 14x14, batch 1, 0.72-0.76 vs 0.92-1.02), and so does it at batch 1 on the
/// 28x28 networks (0.018 vs 0.024 ms: the copy costs more than the tiles save there).
fn hwc_tiles_partial(layer: &ConvLayer) -> bool {
    let tg = layer.geometry().out_channels_per_group();
    tg <= 16 || !tg.is_multiple_of(Family::Avx512.channel_tile(tg))
}

/// Whether a conv's operands suit [`row_conv`] beyond first layers: its weights (all of
/// them, which the path streams past every tile) stay in L2, at most 640 KB. ResNet-18's
/// 64 -> 64 3x3 convs at 56x56 (147 KB) ran 0.89 -> 0.78 ms on it, VGG-11's 64 -> 128 at
/// 112x112 (295 KB) 6.4 -> 5.4; its 256-channel layers at 56x56 (1.2 and 2.4 MB) 3-6%
/// slower than the implicit GEMM.
///
/// And the padded copy of the whole batch, which the path writes before its tiles read it,
/// stays cache-sized: at most 8 MB. ResNet-18's 56x56 layers at batch 64 (a 55 MB copy)
/// ran 64 -> 77 ms on the path; the 28x28 networks' copies at batch 64 (3.7-5.5 MB) and
/// VGG-11's 112x112 one at batch 1 (3.3 MB) are among the gains above.
fn row_operands_fit(layer: &ConvLayer) -> bool {
    let g = layer.geometry();
    let copy =
        g.batch * g.in_channels * (g.in_h + g.pad_top + g.pad_bottom) * (g.in_w + g.pad_left + g.pad_right);
    std::mem::size_of_val(layer.weights()) <= 640 << 10 && copy * std::mem::size_of::<f32>() <= 8 << 20
}

/// Whether the HWC path pays off (`PERFORATE_HWC=0` turns the path off, `PERFORATE_HWC=1`
/// on wherever it is available: comparisons only). It needs a few input channels per group
/// and a spatial kernel (1x1 convs and first layers have their own paths)
/// and output channels that fill most of its 16- or 32-wide channel tiles. Measured on the
/// 28x28 networks at batch 64 and ResNet-18 at batch 1:
/// - a perforated output or a compact input: the implicit GEMM gathers every B value there,
///   this path none (fashion_resnet 16 channels at 28x28, q = 1/2: 1.04 -> 0.52 ms;
///   ResNet-18 3x3 layers 7-27% faster), except a strided conv over a dense input onto an
///   output map of more than 400 positions, whose gathers read a dense plane (ResNet-18's
///   56 -> 28 stride-2 conv: even);
/// - a dense conv: 3x3 or larger, channel tiles at least 3/4 full, at most 1024 positions
///   (4096 batched: [`positions_fit`]), stride 1 or an output map of at most 400 positions
///   (ResNet-18 28x28 to 7x7: 5-25% faster; at 56x56 and batch 1 the row path wins).
fn hwc_pays_off(layer: &ConvLayer, family: Family) -> bool {
    if std::env::var("PERFORATE_HWC").is_ok_and(|v| v == "0") {
        return false;
    }
    if std::env::var("PERFORATE_HWC").is_ok_and(|v| v == "1") {
        return true;
    }
    let g = layer.geometry();
    let (cg, tg, khkw) = (g.in_channels_per_group(), g.out_channels_per_group(), g.kernel_h * g.kernel_w);
    let unit_stride = g.stride_h == 1 && g.stride_w == 1;
    let compact_input = layer.input_map().is_some();
    if cg < 8 || khkw < 4 {
        return false;
    }
    // Strided, the implicit GEMM gathers every B value; this path wins once the output map
    // is small. Dense: ResNet-18 at batch 1, 28 -> 14 0.63 -> 0.55 ms, 14 -> 7 0.79 -> 0.54;
    // the 28x28-input fashion ResNet at batch 64, 28 -> 14 0.92 -> 0.61; but 56 -> 28 (784
    // outputs) 0.50 -> 0.61. Perforated at q = 1/2: ResNet-18 28 -> 14 0.39 -> 0.27, 14 -> 7
    // 0.49 -> 0.28; fashion ResNet 28 -> 14 0.44 -> 0.38; 56 -> 28 even.
    // On AVX2 (transposed tile stores), any strided dense conv: ResNet-18's 56 -> 28 at
    // batch 64, alternated in both orders, 53.8-53.9 -> 43.7-45.0 ms; at batch 1 even.
    let small_strided = g.out_h() * g.out_w() <= 400 || family == Family::Avx2 && layer.mask().is_dense();
    if compact_input || !layer.mask().is_dense() {
        return (unit_stride || compact_input || small_strided) && family.fills_channel_tiles(tg);
    }
    // Channel tiles at least 3/4 full: the 28x28 VGG's 24- and 48-channel 3x3 layers at
    // batch 1 ran 0.082 -> 0.047, 0.041 -> 0.022 and 0.076 -> 0.045 ms here (network 0.26 ->
    // 0.18-0.20 ms), even at batch 64.
    let tiles_filled = family.fills_channel_tiles(tg);
    (unit_stride || small_strided) && khkw >= 9 && cg >= 16 && tiles_filled && positions_fit(layer, family)
}

/// The output maps the HWC path takes dense convs on: at most 1024 positions, or (batched)
/// 4096; on AVX2, where the row path takes only first layers, any. ResNet-18's 64 -> 64 3x3
/// convs at 56x56, batch 16: 14.0-14.2 ms against 16.1-16.4 on the implicit GEMM (the row
/// path, which runs them at batch 1 on AVX-512, 0.86-0.95 ms against 0.91-0.93 here, stops
/// at its 8 MB batch copy). On AVX2 at batch 1, alternated in both orders, best of 4:
/// ResNet-18's 0.78-0.86x the implicit GEMM, GoogLeNet's 64 -> 192 0.95x, VGG-11's 56x56
/// layers 0.98-0.99x and its 64 -> 128 at 112x112 0.88-0.90x.
fn positions_fit(layer: &ConvLayer, family: Family) -> bool {
    let n = layer.mask().len();
    n <= 1024 || layer.geometry().batch > 1 && n <= 4096 || family == Family::Avx2
}

/// Whether a pointwise conv runs on the HWC path reading its input as stored (no copy):
/// on small planes at batch 1 whose positions fill 16-lane vectors poorly (7x7: 49 of 64
/// lanes), where [`pointwise`]'s position vectors are partly empty and the HWC path's
/// channel vectors are full. GoogLeNet's 832 -> 384 channels at 7x7: 0.145 (pointwise)
/// vs 0.113 ms; at 14x14 and 13x13 (196 of 208, 169 of 176 lanes) pointwise wins by
/// 10-50%, and so do perforated outputs of other sizes on this path over the implicit GEMM.
/// A choice between two AVX-512 paths, so it counts AVX-512 channel tiles (on AVX2 it slowed
/// NIN's 28x28 1x1 layers). `PERFORATE_HWC_DIRECT=0` turns it off (comparisons only).
fn pointwise_direct_pays_off(layer: &ConvLayer) -> bool {
    if std::env::var("PERFORATE_HWC_DIRECT").is_ok_and(|v| v == "0") {
        return false;
    }
    let g = layer.geometry();
    let (cg, tg) = (g.in_channels_per_group(), g.out_channels_per_group());
    let n_pos = layer.mask().len();
    let lanes_filled = 8 * n_pos >= 7 * n_pos.next_multiple_of(16);
    // Batch 1 only: at larger batches the implicit GEMM folds small planes' images together.
    g.batch == 1
        && g.kernel_h * g.kernel_w == 1
        && n_pos <= 256
        && !(layer.mask().is_dense() && lanes_filled)
        && cg >= 16
        && Family::Avx512.fills_channel_tiles(tg)
}
