//! Operators that move values across the spatial axes: Pad (constant, reflect, edge,
//! wrap; a zero Pad before a Conv is absorbed into the Conv's padding), Resize and
//! Upsample (nearest, linear, cubic, every coordinate transformation), and Slice of H and
//! W. All but the absorbed Pad become one [`Resample`] layer whose taps are built here.

// Sizes, axes and pads are integers read from the model; they are range-checked where used.
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, clippy::cast_sign_loss)]
#![allow(clippy::cast_precision_loss)]

use super::fold;
use super::import::{attr_f, attr_i, attr_ints, attr_s, bad, Importer, Shape};
use super::proto::NodeProto;
use super::tensor::{Constant, BATCH};
use crate::error::Result;
use crate::network::{
    pad_axis, resize_axis, AxisTaps, Coordinates, Nearest, Op, PadMode, Resample, ResizeMode, Tap,
};

impl Importer<'_> {
    /// Pushes a [`Resample`] of the H and W axes of the activation `x` as `node`'s output.
    fn push_resample(
        &mut self,
        node: &NodeProto,
        x: &str,
        s: Shape,
        rows: AxisTaps,
        cols: AxisTaps,
        fill: f32,
    ) -> Result<()> {
        let rows = rows.map_err(|e| bad(node, format!("rows: {e}")))?;
        let cols = cols.map_err(|e| bad(node, format!("columns: {e}")))?;
        let r = Resample::new(&rows, &cols, fill);
        let shape = Shape::map(s.c, r.out_height(), r.out_width());
        self.push(node, Op::Resample(r), &[x], shape);
        Ok(())
    }

    /// Pad of the spatial axes: a non-negative zero Pad that only Convs read is absorbed
    /// into their padding; anything else (reflect, edge, wrap, a non-zero value, negative
    /// amounts that crop, a Pad read by other layers) becomes a resample.
    pub(super) fn pad(&mut self, node: &NodeProto, nodes: &[NodeProto], index: usize) -> Result<()> {
        let zero = if self.opset < 11 {
            attr_ints(node, "pads").unwrap_or_default()
        } else {
            self.required(node, 1, "pads")?.to_ints()
        };
        if zero.iter().all(|&p| p == 0) {
            // Padding by nothing (Swin pads to a multiple of its window): any view passes.
            let v = self.value_view(node, 0)?;
            self.alias(node, v);
            return Ok(());
        }
        let (x, s) = self.value(node, 0)?;
        let mode = match attr_s(node, "mode").as_str() {
            "" | "constant" => PadMode::Constant,
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            "wrap" => PadMode::Wrap,
            other => {
                return Err(bad(
                    node,
                    format!("mode '{other}' is not supported (constant, reflect, edge and wrap are)"),
                ))
            }
        };
        let (pads, value) = if self.opset < 11 {
            (attr_ints(node, "pads").unwrap_or_default(), attr_f(node, "value", 0.0))
        } else {
            let pads = self.required(node, 1, "pads")?.to_ints();
            let value = self
                .constant(node, 2, "constant_value")?
                .and_then(|c| c.floats.first().copied())
                .unwrap_or(0.0);
            (pads, value)
        };
        let rank = s.dims().len() + 1;
        let axes: Vec<usize> = match self.constant(node, 3, "axes")? {
            Some(a) => a.to_ints().iter().map(|&v| fold::axis(node, v, rank)).collect::<Result<_>>()?,
            None => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(bad(node, format!("{} pads for {} axes", pads.len(), axes.len())));
        }
        // [top, left, bottom, right]
        let mut tlbr = [0i64; 4];
        let n = axes.len();
        for (k, &a) in axes.iter().enumerate() {
            let (begin, end) = (pads[k], pads[k + n]);
            match a {
                2 if rank == 4 => (tlbr[0], tlbr[2]) = (begin, end),
                3 if rank == 4 => (tlbr[1], tlbr[3]) = (begin, end),
                _ if begin == 0 && end == 0 => {}
                _ => {
                    return Err(bad(
                        node,
                        format!("padding axis {a} of [N, {:?}] is not supported (only H and W)", s.dims()),
                    ))
                }
            }
        }
        if tlbr == [0; 4] {
            self.alias(node, (x, s));
            return Ok(());
        }
        let out = &node.output[0];
        let mut readers = nodes.iter().skip(index + 1).filter(|n| n.input.contains(out)).peekable();
        let absorbable = mode == PadMode::Constant
            && value == 0.0
            && tlbr.iter().all(|&p| p >= 0)
            && readers.peek().is_some()
            && readers.all(|n| {
                n.op_type == "Conv"
                    && n.input.iter().skip(1).all(|i| i != out)
                    && matches!(attr_s(n, "auto_pad").as_str(), "" | "NOTSET" | "VALID")
            });
        if absorbable {
            self.zero_pads.insert(out.clone(), tlbr.map(|p| p as usize));
            self.alias(node, (x, s));
            return Ok(());
        }
        let rows = pad_axis(s.h, tlbr[0], tlbr[2], mode);
        let cols = pad_axis(s.w, tlbr[1], tlbr[3], mode);
        self.push_resample(node, &x, s, rows, cols, value)
    }

    /// Slice of the rows and columns of `[N, C, H, W]` (`ranges`: the kept channels, rows
    /// and columns, in order): the channels are selected first, then the rows and columns.
    pub(super) fn slice_spatial(
        &mut self,
        node: &NodeProto,
        x: &str,
        s: Shape,
        ranges: &[Vec<usize>],
    ) -> Result<()> {
        let [channels, rows, cols] = ranges else {
            return Err(bad(node, format!("slice of [N, {:?}] is not supported", s.dims())));
        };
        if channels.is_empty() || rows.is_empty() || cols.is_empty() {
            return Err(bad(node, "the slice is empty"));
        }
        let mut input = x.to_string();
        let mut shape = s;
        if channels.len() != s.c || channels.iter().enumerate().any(|(i, &c)| i != c) {
            input =
                self.push_named(node, "channels", Op::SelectChannels { channels: channels.clone() }, &[x]);
            shape = Shape { c: channels.len(), ..s };
        }
        let taps = |r: &[usize]| Ok(r.iter().map(|&i| vec![Tap::at(i)]).collect());
        self.push_resample(node, &input, shape, taps(rows), taps(cols), 0.0)
    }

    /// Resize and Upsample (opset 9) of the spatial axes.
    pub(super) fn resize(&mut self, node: &NodeProto) -> Result<()> {
        let (x, s) = self.value(node, 0)?;
        if s.rank != 4 {
            return Err(bad(
                node,
                format!("resizing [N, {:?}] is not supported (only [N, C, H, W])", s.dims()),
            ));
        }
        let upsample = node.op_type == "Upsample";
        let legacy = upsample || self.opset < 11;
        let mode = attr_s(node, "mode");
        let mode = match mode.as_str() {
            "" | "nearest" => ResizeMode::Nearest(self.nearest_mode(node, legacy)?),
            "linear" | "bilinear" => ResizeMode::Linear,
            "cubic" if !legacy => ResizeMode::Cubic {
                a: attr_f(node, "cubic_coeff_a", -0.75),
                exclude_outside: attr_i(node, "exclude_outside", 0) != 0,
            },
            other => {
                return Err(bad(
                    node,
                    format!("mode '{other}' is not supported (nearest, linear and cubic are)"),
                ))
            }
        };
        let dims = [s.c, s.h, s.w];
        // Scales and sizes per axis after the batch (1 and the input size where absent).
        let axes: Vec<usize> = match attr_ints(node, "axes") {
            Some(a) => a.iter().map(|&v| fold::axis(node, v, 4)).collect::<Result<_>>()?,
            None => (0..4).collect(),
        };
        let (scales_in, sizes_in) = if legacy {
            (self.required(node, 1, "scales").map(|c| c.floats.clone())?, Vec::new())
        } else {
            let scales = self.constant(node, 2, "scales")?.map(|c| c.floats.clone()).unwrap_or_default();
            let sizes = self.constant(node, 3, "sizes")?.map(Constant::to_ints).unwrap_or_default();
            (scales, sizes)
        };
        let (mut scale, mut size) = ([1.0f32; 3], dims);
        if !sizes_in.is_empty() {
            if sizes_in.len() != axes.len() || !scales_in.is_empty() {
                return Err(bad(
                    node,
                    format!("sizes {sizes_in:?} for {} axes (and scales must be empty)", axes.len()),
                ));
            }
            let mut want = dims.map(|d| d as i64);
            for (k, &a) in axes.iter().enumerate() {
                if a == 0 && (sizes_in[k] == BATCH || sizes_in[k] > 0) {
                    continue; // the batch keeps its size: images are resized one by one
                }
                if a == 0 || sizes_in[k] <= 0 {
                    return Err(bad(node, format!("sizes {sizes_in:?}: each must be positive")));
                }
                want[a - 1] = sizes_in[k];
            }
            let ratio = |i: usize| want[i] as f32 / dims[i] as f32;
            let policy = attr_s(node, "keep_aspect_ratio_policy");
            let resized: Vec<usize> = axes.iter().filter(|&&a| a > 0).map(|&a| a - 1).collect();
            let common = match policy.as_str() {
                "" | "stretch" => None,
                "not_larger" => resized.iter().map(|&i| ratio(i)).reduce(f32::min),
                "not_smaller" => resized.iter().map(|&i| ratio(i)).reduce(f32::max),
                other => return Err(bad(node, format!("keep_aspect_ratio_policy '{other}' is unknown"))),
            };
            for &i in &resized {
                scale[i] = common.unwrap_or(ratio(i));
                size[i] = match common {
                    Some(r) => (r * dims[i] as f32).round() as usize,
                    None => want[i] as usize,
                };
            }
        } else {
            if scales_in.len() != axes.len() {
                return Err(bad(
                    node,
                    format!("scales {scales_in:?} for {} axes (or sizes) expected", axes.len()),
                ));
            }
            for (k, &a) in axes.iter().enumerate() {
                let v = scales_in[k];
                if !(v.is_finite() && v > 0.0) {
                    return Err(bad(node, format!("scale {v} of axis {a} is not a positive number")));
                }
                if a == 0 {
                    if v != 1.0 {
                        return Err(bad(node, format!("scaling the batch axis by {v} is not supported")));
                    }
                    continue;
                }
                scale[a - 1] = v;
                size[a - 1] = (v * dims[a - 1] as f32) as usize;
            }
        }
        if size[0] != s.c || scale[0] != 1.0 {
            return Err(bad(
                node,
                format!("resizing the channels ({} to {}) is not supported", s.c, size[0]),
            ));
        }
        if size[1] == 0 || size[2] == 0 {
            return Err(bad(node, format!("the output would be {}x{}", size[1], size[2])));
        }
        if attr_i(node, "antialias", 0) != 0
            && !matches!(mode, ResizeMode::Nearest(_))
            && (scale[1] < 1.0 || scale[2] < 1.0)
        {
            return Err(bad(node, "antialiased downsampling is not supported"));
        }
        let coordinates = if legacy { [Coordinates::Asymmetric; 2] } else { self.coordinates(node)? };
        let rows = resize_axis(s.h, size[1], scale[1], coordinates[0], mode);
        let cols = resize_axis(s.w, size[2], scale[2], coordinates[1], mode);
        let fill = attr_f(node, "extrapolation_value", 0.0);
        self.push_resample(node, &x, s, rows, cols, fill)
    }

    fn nearest_mode(&self, node: &NodeProto, legacy: bool) -> Result<Nearest> {
        if legacy {
            return Ok(Nearest::Legacy);
        }
        Ok(match attr_s(node, "nearest_mode").as_str() {
            "" | "round_prefer_floor" => Nearest::RoundPreferFloor,
            "round_prefer_ceil" => Nearest::RoundPreferCeil,
            "floor" => Nearest::Floor,
            "ceil" => Nearest::Ceil,
            other => return Err(bad(node, format!("nearest_mode '{other}' is unknown"))),
        })
    }

    /// The coordinate transformation of the rows and of the columns.
    fn coordinates(&self, node: &NodeProto) -> Result<[Coordinates; 2]> {
        let one = match attr_s(node, "coordinate_transformation_mode").as_str() {
            "" | "half_pixel" => Coordinates::HalfPixel,
            "half_pixel_symmetric" => Coordinates::HalfPixelSymmetric,
            "pytorch_half_pixel" => Coordinates::PytorchHalfPixel,
            "align_corners" => Coordinates::AlignCorners,
            "asymmetric" => Coordinates::Asymmetric,
            "tf_half_pixel_for_nn" => Coordinates::TfHalfPixelForNn,
            "tf_crop_and_resize" => {
                let roi = self.required(node, 1, "roi").map(|c| c.floats.clone())?;
                let axes: Vec<usize> = match attr_ints(node, "axes") {
                    Some(a) => a.iter().map(|&v| fold::axis(node, v, 4)).collect::<Result<_>>()?,
                    None => (0..4).collect(),
                };
                if roi.len() != 2 * axes.len() {
                    return Err(bad(
                        node,
                        format!("roi {roi:?} must hold a start and an end for each of {} axes", axes.len()),
                    ));
                }
                let n = axes.len();
                let at = |axis: usize| match axes.iter().position(|&a| a == axis) {
                    Some(k) => Coordinates::TfCropAndResize { start: roi[k], end: roi[k + n] },
                    None => Coordinates::TfCropAndResize { start: 0.0, end: 1.0 },
                };
                return Ok([at(2), at(3)]);
            }
            other => return Err(bad(node, format!("coordinate_transformation_mode '{other}' is unknown"))),
        };
        Ok([one; 2])
    }
}
