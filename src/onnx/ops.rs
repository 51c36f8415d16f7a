//! The importer's element-wise and layout operators: unary functions, arithmetic with
//! broadcasting (constant operands become per-channel affine maps), and the reshapes,
//! transposes, splits and slices that move whole channels (channel shuffle, chunk).

// Sizes, axes and pads are integers read from the model; they are range-checked where used.
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, clippy::cast_sign_loss)]

use super::fold;
use super::import::{attr, attr_f, attr_i, attr_ints, attr_s, bad, Importer, Shape};
use super::proto::NodeProto;
use super::shapes::{reshape_dims, slice_ranges};
use super::tensor::{batch_factor, symbolic, Constant, BATCH};
use crate::error::Result;
use crate::network::{Affine, Binary, Op, Unary};

/// Unary operators and the function each maps to.
pub(super) const UNARY_OPS: [&str; 16] = [
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "LeakyRelu",
    "Elu",
    "Erf",
    "Gelu",
    "Exp",
    "Log",
    "Sqrt",
    "Neg",
    "Abs",
    "Reciprocal",
    "Softplus",
    "PRelu",
];

/// Arithmetic operators with numpy broadcasting.
pub(super) const ARITH_OPS: [&str; 8] = ["Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Pow"];

enum Operand {
    Value(String, Shape),
    Constant(Constant),
}

impl Importer<'_> {
    fn operand(&self, node: &NodeProto, k: usize) -> Result<Operand> {
        let name = node
            .input
            .get(k)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad(node, format!("input {k} is missing")))?;
        match self.constants.get(name) {
            Some(c) => Ok(Operand::Constant(c.clone())),
            None => self.value_cl(node, k).map(|(n, s)| Operand::Value(n, s)),
        }
    }

    /// Layer name for output `k` of a node with several outputs.
    fn push_output(&mut self, node: &NodeProto, k: usize, op: Op, inputs: &[&str], shape: Shape) {
        let base = if node.name.is_empty() { node.output[k].clone() } else { format!("{}_{k}", node.name) };
        let name = self.unique_name(base);
        self.net.push(name.clone(), op, inputs);
        self.values.insert(node.output[k].clone(), (name, shape));
    }

    pub(super) fn unary(&mut self, node: &NodeProto) -> Result<()> {
        let (x, s) = self.value_cl(node, 0)?;
        let f = match node.op_type.as_str() {
            "Sigmoid" => Unary::Sigmoid,
            "HardSigmoid" => {
                Unary::HardSigmoid { alpha: attr_f(node, "alpha", 0.2), beta: attr_f(node, "beta", 0.5) }
            }
            "HardSwish" => Unary::HardSwish,
            "Tanh" => Unary::Tanh,
            "LeakyRelu" => Unary::LeakyRelu { alpha: attr_f(node, "alpha", 0.01) },
            "Elu" => Unary::Elu { alpha: attr_f(node, "alpha", 1.0) },
            "Erf" => Unary::Erf,
            "Gelu" => match attr_s(node, "approximate").as_str() {
                "" | "none" => Unary::Gelu,
                "tanh" => Unary::GeluTanh,
                other => return Err(bad(node, format!("approximate = '{other}' is not a GELU variant"))),
            },
            "Exp" => Unary::Exp,
            "Log" => Unary::Log,
            "Sqrt" => Unary::Sqrt,
            "Neg" => Unary::Neg,
            "Abs" => Unary::Abs,
            "Reciprocal" => Unary::Reciprocal,
            "Softplus" => Unary::Softplus,
            _ => {
                let slope = self.required(node, 1, "slope")?.clone();
                if let [alpha] = slope.floats[..] {
                    Unary::LeakyRelu { alpha }
                } else if Self::per_channel(&slope, s).is_some() {
                    // One slope per channel: relu(x) − slope · relu(−x).
                    let neg: Vec<f32> = slope.floats.iter().map(|v| -v).collect();
                    let pos = self.push_named(node, "positive", Op::Relu, &[&x]);
                    let flipped = self.push_named(node, "flipped", Op::Unary(Unary::Neg), &[&x]);
                    let negative = self.push_named(node, "negative", Op::Relu, &[&flipped]);
                    let scaled = self.push_named(
                        node,
                        "scaled",
                        Op::Affine(Affine { scale: neg, shift: vec![0.0] }),
                        &[&negative],
                    );
                    self.push(node, Op::Add, &[&pos, &scaled], s);
                    return Ok(());
                } else {
                    return Err(bad(
                        node,
                        format!(
                            "a slope of shape {:?} is not supported (one slope, or one per channel, is)",
                            slope.dims
                        ),
                    ));
                }
            }
        };
        self.push(node, Op::Unary(f), &[&x], s);
        Ok(())
    }

    /// One value, or one per channel, of a constant operand of an activation of shape `s`
    /// (numpy broadcasting); `None` when the constant varies along other axes.
    fn per_channel(c: &Constant, s: Shape) -> Option<Vec<f32>> {
        if c.len() == 1 {
            return Some(c.floats.clone());
        }
        let mut dims: Vec<usize> = c.dims.clone();
        while dims.first() == Some(&1) && dims.len() > 1 {
            dims.remove(0);
        }
        let fits = match s.rank {
            2 => dims == [s.c],
            _ if s.channels_last => dims == [s.c],
            _ => dims == [s.c, 1, 1] && s.split.is_none(),
        };
        fits.then(|| c.floats.clone())
    }

    pub(super) fn arith(&mut self, node: &NodeProto) -> Result<()> {
        let op = node.op_type.as_str();
        if node.input.len() < 2 {
            return match op {
                "Sum" | "Max" | "Min" => {
                    let v = self.value_cl(node, 0)?;
                    self.alias(node, v);
                    Ok(())
                }
                _ => Err(bad(node, "needs two inputs")),
            };
        }
        if op == "Sum" || (op == "Add" && node.input.len() > 2) {
            let parts: Vec<(String, Shape)> =
                (0..node.input.len()).map(|k| self.value_cl(node, k)).collect::<Result<_>>()?;
            let s = parts[0].1;
            if let Some((_, t)) = parts.iter().find(|(_, t)| *t != s) {
                return Err(bad(
                    node,
                    format!("operands of shapes {:?} and {:?} differ", s.dims(), t.dims()),
                ));
            }
            let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
            self.push(node, Op::Add, &names, s);
            return Ok(());
        }
        if node.input.len() != 2 {
            return Err(bad(node, format!("{} inputs; two are supported", node.input.len())));
        }
        let f = match op {
            "Add" => Binary::Add,
            "Sub" => Binary::Sub,
            "Mul" => Binary::Mul,
            "Div" => Binary::Div,
            "Max" => Binary::Max,
            "Min" => Binary::Min,
            _ => Binary::Mul, // Pow: constant exponents only, below
        };
        match (self.operand(node, 0)?, self.operand(node, 1)?) {
            (Operand::Value(a, sa), Operand::Value(b, sb)) => {
                if op == "Pow" {
                    return Err(bad(
                        node,
                        "Pow with a computed exponent is not supported (a constant exponent is)",
                    ));
                }
                let per_channel = |t: Shape, of: Shape| {
                    t.h * t.w == 1
                        && t.c == of.c
                        && t.rank == of.rank
                        && of.rank == 4
                        && !t.channels_last
                        && !of.channels_last
                };
                let per_position = |t: Shape, of: Shape| {
                    t.c == 1
                        && of.c > 1
                        && (t.h, t.w, t.rank, t.channels_last) == (of.h, of.w, of.rank, of.channels_last)
                };
                if sa == sb && f == Binary::Mul && (self.sigmoid_of(&b, &a) || self.sigmoid_of(&a, &b)) {
                    // x · sigmoid(x): one SiLU layer (the sigmoid is dropped if nothing else reads it).
                    let x = if self.sigmoid_of(&b, &a) { a } else { b };
                    self.push(node, Op::Unary(Unary::Silu), &[&x], sa);
                } else if sa == sb && f == Binary::Add {
                    self.push(node, Op::Add, &[&a, &b], sa);
                } else if sa == sb || per_channel(sb, sa) || per_position(sb, sa) {
                    self.push(node, Op::Binary(f), &[&a, &b], sa);
                } else if per_channel(sa, sb) || per_position(sa, sb) {
                    self.push(node, Op::Binary(f), &[&a, &b], sb);
                } else {
                    return Err(bad(
                        node,
                        format!(
                            "operands of shapes [N, {:?}] and [N, {:?}] do not broadcast (equal shapes, one value per channel [N, C, 1, 1] or one per position [N, 1, H, W] are supported)",
                            sa.dims(),
                            sb.dims()
                        ),
                    ));
                }
            }
            (Operand::Value(x, s), Operand::Constant(k)) => self.with_constant(node, f, x, s, &k, false)?,
            (Operand::Constant(k), Operand::Value(x, s)) => {
                if op == "Pow" {
                    return Err(bad(node, "a constant raised to a computed power is not supported"));
                }
                self.with_constant(node, f, x, s, &k, true)?;
            }
            (Operand::Constant(_), Operand::Constant(_)) => unreachable!("constant operands are folded"),
        }
        Ok(())
    }

    /// Whether layer `s` is a sigmoid of layer `x`.
    fn sigmoid_of(&self, s: &str, x: &str) -> bool {
        self.net.layer(s).is_some_and(|l| l.op == Op::Unary(Unary::Sigmoid) && l.inputs == [x])
    }

    /// `x op k` (or `k op x` when `constant_first`) for a constant `k`.
    fn with_constant(
        &mut self,
        node: &NodeProto,
        f: Binary,
        x: String,
        s: Shape,
        k: &Constant,
        constant_first: bool,
    ) -> Result<()> {
        let values = Self::per_channel(k, s).ok_or_else(|| {
            bad(
                node,
                format!(
                    "a constant operand of shape {:?} does not broadcast per channel over [N, {:?}] (a scalar or one value per channel is supported)",
                    k.dims,
                    s.dims()
                ),
            )
        })?;
        if node.op_type == "Pow" {
            let [exponent] = values[..] else {
                return Err(bad(
                    node,
                    format!("exponent of shape {:?}: one exponent for all elements is supported", k.dims),
                ));
            };
            let op = if exponent == 1.0 {
                None
            } else if exponent == 0.5 {
                Some(Unary::Sqrt)
            } else {
                Some(Unary::Pow { exponent })
            };
            match op {
                Some(u) => self.push(node, Op::Unary(u), &[&x], s),
                None => self.alias(node, (x, s)),
            }
            return Ok(());
        }
        let affine = |scale: Vec<f32>, shift: Vec<f32>| Op::Affine(Affine { scale, shift });
        let neg: Vec<f32> = values.iter().map(|v| -v).collect();
        let op = match (f, constant_first) {
            (Binary::Add, _) => affine(vec![1.0], values),
            (Binary::Sub, false) => affine(vec![1.0], neg),
            (Binary::Sub, true) => affine(vec![-1.0], values),
            (Binary::Mul, _) => affine(values, vec![0.0]),
            (Binary::Div, false) => affine(values.iter().map(|v| 1.0 / v).collect(), vec![0.0]),
            (Binary::Div, true) => {
                // k / x = k · (1 / x): a reciprocal, then the per-channel scale.
                let name = self.push_named(node, "reciprocal", Op::Unary(Unary::Reciprocal), &[&x]);
                self.push(node, affine(values, vec![0.0]), &[&name], s);
                return Ok(());
            }
            (Binary::Max | Binary::Min, _) => {
                let [v] = values[..] else {
                    return Err(bad(
                        node,
                        "Max and Min with a per-channel constant are not supported (a scalar is)",
                    ));
                };
                if f == Binary::Max {
                    if v == 0.0 {
                        Op::Relu
                    } else {
                        Op::Clip { min: v, max: f32::MAX }
                    }
                } else {
                    Op::Clip { min: f32::MIN, max: v }
                }
            }
        };
        self.push(node, op, &[&x], s);
        Ok(())
    }

    /// Gather from an activation: whole channels (a 1-D index along the channel axis), or
    /// whole images out of the flattened batch (torch.export's `as_strided` copies).
    pub(super) fn gather_activation(&mut self, node: &NodeProto) -> Result<()> {
        let (x, s) = self.value_view(node, 0)?;
        if s.channels_last {
            // Its axes are not the NCHW ones: the atom description handles it.
            return Err(bad(node, "is not supported on a channels-last view here"));
        }
        let idx = self.required(node, 1, "indices")?.clone();
        let per_image = s.c * s.h * s.w;
        if s.merged {
            let offsets: Vec<usize> =
                idx.ints.iter().map(|&v| usize::try_from(v).unwrap_or(usize::MAX)).collect();
            let whole_images = attr_i(node, "axis", 0) == 0
                && idx.batch_stride == Some(per_image as i64)
                && idx.dims.first() == Some(&1)
                && offsets.iter().all(|&v| v < per_image);
            if !whole_images {
                return Err(bad(node, "a gather from the flattened batch that does not take whole images (index n · C·H·W + offset) is not supported"));
            }
            let rest = &idx.dims[1..];
            let identity = offsets.len() == per_image && offsets.iter().enumerate().all(|(i, &v)| i == v);
            let base = Shape { merged: false, rank: 4, ..s };
            match rest {
                [c, h, w] if identity && [*c, *h, *w] == [s.c, s.h, s.w] => self.alias(node, (x, base)),
                [f] if identity => {
                    if s.h * s.w == 1 {
                        self.alias(node, (x, Shape::flat(*f)));
                    } else {
                        self.push(node, Op::Flatten, &[&x], Shape::flat(*f));
                    }
                }
                [c, 1, 1] if s.h * s.w == 1 => {
                    self.push(node, Op::SelectChannels { channels: offsets }, &[&x], Shape::map(*c, 1, 1));
                }
                _ => {
                    return Err(bad(
                        node,
                        format!(
                            "a gather of whole images into [N, {rest:?}] from [N, {:?}] is not supported",
                            s.dims()
                        ),
                    ))
                }
            }
            return Ok(());
        }
        if s.split.is_some() || s.channels_last {
            return Err(bad(node, "a gather from a 5-D or channels-last view is not supported"));
        }
        let rank = s.dims().len() + 1;
        let ax = fold::axis(node, attr_i(node, "axis", 0), rank)?;
        if ax != 1 || idx.dims.len() != 1 || idx.batch_stride.is_some() {
            return Err(bad(
                node,
                format!(
                    "a gather along axis {ax} of [N, {:?}] is not supported (a 1-D index of channels is)",
                    s.dims()
                ),
            ));
        }
        let channels = idx
            .ints
            .iter()
            .map(|&v| {
                let c = if v < 0 { v + s.c as i64 } else { v };
                usize::try_from(c)
                    .ok()
                    .filter(|&c| c < s.c)
                    .ok_or_else(|| bad(node, format!("index {v} out of range for {} channels", s.c)))
            })
            .collect::<Result<Vec<usize>>>()?;
        if channels.is_empty() {
            return Err(bad(node, "gathers no channel"));
        }
        self.push(node, Op::SelectChannels { channels }, &[&x], Shape { c: idx.ints.len(), ..s });
        Ok(())
    }

    /// Reshape of an activation: flattening, its inverse, and the 5-D channel views of a
    /// channel shuffle.
    pub(super) fn reshape(&mut self, node: &NodeProto) -> Result<()> {
        let (x, s) = self.value_view(node, 0)?;
        let target = self.required(node, 1, "shape")?;
        let target = target.to_ints();
        let allowzero = attr_i(node, "allowzero", 0) != 0;
        let Some((&first, rest)) = target.split_first() else {
            return Err(bad(node, "reshape to a scalar is not supported"));
        };
        let keeps_batch =
            first == BATCH || first == -1 && !rest.contains(&-1) || first == 0 && !allowzero || first == 1;
        if target == [-1] && s.split.is_none() && !s.channels_last {
            // The whole batch as one axis: only a whole-batch Gather may follow.
            self.alias(node, (x, Shape { merged: true, rank: 1, ..s }));
            return Ok(());
        }
        if rest.is_empty() || !keeps_batch || rest.iter().any(|&d| symbolic(d)) {
            return Err(bad(
                node,
                format!(
                    "reshape to {} merges or moves the batch dimension; only per-image reshapes are supported",
                    show(&target)
                ),
            ));
        }
        let dims = s.dims();
        // Zeros copy the input dimension at the same position (batch first).
        let rest: Vec<i64> = rest
            .iter()
            .enumerate()
            .map(|(i, &d)| if d == 0 && !allowzero { dims.get(i).map_or(0, |&v| v as i64) } else { d })
            .collect();
        let out = reshape_dims(node, &dims, &rest, true)?;
        let unsupported = || {
            bad(node, format!("reshape of [N, {dims:?}] to [N, {out:?}] is not supported (flattening, channel splits for a shuffle and their inverses are)"))
        };
        match (out.len(), s.split) {
            (1, None) if s.rank == 2 => self.alias(node, (x, s)),
            (1, None) => self.push(node, Op::Flatten, &[&x], Shape::flat(s.c * s.h * s.w)),
            (3, Some((g, per, transposed))) if out == [s.c, s.h, s.w] => {
                if transposed {
                    // View [per, g, H, W] of channels c = i·per + j at (j, i): output channel
                    // j·g + i is input channel i·per + j.
                    let channels = (0..per).flat_map(|j| (0..g).map(move |i| i * per + j)).collect();
                    self.push(node, Op::SelectChannels { channels }, &[&x], Shape::map(s.c, s.h, s.w));
                } else {
                    self.alias(node, (x, Shape::map(s.c, s.h, s.w)));
                }
            }
            (3, None) if out == [s.c, s.h, s.w] => self.alias(node, (x, Shape::map(s.c, s.h, s.w))),
            (4, None) if s.rank == 4 && out[0] * out[1] == s.c && out[2..] == [s.h, s.w] => {
                self.alias(node, (x, Shape { split: Some((out[0], out[1], false)), rank: 5, ..s }));
            }
            _ => return Err(unsupported()),
        }
        Ok(())
    }

    pub(super) fn transpose(&mut self, node: &NodeProto) -> Result<()> {
        let (x, s) = self.value_view(node, 0)?;
        let rank = s.dims().len() + 1;
        let perm: Vec<i64> = attr_ints(node, "perm").unwrap_or_else(|| (0..rank as i64).rev().collect());
        let identity = perm.iter().enumerate().all(|(i, &p)| p == i as i64);
        if identity && perm.len() == rank {
            self.alias(node, (x, s));
        } else if let (Some((g, per, t)), [0, 2, 1, 3, 4]) = (s.split, &perm[..]) {
            self.alias(node, (x, Shape { split: Some((g, per, !t)), ..s }));
        } else if let (4, None, false, [0, 2, 3, 1]) = (s.rank, s.split, s.channels_last, &perm[..]) {
            self.alias(node, (x, Shape { channels_last: true, ..s }));
        } else if let (true, [0, 3, 1, 2]) = (s.channels_last, &perm[..]) {
            self.alias(node, (x, Shape { channels_last: false, ..s }));
        } else {
            return Err(bad(
                node,
                format!("transpose {perm:?} of [N, {:?}] is not supported (only the channel transpose of a shuffle and the channels-last view [0, 2, 3, 1] and its inverse are)", s.dims()),
            ));
        }
        Ok(())
    }

    /// Output `k` as the listed channels of the activation `x` (an alias when they are all of
    /// them, in order).
    fn channel_range(&mut self, node: &NodeProto, k: usize, x: &str, s: Shape, channels: Vec<usize>) {
        let shape = Shape { c: channels.len(), ..s };
        if channels.len() == s.c && channels.iter().enumerate().all(|(i, &c)| i == c) {
            self.values.insert(node.output[k].clone(), (x.to_string(), s));
        } else {
            self.push_output(node, k, Op::SelectChannels { channels }, &[x], shape);
        }
    }

    fn channel_axis(&self, node: &NodeProto, a: i64, s: Shape) -> Result<()> {
        let rank = s.dims().len() + 1;
        let ax = fold::axis(node, a, rank)?;
        if ax != 1 || s.split.is_some() || s.channels_last {
            return Err(bad(
                node,
                format!("axis {a} of [N, {:?}]: only the channel axis is supported", s.dims()),
            ));
        }
        Ok(())
    }

    /// The part lengths of a Split node cutting an axis of `len`: from its `split` input
    /// (attribute before opset 13), else `num_outputs` or the output count, equal parts
    /// with a shorter last one.
    pub(super) fn split_sizes(&self, node: &NodeProto, len: usize) -> Result<Vec<usize>> {
        let n = node.output.len();
        let sizes: Vec<usize> = match (self.opset < 13, node.input.get(1).filter(|i| !i.is_empty())) {
            (true, _) => {
                attr_ints(node, "split").unwrap_or_default().iter().map(|&v| v.max(0) as usize).collect()
            }
            (false, Some(_)) => {
                self.required(node, 1, "split")?.ints.iter().map(|&v| v.max(0) as usize).collect()
            }
            (false, None) => Vec::new(),
        };
        let sizes = if sizes.is_empty() {
            let parts = attr(node, "num_outputs").map_or(n, |a| a.i.max(1) as usize);
            let each = len.div_ceil(parts);
            (0..parts).map(|k| each.min(len.saturating_sub(k * each))).collect()
        } else {
            sizes
        };
        if sizes.len() != n || sizes.iter().sum::<usize>() != len {
            return Err(bad(
                node,
                format!("split sizes {sizes:?} do not cut an axis of {len} into {n} outputs"),
            ));
        }
        Ok(sizes)
    }

    pub(super) fn split(&mut self, node: &NodeProto) -> Result<()> {
        let (x, s) = self.value_view(node, 0)?;
        self.channel_axis(node, attr_i(node, "axis", 0), s)?;
        let sizes = self.split_sizes(node, s.c)?;
        let mut start = 0;
        for (k, &len) in sizes.iter().enumerate() {
            if !node.output[k].is_empty() {
                self.channel_range(node, k, &x, s, (start..start + len).collect());
            }
            start += len;
        }
        Ok(())
    }

    pub(super) fn slice(&mut self, node: &NodeProto) -> Result<()> {
        let (x, s) = self.value_view(node, 0)?;
        if s.channels_last {
            // Its axes are not the NCHW ones: the atom description handles it.
            return Err(bad(node, "is not supported on a channels-last view here"));
        }
        let ints = |k: usize, what: &str| -> Result<Option<Vec<i64>>> {
            Ok(self.constant(node, k, what)?.map(Constant::to_ints))
        };
        let (starts, ends, axes, steps) = if self.opset < 10 {
            (
                attr_ints(node, "starts").unwrap_or_default(),
                attr_ints(node, "ends").unwrap_or_default(),
                attr_ints(node, "axes"),
                None,
            )
        } else {
            (
                ints(1, "starts")?.unwrap_or_default(),
                ints(2, "ends")?.unwrap_or_default(),
                ints(3, "axes")?,
                ints(4, "steps")?,
            )
        };
        let dims = s.dims();
        let rank = dims.len() + 1;
        let axes: Vec<usize> = match axes {
            Some(a) => a.iter().map(|&v| fold::axis(node, v, rank)).collect::<Result<_>>()?,
            None => (0..starts.len()).collect(),
        };
        if starts.len() != axes.len()
            || ends.len() != axes.len()
            || steps.as_ref().is_some_and(|v| v.len() != axes.len())
        {
            return Err(bad(node, "starts, ends, axes and steps must have the same length"));
        }
        // The batch axis may only be kept whole; the others are sliced on the per-image dims.
        let mut per_image = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (k, &a) in axes.iter().enumerate() {
            let step = steps.as_ref().map_or(1, |v| v[k]);
            if a == 0 {
                if starts[k] != 0 || ends[k] < i64::from(i32::MAX) || step != 1 {
                    return Err(bad(node, "slicing the batch axis is not supported"));
                }
                continue;
            }
            per_image.0.push(starts[k]);
            per_image.1.push(ends[k]);
            per_image.2.push(a - 1);
            per_image.3.push(step);
        }
        let ranges = slice_ranges(node, &dims, &per_image.0, &per_image.1, &per_image.2, Some(&per_image.3))?;
        let whole = |i: usize| ranges[i].len() == dims[i] && ranges[i].first().is_none_or(|&f| f == 0);
        if s.split.is_none() && !s.channels_last && s.rank == 4 && !(1..dims.len()).all(whole) {
            return self.slice_spatial(node, &x, s, &ranges);
        }
        if s.split.is_some() || !(1..dims.len()).all(whole) {
            return Err(bad(
                node,
                format!("slice of [N, {dims:?}] along other axes than the channels is not supported"),
            ));
        }
        if ranges[0].is_empty() {
            return Err(bad(node, "the slice keeps no channel"));
        }
        let channels = ranges[0].clone();
        self.channel_range(node, 0, &x, s, channels);
        Ok(())
    }

    /// Squeeze and Unsqueeze of the axes of size 1 of `[N, C, 1, 1]` and `[N, C]`.
    pub(super) fn squeeze(&mut self, node: &NodeProto) -> Result<()> {
        let (x, s) = self.value(node, 0)?;
        let unsqueeze = node.op_type == "Unsqueeze";
        let axes = if self.opset < 13 {
            attr_ints(node, "axes")
        } else {
            self.constant(node, 1, "axes")?.map(|c| c.ints.clone())
        };
        let dims = s.dims();
        let rank = dims.len() + 1;
        let out_rank = match (&axes, unsqueeze) {
            (Some(a), true) => rank + a.len(),
            // More axes than dimensions: rank 0, refused below.
            (Some(a), false) => rank.saturating_sub(a.len()),
            (None, _) => 2,
        };
        let shape = match out_rank {
            2 if s.h * s.w == 1 || s.rank == 2 => Shape::flat(s.c * s.h * s.w),
            4 if s.h * s.w == 1 => Shape::map(s.c, 1, 1),
            _ => {
                return Err(bad(
                    node,
                    format!("{} of [N, {dims:?}] with axes {axes:?} is not supported (only between [N, C] and [N, C, 1, 1])", node.op_type),
                ))
            }
        };
        if let Some(a) = &axes {
            let mut a: Vec<usize> =
                a.iter().map(|&v| fold::axis(node, v, rank.max(out_rank))).collect::<Result<_>>()?;
            a.sort_unstable();
            if out_rank != s.rank && a != [2, 3] {
                return Err(bad(node, format!("axes {a:?}: only the spatial axes [2, 3] are supported")));
            }
        }
        self.alias(node, (x, shape));
        Ok(())
    }
}

fn show(v: &[i64]) -> String {
    let items: Vec<String> = v
        .iter()
        .map(|&d| match d {
            BATCH => "N".to_string(),
            d if batch_factor(d).is_some() => format!("{}N", batch_factor(d).unwrap_or(1)),
            d if symbolic(d) => "?".to_string(),
            d => d.to_string(),
        })
        .collect();
    format!("[{}]", items.join(", "))
}
