//! Spatial resampling as explicit taps: padding (constant, reflect, edge, wrap), cropping,
//! strided slicing and resizing (nearest, linear, cubic) are all one separable layer,
//! [`Resample`], whose taps are computed here once, on the CPU, when a model is imported.
//!
//! Each output row reads a few input rows with weights, each output column a few input
//! columns; an output value is the sum over both tap lists of the products of the
//! weights times the input value at (row, column). The functions below build the taps of
//! one axis; [`Resample::new`] pairs a row list with a column list.

use serde::{Deserialize, Serialize};

use crate::error::to_u32;
use crate::params::{ResampleParams, RESAMPLE_FILL};

/// One input row (or column) read by an output row (or column), with its weight.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Tap {
    /// The input row or column; `None` reads the layer's `fill` value (constant padding,
    /// the extrapolation value of a crop-and-resize).
    pub index: Option<usize>,
    /// Its weight. A tap of weight 0 contributes nothing, even when the input value is
    /// NaN or infinite there.
    pub weight: f32,
}

impl Tap {
    /// Input `index` with weight 1.
    pub fn at(index: usize) -> Self {
        Tap { index: Some(index), weight: 1.0 }
    }

    /// The fill value with weight 1.
    pub fn fill() -> Self {
        Tap { index: None, weight: 1.0 }
    }

    /// A tap that contributes nothing (to pad a shorter tap list).
    pub fn none() -> Self {
        Tap { index: None, weight: 0.0 }
    }
}

/// `out[n, c, y, x] = Σ_i Σ_j r.weight · s.weight · v(r.index, s.index)` over the taps
/// `r` of output row `y` and `s` of output column `x`, where `v` is the input value at
/// that row and column, or `fill` when either index is `None`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resample {
    /// Taps per output row and per output column.
    pub taps: usize,
    /// `out_height · taps` row taps, output row by output row.
    pub rows: Vec<Tap>,
    /// `out_width · taps` column taps, output column by output column.
    pub cols: Vec<Tap>,
    /// The value read through a `None` index.
    pub fill: f32,
}

impl Resample {
    /// Pairs per-row and per-column tap lists (each output row or column may have a
    /// different number of taps; shorter lists are padded with taps of weight 0).
    pub fn new(rows: &[Vec<Tap>], cols: &[Vec<Tap>], fill: f32) -> Self {
        let taps = rows.iter().chain(cols).map(Vec::len).max().unwrap_or(1).max(1);
        let flat = |lists: &[Vec<Tap>]| {
            lists
                .iter()
                .flat_map(|l| l.iter().copied().chain(std::iter::repeat(Tap::none())).take(taps))
                .collect()
        };
        Resample { taps, rows: flat(rows), cols: flat(cols), fill }
    }

    /// Output height.
    pub fn out_height(&self) -> usize {
        self.rows.len() / self.taps.max(1)
    }

    /// Output width.
    pub fn out_width(&self) -> usize {
        self.cols.len() / self.taps.max(1)
    }

    /// The kernel's tables: the indices of the row taps then the column taps
    /// ([`RESAMPLE_FILL`] for `None`), and their weights in the same order.
    pub fn tables(&self) -> crate::error::Result<(Vec<u32>, Vec<f32>)> {
        let taps = self.rows.iter().chain(&self.cols);
        let index = taps
            .clone()
            .map(|t| t.index.map_or(Ok(RESAMPLE_FILL), |i| to_u32(i, "resample tap index")))
            .collect::<crate::error::Result<_>>()?;
        Ok((index, taps.map(|t| t.weight).collect()))
    }

    /// The launch parameters for `planes` planes of `height x width` (checked with
    /// [`Resample::check`] first).
    pub fn params(&self, planes: usize, height: usize, width: usize) -> crate::error::Result<ResampleParams> {
        self.check(height, width).map_err(crate::error::Error::InvalidArgument)?;
        Ok(ResampleParams {
            planes: to_u32(planes, "planes")?,
            in_h: to_u32(height, "height")?,
            in_w: to_u32(width, "width")?,
            out_h: to_u32(self.out_height(), "height")?,
            out_w: to_u32(self.out_width(), "width")?,
            taps: to_u32(self.taps, "taps")?,
            fill: self.fill,
            _pad0: 0,
        })
    }

    /// Checks the tap lists against an input of `height x width`; the message says what
    /// does not fit.
    pub fn check(&self, height: usize, width: usize) -> std::result::Result<(), String> {
        if self.taps == 0 {
            return Err("zero taps per output row".into());
        }
        for (what, list, len) in [("row", &self.rows, height), ("column", &self.cols, width)] {
            if list.is_empty() || list.len() % self.taps != 0 {
                return Err(format!(
                    "{} {what} taps do not make whole output {what}s of {} taps",
                    list.len(),
                    self.taps
                ));
            }
            if let Some((k, t)) = list.iter().enumerate().find(|(_, t)| t.index.is_some_and(|i| i >= len)) {
                return Err(format!(
                    "output {what} {} reads input {what} {} of {len}",
                    k / self.taps,
                    t.index.unwrap_or(0)
                ));
            }
            if let Some(t) = list.iter().find(|t| !t.weight.is_finite()) {
                return Err(format!("a {what} tap has weight {}", t.weight));
            }
        }
        Ok(())
    }
}

/// The taps of each output position of one axis, or why they cannot be built.
pub type AxisTaps = std::result::Result<Vec<Vec<Tap>>, String>;

/// How padding fills positions outside the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    /// A constant value.
    Constant,
    /// The input mirrored about its first and last element (not repeated).
    Reflect,
    /// The first or last element repeated.
    Edge,
    /// The input repeated periodically.
    Wrap,
}

/// The taps of one axis of length `len` padded by `begin` before and `end` after (a
/// negative amount crops). Errors when nothing is left.
pub fn pad_axis(len: usize, begin: i64, end: i64, mode: PadMode) -> AxisTaps {
    let len_i = i64::try_from(len).map_err(|_| "axis too long".to_string())?;
    let out = len_i + begin + end;
    if out <= 0 || len == 0 {
        return Err(format!("padding {begin} and {end} leave nothing of an axis of {len}"));
    }
    Ok((0..out)
        .map(|o| {
            let i = o - begin;
            let index = if (0..len_i).contains(&i) {
                i
            } else {
                match mode {
                    PadMode::Constant => return vec![Tap::fill()],
                    PadMode::Edge => i.clamp(0, len_i - 1),
                    PadMode::Wrap => i.rem_euclid(len_i),
                    PadMode::Reflect if len_i == 1 => 0,
                    PadMode::Reflect => {
                        let period = 2 * (len_i - 1);
                        let m = i.rem_euclid(period);
                        if m < len_i {
                            m
                        } else {
                            period - m
                        }
                    }
                }
            };
            vec![Tap::at(usize::try_from(index).unwrap_or(0))]
        })
        .collect())
}

/// The taps of a slice `start..end` by `step` of an axis of `len` (ONNX Slice semantics:
/// negative indices count from the end, out-of-range bounds are clamped, a negative step
/// walks backwards). Errors when the slice is empty or the step is 0.
pub fn slice_axis(len: usize, start: i64, end: i64, step: i64) -> AxisTaps {
    let n = i64::try_from(len).map_err(|_| "axis too long".to_string())?;
    if step == 0 {
        return Err("slice step 0".into());
    }
    let resolve = |v: i64| if v < 0 { v.saturating_add(n) } else { v };
    let (start, end) = if step > 0 {
        (resolve(start).clamp(0, n), resolve(end).clamp(0, n))
    } else {
        (resolve(start).clamp(-1, n - 1), resolve(end).clamp(-1, n - 1))
    };
    let mut taps = Vec::new();
    let mut i = start;
    while (step > 0 && i < end) || (step < 0 && i > end) {
        taps.push(vec![Tap::at(usize::try_from(i).unwrap_or(0))]);
        i = i.saturating_add(step);
    }
    if taps.is_empty() {
        return Err(format!("slice {start}..{end} by {step} of an axis of {len} is empty"));
    }
    Ok(taps)
}

/// How a resize maps an output coordinate to an input coordinate (ONNX Resize's
/// `coordinate_transformation_mode`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Coordinates {
    /// `(o + 0.5) / scale − 0.5`.
    HalfPixel,
    /// As half-pixel, with an offset that keeps the result symmetric when the output
    /// length was rounded.
    HalfPixelSymmetric,
    /// As half-pixel, but 0 when the output has length 1.
    PytorchHalfPixel,
    /// `o · (in − 1) / (out − 1)`.
    AlignCorners,
    /// `o / scale`.
    Asymmetric,
    /// `(o + 0.5) / scale`.
    TfHalfPixelForNn,
    /// A crop given by a region of interest `[start, end]` in normalised coordinates;
    /// coordinates outside the input read the extrapolation value.
    TfCropAndResize {
        /// Start of the region, in `[0, 1]` of the input.
        start: f32,
        /// End of the region.
        end: f32,
    },
}

/// How a nearest-neighbour resize rounds a coordinate (ONNX `nearest_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nearest {
    /// Round, halves down.
    RoundPreferFloor,
    /// Round, halves up.
    RoundPreferCeil,
    /// Round down.
    Floor,
    /// Round up.
    Ceil,
    /// Opset 10 and Upsample: round down when enlarging, up when shrinking.
    Legacy,
}

/// The interpolation of a resize.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ResizeMode {
    /// The nearest input value.
    Nearest(Nearest),
    /// Linear between the two neighbours.
    Linear,
    /// Cubic over four neighbours with coefficient `a`; with `exclude_outside` the
    /// weights of neighbours outside the input are dropped and the rest renormalised.
    Cubic {
        /// The cubic coefficient (−0.75 in ONNX, −0.5 in some libraries).
        a: f32,
        /// Drop the neighbours outside the input.
        exclude_outside: bool,
    },
}

/// The input coordinate of output position `o` (arithmetic in f32, as onnxruntime does
/// it, so that halves round the same way). `None` is outside a crop-and-resize region.
fn source(o: usize, scale: f32, len_in: usize, len_out: usize, mode: Coordinates) -> Option<f32> {
    #![allow(clippy::cast_precision_loss)]
    let (o, n_in, n_out) = (o as f32, len_in as f32, len_out as f32);
    let x = match mode {
        Coordinates::HalfPixel => (o + 0.5) / scale - 0.5,
        Coordinates::HalfPixelSymmetric => {
            let adjustment = n_out / (scale * n_in);
            let center = n_in / 2.0;
            center * (1.0 - adjustment) + (o + 0.5) / scale - 0.5
        }
        Coordinates::PytorchHalfPixel if len_out > 1 => (o + 0.5) / scale - 0.5,
        Coordinates::PytorchHalfPixel => 0.0,
        Coordinates::AlignCorners if len_out == 1 => 0.0,
        Coordinates::AlignCorners => o * (n_in - 1.0) / (n_out - 1.0),
        Coordinates::Asymmetric => o / scale,
        Coordinates::TfHalfPixelForNn => (o + 0.5) / scale,
        Coordinates::TfCropAndResize { start, end } => {
            let x = if len_out > 1 {
                start * (n_in - 1.0) + o * (end - start) * (n_in - 1.0) / (n_out - 1.0)
            } else {
                0.5 * (start + end) * (n_in - 1.0)
            };
            if x < 0.0 || x > n_in - 1.0 {
                return None;
            }
            x
        }
    };
    Some(x)
}

/// The taps of one axis resized from `len_in` to `len_out` with `scale` (output length
/// over input length as the model states it; it may differ from `len_out / len_in` when
/// the output length was rounded).
pub fn resize_axis(
    len_in: usize,
    len_out: usize,
    scale: f32,
    coordinates: Coordinates,
    mode: ResizeMode,
) -> AxisTaps {
    #![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    if len_in == 0 || len_out == 0 || !(scale.is_finite() && scale > 0.0) {
        return Err(format!("resize of an axis of {len_in} to {len_out} with scale {scale}"));
    }
    let last = len_in as i64 - 1;
    let clamp = |i: i64| i.clamp(0, last) as usize;
    let lists = (0..len_out).map(|o| {
        let Some(x) = source(o, scale, len_in, len_out, coordinates) else { return vec![Tap::fill()] };
        match mode {
            ResizeMode::Nearest(n) => {
                let r = match n {
                    Nearest::RoundPreferFloor if x == x.floor() + 0.5 => x.floor(),
                    Nearest::RoundPreferCeil if x == x.floor() + 0.5 => x.ceil(),
                    Nearest::RoundPreferFloor | Nearest::RoundPreferCeil => x.round(),
                    Nearest::Floor => x.floor(),
                    Nearest::Ceil => x.ceil(),
                    Nearest::Legacy if scale < 1.0 => x.ceil(),
                    Nearest::Legacy => x.trunc(),
                };
                vec![Tap::at(clamp(r as i64))]
            }
            ResizeMode::Linear => {
                let x = x.clamp(0.0, last as f32);
                let i0 = (x as i64).min(last);
                let i1 = (i0 + 1).min(last);
                if i0 == i1 {
                    vec![Tap::at(clamp(i0))]
                } else {
                    let w1 = x - i0 as f32;
                    vec![
                        Tap { index: Some(clamp(i0)), weight: 1.0 - w1 },
                        Tap { index: Some(clamp(i1)), weight: w1 },
                    ]
                }
            }
            ResizeMode::Cubic { a, exclude_outside } => {
                let base = x.floor();
                let t = x - base;
                let coeffs = cubic(t, a);
                let first = base as i64 - 1;
                let inside = |k: usize| (0..=last).contains(&(first + k as i64));
                let total: f32 = if exclude_outside {
                    (0..4).filter(|&k| inside(k)).map(|k| coeffs[k]).sum()
                } else {
                    1.0
                };
                (0..4)
                    .filter(|&k| !exclude_outside || inside(k))
                    .map(|k| Tap { index: Some(clamp(first + k as i64)), weight: coeffs[k] / total })
                    .collect()
            }
        }
    });
    Ok(lists.collect())
}

/// Keys' cubic convolution weights of the four neighbours `floor(x) − 1 ..= floor(x) + 2`
/// at fractional offset `t`.
fn cubic(t: f32, a: f32) -> [f32; 4] {
    let far = |d: f32| ((a * d - 5.0 * a) * d + 8.0 * a) * d - 4.0 * a;
    let near = |d: f32| ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0;
    [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)]
}
