//! Parameter blocks of the kernels, shared by the CPU twins and the WGSL shaders.
//!
//! Each struct is `#[repr(C)]`, made of `u32` fields only, a multiple of 16 bytes, and
//! mirrored field by field by a `struct Params` at the top of the shader of the same
//! name (`tests/shaders.rs` checks the sizes and field names with naga).

use bytemuck::{Pod, Zeroable};

/// `im2col_masked`: builds the `rows × ldb` column matrix of one group for the output
/// columns `col_start .. col_start + cols` (column = image · n_pos + mask entry), with
/// `rows = group_channels · kernel_h · kernel_w` ordered (channel, ky, kx).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Im2colMaskedParams {
    /// Dense input height H (bounds for padding).
    pub in_h: u32,
    /// Dense input width W.
    pub in_w: u32,
    /// Elements per input channel plane: H·W for a dense input, N_prev for a compact one.
    pub in_plane: u32,
    /// Input channels C of the whole tensor (batch stride is C·in_plane).
    pub channels: u32,
    /// First input channel of this group.
    pub channel_offset: u32,
    /// Input channels per group C/groups.
    pub group_channels: u32,
    /// Kernel height.
    pub kernel_h: u32,
    /// Kernel width.
    pub kernel_w: u32,
    /// Vertical stride.
    pub stride_h: u32,
    /// Horizontal stride.
    pub stride_w: u32,
    /// Padding above.
    pub pad_top: u32,
    /// Padding left.
    pub pad_left: u32,
    /// Vertical dilation.
    pub dilation_h: u32,
    /// Horizontal dilation.
    pub dilation_w: u32,
    /// Output width W' (to split a mask position into y, x).
    pub out_w: u32,
    /// Mask entries per image N.
    pub n_pos: u32,
    /// First global column (image·N + entry) of this chunk.
    pub col_start: u32,
    /// Columns in this chunk.
    pub cols: u32,
    /// Row stride of the column matrix (cols rounded up to a multiple of 4; the padding
    /// columns are written as 0).
    pub ldb: u32,
    /// 0 for a dense input; else the input is compact and read through the input
    /// interpolation map of this [`crate::MapKind::code`].
    pub in_map_kind: u32,
}

/// `matmul_tiled`: `out = act(A · B + bias)` for one group and one chunk of columns,
/// where A is `m × k` (row stride `lda`, starting at row `a_row_offset`) and B is the
/// `k × cols` column matrix (row stride `ldb`). Column j of the product lands at
/// `out[(img · out_channels + out_channel_offset + row) · n_pos + pos]` with
/// `img, pos = divmod(col_start + j, n_pos)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct MatmulTiledParams {
    /// Rows of A and of the product (output channels of this group).
    pub m: u32,
    /// Columns of B and of the product in this chunk.
    pub n: u32,
    /// Inner dimension.
    pub k: u32,
    /// Row stride of A, a multiple of 4 (zero-padded beyond k).
    pub lda: u32,
    /// Row stride of B, a multiple of 4.
    pub ldb: u32,
    /// First row of A (and entry of bias) used by this group.
    pub a_row_offset: u32,
    /// 1 to apply ReLU after the bias.
    pub relu: u32,
    /// First global column of this chunk.
    pub col_start: u32,
    /// Positions per image in the output (N).
    pub n_pos: u32,
    /// Channels of the whole output tensor.
    pub out_channels: u32,
    /// First output channel written by this group.
    pub out_channel_offset: u32,
    /// With `relu`, the upper bound after it (`min(max(v, 0), cap)`); 0 for none.
    pub relu_cap: f32,
}

/// `depthwise_masked`: a grouped convolution with one input channel per group, computed
/// directly at the masked positions into the compact `[images, out_channels, n_pos]`
/// output (output channel t reads input channel `t / channel_mult`). The input is read as
/// in [`Im2colMaskedParams`] (dense, or compact through the input map).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct DepthwiseMaskedParams {
    /// Dense input height H.
    pub in_h: u32,
    /// Dense input width W.
    pub in_w: u32,
    /// Elements per input channel plane: H·W, or N_prev for a compact input.
    pub in_plane: u32,
    /// Input channels C (the batch stride is C·in_plane).
    pub channels: u32,
    /// Output channels T = C · channel_mult.
    pub out_channels: u32,
    /// Output channels per input channel.
    pub channel_mult: u32,
    /// Kernel height.
    pub kernel_h: u32,
    /// Kernel width.
    pub kernel_w: u32,
    /// Vertical stride.
    pub stride_h: u32,
    /// Horizontal stride.
    pub stride_w: u32,
    /// Padding above.
    pub pad_top: u32,
    /// Padding left.
    pub pad_left: u32,
    /// Vertical dilation.
    pub dilation_h: u32,
    /// Horizontal dilation.
    pub dilation_w: u32,
    /// Output width W'.
    pub out_w: u32,
    /// Mask entries per image N.
    pub n_pos: u32,
    /// Images in the batch.
    pub images: u32,
    /// Row stride of the packed weights (kh·kw rounded up to a multiple of 4).
    pub lda: u32,
    /// 1 to apply ReLU after the bias.
    pub relu: u32,
    /// 0 for a dense input, else the [`crate::MapKind::code`] of the input map.
    pub in_map_kind: u32,
    /// With `relu`, the upper bound after it; 0 for none.
    pub relu_cap: f32,
    /// Padding to a multiple of 16 bytes.
    pub _pad0: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad1: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad2: u32,
}

/// `gather_interp`: `dense[t, p] = compact[t, map[p]]` for `planes` channel planes
/// (batch · channels) of `plane = H'·W'` dense and `n_pos` compact entries, plus a dense
/// `addend[t, p]` when `residual` is 1 (a residual Add that reads its compact operand
/// through the map, with no gathered temporary).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct GatherInterpParams {
    /// Compact entries per plane N.
    pub n_pos: u32,
    /// Dense positions per plane H'·W'.
    pub plane: u32,
    /// Number of planes (batch · channels).
    pub planes: u32,
    /// The map's [`crate::MapKind::code`].
    pub map_kind: u32,
    /// 1 to apply a ReLU after the interpolation (and the addend).
    pub relu: u32,
    /// 1 to add the dense `addend` tensor (same shape as the output) before the ReLU; 2 to
    /// add what the output buffer already holds (the addend, run in place).
    pub residual: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad0: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad1: u32,
}

/// `pool2d`: max or average pooling of `planes` channel planes, reading a compact input
/// through `in_map` when `in_map_kind` is not 0. Output is dense `[planes, out_h · out_w]`.
///
/// Average pooling follows PyTorch/ONNX Runtime: the window is clipped to the padded
/// input (`H + pad_bottom`, `W + pad_right`) for the `count_include_pad` divisor, and to
/// the input itself for the values and the other divisor. Reading through a map keeps
/// duplicates, so the result equals pooling of the interpolated map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Pool2dParams {
    /// Channel planes (batch · channels).
    pub planes: u32,
    /// Input height.
    pub in_h: u32,
    /// Input width.
    pub in_w: u32,
    /// Elements per input plane: H·W, or N for a compact input.
    pub in_plane: u32,
    /// Output height.
    pub out_h: u32,
    /// Output width.
    pub out_w: u32,
    /// Window height.
    pub kernel_h: u32,
    /// Window width.
    pub kernel_w: u32,
    /// Vertical stride.
    pub stride_h: u32,
    /// Horizontal stride.
    pub stride_w: u32,
    /// Padding above.
    pub pad_top: u32,
    /// Padding left.
    pub pad_left: u32,
    /// Padding below.
    pub pad_bottom: u32,
    /// Padding right.
    pub pad_right: u32,
    /// 0 = max, 1 = average.
    pub mode: u32,
    /// Average pooling: 1 to divide by the window clipped to the padded input.
    pub count_include_pad: u32,
    /// 0 for a dense input; else the input is compact and read through `in_map`, a map
    /// of this [`crate::MapKind::code`].
    pub in_map_kind: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad0: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad1: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad2: u32,
}

/// `lrn`: local response normalisation across channels (ONNX semantics):
/// `y = x / (bias + alpha / size · Σ x²)^beta`, the sum over channels
/// `c − ⌊(size−1)/2⌋ ..= c + ⌈(size−1)/2⌉` at the same position.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct LrnParams {
    /// Images.
    pub images: u32,
    /// Channels.
    pub channels: u32,
    /// Elements per channel plane (H·W, or N for a compact tensor).
    pub positions: u32,
    /// Window size in channels.
    pub size: u32,
    /// Scale of the sum of squares.
    pub alpha: f32,
    /// Exponent.
    pub beta: f32,
    /// Additive constant (ONNX `bias`, Caffe `k`).
    pub bias: f32,
    /// Padding to a multiple of 16 bytes.
    pub _pad: u32,
}

/// `relu`: `out[i] = max(x[i], 0)` for `len` elements.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ReluParams {
    /// Elements.
    pub len: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad0: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad1: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad2: u32,
}

/// `add`: `out[i] = act(a[i] + b[i])` for `len` elements.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct AddParams {
    /// Elements.
    pub len: u32,
    /// 1 to apply ReLU to the sum.
    pub relu: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad0: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad1: u32,
}

/// `channel_affine`: `out[i] = act(x[i] · scale[c] + shift[c])` with
/// `c = (i / plane) mod channels` (inference batch normalisation).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ChannelAffineParams {
    /// Elements.
    pub len: u32,
    /// Channels.
    pub channels: u32,
    /// Elements per channel plane (H·W, or N for a compact tensor).
    pub plane: u32,
    /// 1 to apply ReLU.
    pub relu: u32,
}

/// `softmax`: softmax of each of `rows` rows of `cols` values.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SoftmaxParams {
    /// Images.
    pub rows: u32,
    /// Values the softmax runs over (channels; the classes of a flat tensor).
    pub cols: u32,
    /// Positions per channel (1 for a flat tensor): each position has its own softmax.
    pub plane: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad1: u32,
}

/// `clip`: `out[i] = min(max(x[i], min), max)` for `len` elements.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct ClipParams {
    /// Elements.
    pub len: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad: u32,
    /// Lower bound.
    pub min: f32,
    /// Upper bound.
    pub max: f32,
}

/// `unary`: `out[i] = f(x[i])` for `len` elements, f chosen by `op`
/// ([`crate::network::Unary::code`]) with its constants `alpha`, `beta`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct UnaryParams {
    /// Elements.
    pub len: u32,
    /// Function code.
    pub op: u32,
    /// First constant of the function.
    pub alpha: f32,
    /// Second constant of the function.
    pub beta: f32,
}

/// `binary`: `out[i] = f(a[ia], b[ib])` for `len` elements, f chosen by `op`
/// ([`crate::network::Binary::code`]). `broadcast` 0: both indices `i`; 1: `b` holds one
/// value per plane (per image and channel, `ib = i / plane`); 2: `a` does; 3: `b` holds
/// one value per image and position (one channel, `ib = (i / (channels · plane)) · plane +
/// i mod plane`); 4: `a` does.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BinaryParams {
    /// Elements of the output.
    pub len: u32,
    /// Function code.
    pub op: u32,
    /// Elements per plane (H·W, or N for a compact tensor) of the full-size operand.
    pub plane: u32,
    /// How the operands broadcast (see above).
    pub broadcast: u32,
    /// Channels of the full-size operand.
    pub channels: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad0: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad1: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad2: u32,
}

/// `select_channels`: `out[b, k, p] = x[b, channels[k], p]`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SelectChannelsParams {
    /// Images.
    pub images: u32,
    /// Channels of the input.
    pub in_channels: u32,
    /// Channels of the output (entries of the channel table).
    pub out_channels: u32,
    /// Elements per channel plane (H·W, or N for a compact tensor).
    pub plane: u32,
}

/// `reduce_channels`: `out[n, 0, p] = reduce_c x[n, c, p]` (mean, sum or max over the
/// channels at each position; `op` 0, 1, 2).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ReduceChannelsParams {
    /// Images.
    pub images: u32,
    /// Channels reduced.
    pub channels: u32,
    /// Elements per channel plane (H·W, or N for a compact tensor).
    pub plane: u32,
    /// 0 mean, 1 sum, 2 max.
    pub op: u32,
}

/// `resample`: `out[p, y, x] = Σ_i Σ_j wr[y, i] · wc[x, j] · v(r[y, i], c[x, j])` over
/// `taps` row taps and `taps` column taps, `v` the input value or `fill` when either
/// index is `RESAMPLE_FILL`; a tap of weight 0 contributes nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct ResampleParams {
    /// Planes (images · channels).
    pub planes: u32,
    /// Input height.
    pub in_h: u32,
    /// Input width.
    pub in_w: u32,
    /// Output height.
    pub out_h: u32,
    /// Output width.
    pub out_w: u32,
    /// Taps per output row and per output column.
    pub taps: u32,
    /// The value read through a `RESAMPLE_FILL` index.
    pub fill: f32,
    /// Padding to a multiple of 16 bytes.
    pub _pad0: u32,
}

/// The index of a `resample` tap that reads the fill value.
pub const RESAMPLE_FILL: u32 = u32::MAX;

/// `select_elements`: `out[i] = a[i]` where `cond[i] != 0`, else `b[i]`, for `len`
/// elements.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct SelectElementsParams {
    /// Elements.
    pub len: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad0: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad1: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad2: u32,
}

/// `conv_fused`: the product of `matmul_tiled` with B computed from the input as
/// `im2col_masked` would write it (its fields, as in those two parameter blocks).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod, Zeroable)]
pub struct ConvFusedParams {
    /// Rows of the product (output channels of the group in this launch).
    pub m: u32,
    /// Columns (image · mask entry) in this chunk.
    pub n: u32,
    /// Depth: group channels · kh · kw.
    pub k: u32,
    /// Row stride of the packed weights (a multiple of 4).
    pub lda: u32,
    /// First row of A for this launch.
    pub a_row_offset: u32,
    /// 1: ReLU after the bias.
    pub relu: u32,
    /// First global column (image · N + entry) of this chunk.
    pub col_start: u32,
    /// Mask entries per image N.
    pub n_pos: u32,
    /// Output channels of the whole tensor.
    pub out_channels: u32,
    /// First output channel of this launch.
    pub out_channel_offset: u32,
    /// Upper bound after the ReLU (0: none).
    pub relu_cap: f32,
    /// Dense input height.
    pub in_h: u32,
    /// Dense input width.
    pub in_w: u32,
    /// Elements per input channel plane (H·W, or N_prev for a compact input).
    pub in_plane: u32,
    /// Input channels of the whole tensor.
    pub channels: u32,
    /// First input channel of this group.
    pub channel_offset: u32,
    /// Kernel height.
    pub kernel_h: u32,
    /// Kernel width.
    pub kernel_w: u32,
    /// Vertical stride.
    pub stride_h: u32,
    /// Horizontal stride.
    pub stride_w: u32,
    /// Padding above.
    pub pad_top: u32,
    /// Padding left.
    pub pad_left: u32,
    /// Vertical dilation.
    pub dilation_h: u32,
    /// Horizontal dilation.
    pub dilation_w: u32,
    /// Output width W'.
    pub out_w: u32,
    /// Input map code (0: dense input).
    pub in_map_kind: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad0: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad1: u32,
}

impl ConvFusedParams {
    /// The fused launch of one `im2col_masked → matmul_tiled` step.
    pub fn of(im2col: &Im2colMaskedParams, matmul: &MatmulTiledParams) -> Self {
        ConvFusedParams {
            m: matmul.m,
            n: matmul.n,
            k: matmul.k,
            lda: matmul.lda,
            a_row_offset: matmul.a_row_offset,
            relu: matmul.relu,
            col_start: matmul.col_start,
            n_pos: matmul.n_pos,
            out_channels: matmul.out_channels,
            out_channel_offset: matmul.out_channel_offset,
            relu_cap: matmul.relu_cap,
            in_h: im2col.in_h,
            in_w: im2col.in_w,
            in_plane: im2col.in_plane,
            channels: im2col.channels,
            channel_offset: im2col.channel_offset,
            kernel_h: im2col.kernel_h,
            kernel_w: im2col.kernel_w,
            stride_h: im2col.stride_h,
            stride_w: im2col.stride_w,
            pad_top: im2col.pad_top,
            pad_left: im2col.pad_left,
            dilation_h: im2col.dilation_h,
            dilation_w: im2col.dilation_w,
            out_w: im2col.out_w,
            in_map_kind: im2col.in_map_kind,
            _pad0: 0,
            _pad1: 0,
        }
    }
}

/// `strided_copy`: per image, output element `i` (row-major over `d0..d7`) is input
/// element `offset + Σ i_t · s_t`; images are `in_image` and `out_image` elements apart
/// (`in_image` 0 repeats one block for every image: a constant).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct StridedCopyParams {
    /// Images.
    pub images: u32,
    /// Input elements per image (0: every image reads the same block).
    pub in_image: u32,
    /// Output elements per image.
    pub out_image: u32,
    /// Input element of output element 0.
    pub offset: u32,
    /// Output axis 0 (outermost; unused leading axes are 1).
    pub d0: u32,
    /// Output axis 1.
    pub d1: u32,
    /// Output axis 2.
    pub d2: u32,
    /// Output axis 3.
    pub d3: u32,
    /// Output axis 4.
    pub d4: u32,
    /// Output axis 5.
    pub d5: u32,
    /// Output axis 6.
    pub d6: u32,
    /// Output axis 7 (innermost).
    pub d7: u32,
    /// Input stride of axis 0.
    pub s0: u32,
    /// Input stride of axis 1.
    pub s1: u32,
    /// Input stride of axis 2.
    pub s2: u32,
    /// Input stride of axis 3.
    pub s3: u32,
    /// Input stride of axis 4.
    pub s4: u32,
    /// Input stride of axis 5.
    pub s5: u32,
    /// Input stride of axis 6.
    pub s6: u32,
    /// Input stride of axis 7.
    pub s7: u32,
}

impl StridedCopyParams {
    /// Output axes and their input strides, outermost first.
    pub fn axes(&self) -> [(u32, u32); 8] {
        [
            (self.d0, self.s0),
            (self.d1, self.s1),
            (self.d2, self.s2),
            (self.d3, self.s3),
            (self.d4, self.s4),
            (self.d5, self.s5),
            (self.d6, self.s6),
            (self.d7, self.s7),
        ]
    }
}

/// `matmul_strided`: per image and batch index `(i, j)` of `b0 × b1`, the `m × n` product
/// of A (`m × k`) and B (`k × n`), every operand addressed through its strides
/// (`a_*`, `b_*`, `o_*`: batch 0, batch 1, row, column); images are `a_image`, `b_image`,
/// `out_image` elements apart.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct MatmulStridedParams {
    /// Images.
    pub images: u32,
    /// Elements of A per image.
    pub a_image: u32,
    /// Elements of B per image.
    pub b_image: u32,
    /// Output elements per image.
    pub out_image: u32,
    /// Batch axis 0.
    pub b0: u32,
    /// Batch axis 1.
    pub b1: u32,
    /// Rows of A and of the output.
    pub m: u32,
    /// Columns of A, rows of B.
    pub k: u32,
    /// Columns of B and of the output.
    pub n: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad0: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad1: u32,
    /// Padding to a multiple of 16 bytes.
    pub _pad2: u32,
    /// A's stride along batch axis 0.
    pub a_b0: u32,
    /// A's stride along batch axis 1.
    pub a_b1: u32,
    /// A's row stride.
    pub a_m: u32,
    /// A's column stride.
    pub a_k: u32,
    /// B's stride along batch axis 0.
    pub b_b0: u32,
    /// B's stride along batch axis 1.
    pub b_b1: u32,
    /// B's row stride.
    pub b_k: u32,
    /// B's column stride.
    pub b_n: u32,
    /// The output's stride along batch axis 0.
    pub o_b0: u32,
    /// The output's stride along batch axis 1.
    pub o_b1: u32,
    /// The output's row stride.
    pub o_m: u32,
    /// The output's column stride.
    pub o_n: u32,
}
