//! Convolution shape arithmetic, written once and shared by the CPU and GPU paths.

use crate::error::{Error, Result};

/// The complete shape of a 2-D convolution over an NCHW batch.
///
/// Weights are laid out OIHW: `[out_channels, in_channels / groups, kernel_h, kernel_w]`.
/// Build one with [`ConvGeometry::new`] and the `with_*` methods, then call
/// [`ConvGeometry::validate`] (layer constructors do this for you).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeometry {
    /// Images per run.
    pub batch: usize,
    /// Input channels C.
    pub in_channels: usize,
    /// Input height H.
    pub in_h: usize,
    /// Input width W.
    pub in_w: usize,
    /// Output channels T.
    pub out_channels: usize,
    /// Kernel height kh.
    pub kernel_h: usize,
    /// Kernel width kw.
    pub kernel_w: usize,
    /// Vertical stride sy.
    pub stride_h: usize,
    /// Horizontal stride sx.
    pub stride_w: usize,
    /// Zero rows added above the input.
    pub pad_top: usize,
    /// Zero columns added left of the input.
    pub pad_left: usize,
    /// Zero rows added below the input.
    pub pad_bottom: usize,
    /// Zero columns added right of the input.
    pub pad_right: usize,
    /// Vertical dilation dy.
    pub dilation_h: usize,
    /// Horizontal dilation dx.
    pub dilation_w: usize,
    /// Channel groups (AlexNet's conv2 uses 2).
    pub groups: usize,
}

impl ConvGeometry {
    /// A stride-1, unpadded, undilated, ungrouped convolution of one image.
    pub fn new(
        in_channels: usize,
        in_h: usize,
        in_w: usize,
        out_channels: usize,
        kernel_h: usize,
        kernel_w: usize,
    ) -> Self {
        ConvGeometry {
            batch: 1,
            in_channels,
            in_h,
            in_w,
            out_channels,
            kernel_h,
            kernel_w,
            stride_h: 1,
            stride_w: 1,
            pad_top: 0,
            pad_left: 0,
            pad_bottom: 0,
            pad_right: 0,
            dilation_h: 1,
            dilation_w: 1,
            groups: 1,
        }
    }

    /// Sets the same stride in both directions.
    pub fn with_stride(mut self, stride: usize) -> Self {
        self.stride_h = stride;
        self.stride_w = stride;
        self
    }

    /// Sets the same padding on all four sides.
    pub fn with_padding(self, pad: usize) -> Self {
        self.with_padding_tlbr(pad, pad, pad, pad)
    }

    /// Sets asymmetric padding: top, left, bottom, right.
    pub fn with_padding_tlbr(mut self, top: usize, left: usize, bottom: usize, right: usize) -> Self {
        self.pad_top = top;
        self.pad_left = left;
        self.pad_bottom = bottom;
        self.pad_right = right;
        self
    }

    /// Sets the same dilation in both directions.
    pub fn with_dilation(mut self, dilation: usize) -> Self {
        self.dilation_h = dilation;
        self.dilation_w = dilation;
        self
    }

    /// Sets the number of channel groups.
    pub fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    /// Sets the batch size.
    pub fn with_batch(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// Checks every constraint; all other methods assume a validated geometry.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("batch", self.batch),
            ("in_channels", self.in_channels),
            ("in_h", self.in_h),
            ("in_w", self.in_w),
            ("out_channels", self.out_channels),
            ("kernel_h", self.kernel_h),
            ("kernel_w", self.kernel_w),
            ("stride_h", self.stride_h),
            ("stride_w", self.stride_w),
            ("dilation_h", self.dilation_h),
            ("dilation_w", self.dilation_w),
            ("groups", self.groups),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(Error::Geometry(format!("{name} must be at least 1 in {self}")));
            }
        }
        if !self.in_channels.is_multiple_of(self.groups) || !self.out_channels.is_multiple_of(self.groups) {
            return Err(Error::Geometry(format!(
                "in_channels {} and out_channels {} must both be divisible by groups {}",
                self.in_channels, self.out_channels, self.groups
            )));
        }
        for (axis, size, pad, k, d) in [
            ("height", self.in_h, self.pad_top + self.pad_bottom, self.kernel_h, self.dilation_h),
            ("width", self.in_w, self.pad_left + self.pad_right, self.kernel_w, self.dilation_w),
        ] {
            let span = d.saturating_mul(k - 1).saturating_add(1);
            if size.saturating_add(pad) < span {
                return Err(Error::Geometry(format!(
                    "padded input {axis} {} is smaller than the dilated kernel extent {span} in {self}",
                    size.saturating_add(pad)
                )));
            }
        }
        // Every index the kernels form must fit in u32 (GPU code indexes with u32).
        let product = |xs: &[usize]| xs.iter().fold(1usize, |acc, &x| acc.saturating_mul(x));
        let biggest = [
            product(&[self.batch, self.in_channels, self.in_h, self.in_w]),
            product(&[self.batch, self.out_channels, self.out_h(), self.out_w()]),
            product(&[self.out_channels, self.kernel_h, self.kernel_w, self.in_channels_per_group()]),
        ];
        if biggest.iter().any(|&n| n > u32::MAX as usize / 4) {
            return Err(Error::TooLarge(format!("tensors of {self} exceed 2^30 elements")));
        }
        Ok(())
    }

    /// Output height H' = (H + pt + pb − dy·(kh−1) − 1) / sy + 1.
    pub fn out_h(&self) -> usize {
        (self.in_h.saturating_add(self.pad_top).saturating_add(self.pad_bottom)
            - self.dilation_h * (self.kernel_h - 1)
            - 1)
            / self.stride_h
            + 1
    }

    /// Output width W' = (W + pl + pr − dx·(kw−1) − 1) / sx + 1.
    pub fn out_w(&self) -> usize {
        (self.in_w.saturating_add(self.pad_left).saturating_add(self.pad_right)
            - self.dilation_w * (self.kernel_w - 1)
            - 1)
            / self.stride_w
            + 1
    }

    /// Whether each output position reads exactly its own input position: a 1x1 kernel at
    /// stride 1 without padding (the product `W · x` over the input planes as stored).
    pub fn is_pointwise(&self) -> bool {
        self.kernel_h == 1
            && self.kernel_w == 1
            && self.stride_h == 1
            && self.stride_w == 1
            && self.pad_top + self.pad_left + self.pad_bottom + self.pad_right == 0
    }

    /// Output positions per image, H'·W'.
    pub fn out_positions(&self) -> usize {
        self.out_h() * self.out_w()
    }

    /// Input channels per group.
    pub fn in_channels_per_group(&self) -> usize {
        self.in_channels / self.groups
    }

    /// Output channels per group.
    pub fn out_channels_per_group(&self) -> usize {
        self.out_channels / self.groups
    }

    /// GEMM depth per group: k = kh·kw·C/groups.
    pub fn k_per_group(&self) -> usize {
        self.kernel_h * self.kernel_w * self.in_channels_per_group()
    }

    /// Number of weights, T·(C/groups)·kh·kw.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.k_per_group()
    }

    /// FLOPs of one image when `positions` output positions are computed
    /// (METHOD.md §1: 2·P·kh·kw·(C/groups)·T).
    pub fn flops(&self, positions: usize) -> u64 {
        2 * positions as u64 * self.k_per_group() as u64 * self.out_channels as u64
    }

    /// FLOPs of the dense convolution of one image.
    pub fn dense_flops(&self) -> u64 {
        self.flops(self.out_positions())
    }
}

impl std::fmt::Display for ConvGeometry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "conv {}x{}x{}x{} -> {} ch, kernel {}x{}, stride {}x{}, pad t{} l{} b{} r{}, dilation {}x{}, groups {}",
            self.batch,
            self.in_channels,
            self.in_h,
            self.in_w,
            self.out_channels,
            self.kernel_h,
            self.kernel_w,
            self.stride_h,
            self.stride_w,
            self.pad_top,
            self.pad_left,
            self.pad_bottom,
            self.pad_right,
            self.dilation_h,
            self.dilation_w,
            self.groups
        )
    }
}
