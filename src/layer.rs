//! A perforated convolution layer as pure data, and the schedule of kernel launches
//! that both executors (CPU and GPU) follow.

use std::sync::Arc;

use crate::error::{to_u32, Error, Result};
use crate::geometry::ConvGeometry;
use crate::interp::{InterpMap, MapKind};
use crate::mask::Mask;
use crate::params::{DepthwiseMaskedParams, GatherInterpParams, Im2colMaskedParams, MatmulTiledParams};

/// A convolution with its weights, its mask and interpolation map, and (when its input
/// is the compact output of a previous perforated layer) the map to read that input
/// through.
///
/// This is a description only; [`crate::cpu::CpuConv`] and [`crate::gpu::GpuConv`]
/// compile it for execution.
#[derive(Clone, Debug)]
pub struct ConvLayer {
    geometry: ConvGeometry,
    weights: Arc<[f32]>,
    bias: Vec<f32>,
    mask: Mask,
    map: InterpMap,
    input_map: Option<InterpMap>,
    relu: bool,
    /// Upper bound after the ReLU (ReLU6 and other `Clip(0, max)`); 0 for none.
    relu_cap: f32,
}

impl ConvLayer {
    /// A dense (unperforated) layer. `weights` are OIHW,
    /// `[out_channels, in_channels / groups, kernel_h, kernel_w]`; `bias` has one entry
    /// per output channel (zeros when `None`). Weights given as an `Arc` are shared, not
    /// copied.
    pub fn new(
        geometry: ConvGeometry,
        weights: impl Into<Arc<[f32]>>,
        bias: Option<Vec<f32>>,
    ) -> Result<Self> {
        geometry.validate()?;
        let weights = weights.into();
        if weights.len() != geometry.weight_len() {
            return Err(Error::shape(
                format!(
                    "conv weights [{}, {}, {}, {}]",
                    geometry.out_channels,
                    geometry.in_channels_per_group(),
                    geometry.kernel_h,
                    geometry.kernel_w
                ),
                geometry.weight_len(),
                weights.len(),
            ));
        }
        let bias = bias.unwrap_or_else(|| vec![0.0; geometry.out_channels]);
        if bias.len() != geometry.out_channels {
            return Err(Error::shape("conv bias", geometry.out_channels, bias.len()));
        }
        let mask = Mask::dense(geometry.out_h(), geometry.out_w())?;
        let map = mask.interpolation_map(0);
        Ok(ConvLayer { geometry, weights, bias, mask, map, input_map: None, relu: false, relu_cap: 0.0 })
    }

    /// Perforates the layer with `mask`; equidistant positions of the interpolation map
    /// are resolved with `tie_seed`.
    pub fn with_mask(mut self, mask: Mask, tie_seed: u64) -> Result<Self> {
        let (h, w) = (self.geometry.out_h(), self.geometry.out_w());
        if (mask.height(), mask.width()) != (h, w) {
            return Err(Error::Mask(format!(
                "mask is {}x{} but the layer's output map is {h}x{w}",
                mask.height(),
                mask.width()
            )));
        }
        self.map = mask.interpolation_map(tie_seed);
        self.mask = mask;
        Ok(self)
    }

    /// Perforates the layer with `mask` and the interpolation map `map` resolved for it
    /// before (by a compiled plan), so that both stay exactly as they were.
    pub(crate) fn with_mask_and_map(self, mask: Mask, map: InterpMap) -> Result<Self> {
        let mut layer = self.with_mask(mask, 0)?;
        if (map.height(), map.width()) != (layer.mask.height(), layer.mask.width()) {
            return Err(Error::Mask(format!(
                "map is {}x{} but the mask is {}x{}",
                map.height(),
                map.width(),
                layer.mask.height(),
                layer.mask.width()
            )));
        }
        layer.map = map;
        Ok(layer)
    }

    /// Fills skipped outputs through a map of `kind` (nearest by default) built from the
    /// current mask; `tie_seed` as in [`ConvLayer::with_mask`].
    ///
    /// A fused ReLU ([`ConvLayer::with_relu`]) applies after the interpolation in a dense
    /// output. A barycentric map does not commute with the ReLU, so a compact output of a
    /// barycentric layer with a ReLU is rejected by the schedule.
    pub fn with_interpolation(mut self, kind: MapKind, tie_seed: u64) -> Result<Self> {
        self.map = self.mask.map(kind, tie_seed)?;
        Ok(self)
    }

    /// Perforates the layer with a seeded uniform-random mask of kept fraction `q`.
    pub fn with_uniform_perforation(self, kept_fraction: f64, seed: u64) -> Result<Self> {
        let mask = Mask::uniform(self.geometry.out_h(), self.geometry.out_w(), kept_fraction, seed)?;
        self.with_mask(mask, seed)
    }

    /// Declares the input compact: the `[batch, in_channels, N_prev]` output of a previous
    /// perforated layer whose interpolation map (covering this layer's H×W input) is
    /// `map`. Reads then go through the map (implicit interpolation).
    pub fn with_input_map(mut self, map: InterpMap) -> Result<Self> {
        let (h, w) = (self.geometry.in_h, self.geometry.in_w);
        if (map.height(), map.width()) != (h, w) {
            return Err(Error::Mask(format!(
                "input interpolation map is {}x{} but the layer's input is {h}x{w}",
                map.height(),
                map.width()
            )));
        }
        self.input_map = Some(map);
        Ok(self)
    }

    /// Fuses a ReLU after the bias.
    pub fn with_relu(mut self, relu: bool) -> Self {
        self.relu = relu;
        self
    }

    /// Fuses a ReLU capped at `cap` (`min(max(v, 0), cap)`: ReLU6 and other `Clip(0, cap)`)
    /// after the bias. A cap that is not positive and finite is an error (a ReLU without
    /// a cap is [`ConvLayer::with_relu`]).
    pub fn with_relu_cap(mut self, cap: f32) -> Result<Self> {
        if !(cap > 0.0 && cap.is_finite()) {
            return Err(Error::InvalidArgument(format!(
                "a fused ReLU cap must be positive and finite, got {cap}"
            )));
        }
        self.relu = true;
        self.relu_cap = cap;
        Ok(self)
    }

    /// The convolution's shape.
    pub fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    /// OIHW weights.
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// Bias, one per output channel.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }

    /// The mask of computed output positions.
    pub fn mask(&self) -> &Mask {
        &self.mask
    }

    /// The output interpolation map (compact → dense).
    pub fn interpolation_map(&self) -> &InterpMap {
        &self.map
    }

    /// The map a compact input is read through, if the input is compact.
    pub fn input_map(&self) -> Option<&InterpMap> {
        self.input_map.as_ref()
    }

    /// Whether a ReLU follows the bias.
    pub fn relu(&self) -> bool {
        self.relu
    }

    /// The upper bound of the fused ReLU ([`ConvLayer::with_relu_cap`]), 0 for none.
    pub fn relu_cap(&self) -> f32 {
        self.relu_cap
    }

    /// Whether the fused ReLU must wait for the gather: relu(barycentric(x)) is not
    /// barycentric(relu(x)), so a perforated barycentric layer applies it after
    /// interpolating, and its GEMM epilogue has none.
    pub(crate) fn relu_after_gather(&self) -> bool {
        self.relu && self.map.kind() == MapKind::Barycentric && !self.mask.is_dense()
    }

    /// Elements per input channel plane: H·W, or N_prev for a compact input.
    pub fn input_plane(&self) -> usize {
        match &self.input_map {
            Some(m) => m.compact_len(),
            None => self.geometry.in_h * self.geometry.in_w,
        }
    }

    /// Expected input shape: `[B, C, H, W]`, or `[B, C, N_prev]` for a compact input.
    pub fn input_shape(&self) -> Vec<usize> {
        let g = &self.geometry;
        match &self.input_map {
            Some(m) => vec![g.batch, g.in_channels, m.compact_len()],
            None => vec![g.batch, g.in_channels, g.in_h, g.in_w],
        }
    }

    /// Shape of the compact output, `[B, T, N]`.
    pub fn compact_output_shape(&self) -> [usize; 3] {
        [self.geometry.batch, self.geometry.out_channels, self.mask.len()]
    }

    /// Shape of the dense output, `[B, T, H', W']`.
    pub fn dense_output_shape(&self) -> [usize; 4] {
        let g = &self.geometry;
        [g.batch, g.out_channels, g.out_h(), g.out_w()]
    }

    /// FLOPs of one run over the whole batch with this mask.
    pub fn flops(&self) -> u64 {
        self.geometry.batch as u64 * self.geometry.flops(self.mask.len())
    }

    /// FLOPs of one run of the unperforated layer.
    pub fn dense_flops(&self) -> u64 {
        self.geometry.batch as u64 * self.geometry.dense_flops()
    }

    /// Theoretical speedup over the dense layer, H'W'/N = 1/q.
    pub fn theoretical_speedup(&self) -> f64 {
        self.dense_flops() as f64 / self.flops() as f64
    }

    /// Weights as the GEMM's A matrix: `[T, lda]` row-major, rows of k = kh·kw·C/groups
    /// values (channel, ky, kx) zero-padded to `lda`, a multiple of 4 (vec4 loads).
    pub(crate) fn packed_weights(&self) -> (Vec<f32>, usize) {
        let k = self.geometry.k_per_group();
        let lda = k.next_multiple_of(4);
        let mut a = vec![0.0f32; self.geometry.out_channels * lda];
        for (dst, src) in a.chunks_exact_mut(lda).zip(self.weights.chunks_exact(k)) {
            dst[..k].copy_from_slice(src);
        }
        (a, lda)
    }
}

/// In what form a layer hands its output back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutputForm {
    /// `[B, T, H', W']`, skipped positions filled through the interpolation map.
    #[default]
    Dense,
    /// `[B, T, N]`, the computed positions only (feed it to a layer built
    /// [`ConvLayer::with_input_map`] with this layer's map).
    Compact,
}

/// Execution settings shared by both executors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConvSettings {
    /// Output form.
    pub output: OutputForm,
    /// Images stacked into one GEMM (microbatching); `None` means ⌊1/q⌋ on the CPU, as in
    /// the reference code, so a perforated GEMM keeps roughly its dense width, and the
    /// whole batch (within a column budget) on the GPU, which needs wide products to fill
    /// its cores.
    pub images_per_gemm: Option<usize>,
    /// Upper bound on the bytes of one im2col chunk. `None` uses the executor's default
    /// (the device's storage-binding limit on the GPU). Tests set it small to force
    /// chunking.
    pub max_chunk_bytes: Option<u64>,
    /// Which kernels compute the layer (tests force one).
    pub kernels: ConvKernels,
    /// The GPU's `matmul_tiled` variant (tests force one; the CPU ignores it).
    pub gemm_tile: GemmTile,
}

/// The tile of the GPU's `matmul_tiled`, chosen per product by its shape under
/// [`GemmTile::Auto`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GemmTile {
    /// 128×128 when the product has enough such tiles to fill a large GPU, else 64×64.
    #[default]
    Auto,
    /// 64×64 tiles, 4×4 outputs per thread.
    Medium,
    /// 128×128 tiles, 8×8 outputs per thread.
    Large,
}

/// The kernels a convolution runs on, chosen per layer by [`ConvSchedule::new`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvKernels {
    /// `depthwise_masked` for a grouped conv with one input channel per group,
    /// `im2col_masked → matmul_tiled` otherwise.
    #[default]
    Auto,
    /// `im2col_masked → matmul_tiled` for every layer (one small GEMM per group).
    Im2colGemm,
    /// `conv_fused` for every layer: the product's B tiles computed from the input through
    /// the mask and the map where they are loaded, no column matrix (implicit GEMM).
    /// [`ConvKernels::Auto`] does not pick it yet: where it beats the two launches on a
    /// real GPU has not been measured (`benches/device.sh` compares them).
    Fused,
}

/// One launch pair of the schedule: build the columns of one group and one chunk, then
/// multiply them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvStep {
    /// Parameters of `im2col_masked`.
    pub im2col: Im2colMaskedParams,
    /// Parameters of the product (`matmul_tiled` or `matmul_narrow`).
    pub matmul: MatmulTiledParams,
    /// The product is at most [`NARROW_MAX_COLUMNS`] wide: `matmul_narrow` computes it
    /// (on both executors), not `matmul_tiled`.
    pub narrow: bool,
}

/// The widest product (columns of B, padded to 4) that `matmul_narrow` computes: fully
/// connected layers at small batch, where a 64-column tile would waste most of its work.
pub const NARROW_MAX_COLUMNS: u32 = 8;

/// The kernel launches of one layer run, resolved once: both executors walk the same
/// steps, so CPU and GPU results differ only by floating-point summation order.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvSchedule {
    /// Launch pairs in order (chunks outer, groups inner).
    pub steps: Vec<ConvStep>,
    /// Floats of the column buffer: k · (chunk columns rounded up to 4).
    pub col_len: usize,
    /// The final gather, when a dense output is asked for and the mask is not dense.
    pub gather: Option<GatherInterpParams>,
    /// Images per GEMM actually used.
    pub images_per_gemm: usize,
    /// Columns per GEMM chunk.
    pub chunk_cols: usize,
    /// The single `depthwise_masked` launch that replaces `steps` (then empty) for a
    /// depthwise layer under [`ConvKernels::Auto`].
    pub depthwise: Option<DepthwiseMaskedParams>,
    /// Each step is one `conv_fused` launch (no column matrix; `col_len` is 0) instead of
    /// `im2col_masked → matmul_*` ([`ConvKernels::Fused`]).
    pub fused: bool,
}

impl ConvSchedule {
    /// Resolves the launches of `layer` under `settings`, with column chunks no larger than
    /// `limit_bytes` (the executor's own bound; `settings.max_chunk_bytes` can only lower it).
    pub fn new(layer: &ConvLayer, settings: &ConvSettings, limit_bytes: u64) -> Result<Self> {
        let g = layer.geometry();
        let n = layer.mask().len();
        let k = g.k_per_group();
        let batch_cols = g.batch * n;
        let relu_after_gather = layer.relu_after_gather();
        if relu_after_gather && layer.relu_cap() > 0.0 {
            return Err(Error::InvalidArgument(format!(
                "a barycentric perforated layer cannot fuse a capped ReLU (cap {}): the cap must follow the \
                 interpolation, which applies a plain ReLU only",
                layer.relu_cap()
            )));
        }
        if relu_after_gather && settings.output == OutputForm::Compact {
            return Err(Error::InvalidArgument(
                "a barycentric layer with a fused ReLU has no compact output: the ReLU must follow the \
                 interpolation (ask for a dense output, or apply the ReLU after gathering)"
                    .into(),
            ));
        }
        let images_per_gemm = match settings.images_per_gemm {
            Some(0) => return Err(Error::InvalidArgument("images_per_gemm must be at least 1".into())),
            Some(i) => i.min(g.batch),
            None => (g.out_positions() / n).clamp(1, g.batch),
        };
        let limit = settings.max_chunk_bytes.map_or(limit_bytes, |s| s.min(limit_bytes));
        let cap_cols = usize::try_from(limit / (4 * k as u64)).unwrap_or(usize::MAX) / 4 * 4;
        if cap_cols == 0 {
            return Err(Error::TooLarge(format!(
                "chunk limit of {limit} bytes cannot hold 4 im2col columns of {k} values"
            )));
        }
        let chunk_cols = (images_per_gemm * n).min(cap_cols);
        let col_len = k * chunk_cols.next_multiple_of(4);

        let (cg, tg) = (g.in_channels_per_group(), g.out_channels_per_group());
        let mut steps = Vec::new();
        for col_start in (0..batch_cols).step_by(chunk_cols) {
            let cols = chunk_cols.min(batch_cols - col_start);
            let ldb = to_u32(cols.next_multiple_of(4), "im2col row stride")?;
            for group in 0..g.groups {
                let im2col = Im2colMaskedParams {
                    in_h: to_u32(g.in_h, "input height")?,
                    in_w: to_u32(g.in_w, "input width")?,
                    in_plane: to_u32(layer.input_plane(), "input plane")?,
                    channels: to_u32(g.in_channels, "input channels")?,
                    channel_offset: to_u32(group * cg, "channel offset")?,
                    group_channels: to_u32(cg, "channels per group")?,
                    kernel_h: to_u32(g.kernel_h, "kernel height")?,
                    kernel_w: to_u32(g.kernel_w, "kernel width")?,
                    stride_h: to_u32(g.stride_h, "stride")?,
                    stride_w: to_u32(g.stride_w, "stride")?,
                    pad_top: to_u32(g.pad_top, "padding")?,
                    pad_left: to_u32(g.pad_left, "padding")?,
                    dilation_h: to_u32(g.dilation_h, "dilation")?,
                    dilation_w: to_u32(g.dilation_w, "dilation")?,
                    out_w: to_u32(g.out_w(), "output width")?,
                    n_pos: to_u32(n, "mask length")?,
                    col_start: to_u32(col_start, "column")?,
                    cols: to_u32(cols, "columns")?,
                    ldb,
                    in_map_kind: layer.input_map().map_or(0, |m| m.kind().code()),
                };
                let matmul = MatmulTiledParams {
                    m: to_u32(tg, "output channels per group")?,
                    n: to_u32(cols, "columns")?,
                    k: to_u32(k, "GEMM depth")?,
                    lda: to_u32(k.next_multiple_of(4), "weight row stride")?,
                    ldb,
                    a_row_offset: to_u32(group * tg, "weight row")?,
                    relu: u32::from(layer.relu() && !relu_after_gather),
                    relu_cap: if relu_after_gather { 0.0 } else { layer.relu_cap() },
                    col_start: to_u32(col_start, "column")?,
                    n_pos: to_u32(n, "mask length")?,
                    out_channels: to_u32(g.out_channels, "output channels")?,
                    out_channel_offset: to_u32(group * tg, "output channel offset")?,
                };
                let narrow = matmul.ldb <= NARROW_MAX_COLUMNS && settings.kernels != ConvKernels::Fused;
                steps.push(ConvStep { im2col, matmul, narrow });
            }
        }
        let gather = match settings.output {
            OutputForm::Dense if !layer.mask().is_dense() => Some(GatherInterpParams {
                n_pos: to_u32(n, "mask length")?,
                plane: to_u32(g.out_positions(), "output plane")?,
                planes: to_u32(g.batch * g.out_channels, "output planes")?,
                map_kind: layer.map.kind().code(),
                relu: u32::from(relu_after_gather),
                ..Default::default()
            }),
            _ => None,
        };
        // The depthwise launch reads the geometry the first step already validated.
        let depthwise = match steps.first() {
            Some(first) if settings.kernels == ConvKernels::Auto && g.groups > 1 && cg == 1 => {
                let (i, m) = (first.im2col, first.matmul);
                to_u32(g.batch * g.out_channels * n, "depthwise outputs")?;
                Some(DepthwiseMaskedParams {
                    in_h: i.in_h,
                    in_w: i.in_w,
                    in_plane: i.in_plane,
                    channels: i.channels,
                    out_channels: m.out_channels,
                    channel_mult: m.m,
                    kernel_h: i.kernel_h,
                    kernel_w: i.kernel_w,
                    stride_h: i.stride_h,
                    stride_w: i.stride_w,
                    pad_top: i.pad_top,
                    pad_left: i.pad_left,
                    dilation_h: i.dilation_h,
                    dilation_w: i.dilation_w,
                    out_w: i.out_w,
                    n_pos: i.n_pos,
                    images: to_u32(g.batch, "batch")?,
                    lda: m.lda,
                    relu: m.relu,
                    in_map_kind: i.in_map_kind,
                    relu_cap: m.relu_cap,
                    ..Default::default()
                })
            }
            _ => None,
        };
        if depthwise.is_some() {
            steps.clear();
        }
        let fused = settings.kernels == ConvKernels::Fused;
        let col_len = if depthwise.is_some() || fused { 0 } else { col_len };
        Ok(ConvSchedule { steps, col_len, gather, images_per_gemm, chunk_cols, depthwise, fused })
    }

    /// The shape the run returns.
    pub fn output_shape(layer: &ConvLayer, settings: &ConvSettings) -> Vec<usize> {
        match settings.output {
            OutputForm::Dense => layer.dense_output_shape().to_vec(),
            OutputForm::Compact => layer.compact_output_shape().to_vec(),
        }
    }
}
