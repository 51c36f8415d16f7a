//! Operators over the channel axis: reductions with `keepdims`, LayerNormalization over the
//! channels (expanded into reductions and element-wise layers), and MatMul of a
//! channels-last view with a constant matrix (a pointwise convolution), as ConvNeXt-style
//! blocks and TorchScript's decomposed layer norms write them.

// Axes are integers read from the model; they are range-checked where used.
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, clippy::cast_sign_loss)]

use super::fold;
use super::import::{attr_f, attr_i, attr_ints, bad, Importer, Shape};
use super::proto::NodeProto;
use crate::error::Result;
use crate::network::{Affine, Binary, Conv, Op, Pool, Reduce, Unary};

impl Importer<'_> {
    /// The reduction axes of a Reduce* node, normalised to `0..rank`, sorted.
    pub(super) fn reduce_axes(&self, node: &NodeProto, rank: usize) -> Result<Vec<usize>> {
        let from_input = self.opset >= 18 || (node.op_type == "ReduceSum" && self.opset >= 13);
        let axes = if from_input {
            self.constant(node, 1, "axes")?.map(|c| c.ints.clone()).unwrap_or_default()
        } else {
            attr_ints(node, "axes").unwrap_or_default()
        };
        let mut axes: Vec<usize> = axes.iter().map(|&a| fold::axis(node, a, rank)).collect::<Result<_>>()?;
        axes.sort_unstable();
        axes.dedup();
        Ok(axes)
    }

    /// ReduceMean, ReduceSum, ReduceMax, ReduceMin, ReduceL1, ReduceL2 and ReduceSumSquare
    /// over any of the channel and spatial axes (not the batch), with or without
    /// `keepdims`: pooling over the spatial axes reduced, then a reduction over the
    /// channels, with the element-wise steps the variants need around them.
    pub(super) fn reduce(&mut self, node: &NodeProto) -> Result<()> {
        let (x, s) = self.value_cl(node, 0)?;
        let rank = s.dims().len() + 1;
        let mut axes = self.reduce_axes(node, rank)?;
        if axes.is_empty() {
            if attr_i(node, "noop_with_empty_axes", 0) != 0 {
                self.alias(node, (x, s));
                return Ok(());
            }
            axes = (0..rank).collect();
        }
        if axes.contains(&0) {
            return Err(bad(
                node,
                format!("reducing [N, {:?}] over the batch axis is not supported", s.dims()),
            ));
        }
        let has = |a: usize| axes.contains(&a);
        let (over_c, over_h, over_w) = match (s.rank, s.channels_last) {
            (2, _) => (true, false, false),
            (4, false) => (has(1), has(2), has(3)),
            (4, true) => (has(3), has(1), has(2)),
            _ => return Err(bad(node, format!("reduction of [N, {:?}] is not supported", s.dims()))),
        };
        let shape = if attr_i(node, "keepdims", 1) != 0 {
            Shape {
                c: if over_c { 1 } else { s.c },
                h: if over_h { 1 } else { s.h },
                w: if over_w { 1 } else { s.w },
                ..s
            }
        } else if s.rank == 4 && !over_c && over_h && over_w {
            Shape::flat(s.c)
        } else {
            return Err(bad(
                node,
                format!(
                    "reducing [N, {:?}] over axes {axes:?} without keepdims leaves a tensor of rank {} (only [N, C, H, W] and [N, C] are supported)",
                    s.dims(),
                    rank - axes.len()
                ),
            ));
        };
        let op = node.op_type.as_str();
        let negate = || Op::Affine(Affine { scale: vec![-1.0], shift: vec![0.0] });
        let kind = match op {
            "ReduceMax" | "ReduceMin" => Reduce::Max,
            "ReduceMean" => Reduce::Mean,
            _ => Reduce::Sum,
        };
        // (suffix, op, whether the op multiplies its input by itself)
        let mut chain: Vec<(&str, Op, bool)> = Vec::new();
        match op {
            "ReduceMin" => chain.push(("negate", negate(), false)),
            "ReduceL1" => chain.push(("abs", Op::Unary(Unary::Abs), false)),
            "ReduceL2" | "ReduceSumSquare" => chain.push(("square", Op::Binary(Binary::Mul), true)),
            _ => {}
        }
        if over_h || over_w {
            let kernel = [if over_h { s.h } else { 1 }, if over_w { s.w } else { 1 }];
            let pool =
                Pool { kernel, stride: [1, 1], pads: [0; 4], ceil_mode: false, count_include_pad: false };
            chain.push(match kind {
                Reduce::Max => ("pool", Op::MaxPool(pool), false),
                _ if over_h && over_w => ("pool", Op::GlobalAvgPool, false),
                _ => ("pool", Op::AvgPool(pool), false),
            });
            if kind == Reduce::Sum && kernel[0] * kernel[1] > 1 {
                let count = (kernel[0] * kernel[1]) as f32;
                chain.push(("count", Op::Affine(Affine { scale: vec![count], shift: vec![0.0] }), false));
            }
        }
        if over_c {
            chain.push(("channels", Op::ReduceChannels(kind), false));
        }
        match op {
            "ReduceMin" => chain.push(("negate_back", negate(), false)),
            "ReduceL2" => chain.push(("sqrt", Op::Unary(Unary::Sqrt), false)),
            _ => {}
        }
        let last = chain.len() - 1;
        let mut cur = x;
        for (k, (suffix, step, square)) in chain.into_iter().enumerate() {
            let inputs: Vec<&str> = if square { vec![&cur, &cur] } else { vec![&cur] };
            if k == last {
                self.push(node, step, &inputs, shape);
                return Ok(());
            }
            cur = self.push_named(node, suffix, step, &inputs);
        }
        self.alias(node, (cur, shape));
        Ok(())
    }

    /// A helper layer named after `node` with `suffix`; returns its name.
    pub(super) fn push_named(&mut self, node: &NodeProto, suffix: &str, op: Op, inputs: &[&str]) -> String {
        let base = format!("{}/{suffix}", if node.name.is_empty() { &node.output[0] } else { &node.name });
        let name = self.unique_name(base);
        self.net.push(name.clone(), op, inputs);
        name
    }

    /// LayerNormalization over the channels (the last axis of a channels-last view, or the
    /// features of a flat tensor): `(x − mean) / sqrt(var + ε) · scale + bias`.
    pub(super) fn layer_norm(&mut self, node: &NodeProto) -> Result<()> {
        let (x, s) = self.value_cl(node, 0)?;
        let rank = s.dims().len() + 1;
        let axis = fold::axis(node, attr_i(node, "axis", -1), rank)?;
        let over_channels = axis == rank - 1 && (s.channels_last || s.rank == 2)
            || axis == 1 && s.rank == 4 && !s.channels_last && s.h * s.w == 1;
        if !over_channels || s.split.is_some() {
            return Err(bad(
                node,
                format!(
                    "normalising [N, {:?}] from axis {axis} is not supported (only over the channels)",
                    s.dims()
                ),
            ));
        }
        if node.output.iter().skip(1).any(|o| !o.is_empty()) {
            return Err(bad(node, "the Mean and InvStdDev outputs are not supported"));
        }
        let scale = self.required(node, 1, "scale")?.floats.clone();
        let bias = self.constant(node, 2, "bias")?.map_or_else(|| vec![0.0], |c| c.floats.clone());
        if scale.len() != s.c || !(bias.len() == s.c || bias.len() == 1) {
            return Err(bad(
                node,
                format!("{} scale and {} bias values for {} channels", scale.len(), bias.len(), s.c),
            ));
        }
        let epsilon = attr_f(node, "epsilon", 1e-5);
        self.normalise(
            node,
            &x,
            s,
            &Op::ReduceChannels(Reduce::Mean),
            epsilon,
            Affine { scale, shift: bias },
        );
        Ok(())
    }

    /// InstanceNormalization: each channel of each image normalised over its positions,
    /// `(x − mean) / sqrt(var + ε) · scale + bias`, built from global pooling and
    /// per-channel broadcasting.
    pub(super) fn instance_norm(&mut self, node: &NodeProto) -> Result<()> {
        let (x, s) = self.value(node, 0)?;
        if s.rank != 4 {
            return Err(bad(node, format!("instance normalisation of [N, {:?}] is not supported", s.dims())));
        }
        let scale = self.required(node, 1, "scale")?.floats.clone();
        let bias = self.required(node, 2, "bias")?.floats.clone();
        if scale.len() != s.c || bias.len() != s.c {
            return Err(bad(
                node,
                format!("{} scale and {} bias values for {} channels", scale.len(), bias.len(), s.c),
            ));
        }
        let epsilon = attr_f(node, "epsilon", 1e-5);
        self.normalise(node, &x, s, &Op::GlobalAvgPool, epsilon, Affine { scale, shift: bias });
        Ok(())
    }

    /// `(x − mean) / sqrt(var + ε)` then `affine`, the mean and the variance taken by the
    /// layer `mean` (over the channels for a layer norm, over the positions for an instance
    /// norm; the binary layers broadcast its result back over `x`). The output is `node`'s.
    fn normalise(&mut self, node: &NodeProto, x: &str, s: Shape, mean: &Op, epsilon: f32, affine: Affine) {
        let mu = self.push_named(node, "mean", mean.clone(), &[x]);
        let centred = self.push_named(node, "centred", Op::Binary(Binary::Sub), &[x, &mu]);
        let square = self.push_named(node, "square", Op::Binary(Binary::Mul), &[&centred, &centred]);
        let var = self.push_named(node, "var", mean.clone(), &[&square]);
        let eps = Op::Affine(Affine { scale: vec![1.0], shift: vec![epsilon] });
        let shifted = self.push_named(node, "var_eps", eps, &[&var]);
        let std = self.push_named(node, "std", Op::Unary(Unary::Sqrt), &[&shifted]);
        let normed = self.push_named(node, "normed", Op::Binary(Binary::Div), &[&centred, &std]);
        self.push(node, Op::Affine(affine), &[&normed], s);
    }

    /// MatMul of a channels-last view `[N, H, W, C]` with a constant `[C, C']`: a pointwise
    /// convolution. A following Add of a constant `[C']` becomes its bias.
    pub(super) fn matmul_channels_last(
        &mut self,
        node: &NodeProto,
        nodes: &[NodeProto],
        index: usize,
    ) -> Result<()> {
        let (x, s) = self.value_cl(node, 0)?;
        let b = self.required(node, 1, "weight")?.clone();
        let [cin, cout] = b.dims[..] else {
            return Err(bad(node, format!("weights of shape {:?}: a [C, C'] matrix is supported", b.dims)));
        };
        if cin != s.c || cout == 0 {
            return Err(bad(
                node,
                format!("weights {:?} do not fit the {} channels of [N, {:?}]", b.dims, s.c, s.dims()),
            ));
        }
        let mut weights = vec![0.0f32; cin * cout];
        for i in 0..cin {
            for o in 0..cout {
                weights[o * cin + i] = b.floats[i * cout + o];
            }
        }
        // A sole consumer Add of a constant vector is the bias.
        let bias = self
            .bias_add(node, nodes, index)
            .filter(|(_, c, _)| c.len() == cout && c.dims.iter().rev().skip(1).all(|&d| d == 1))
            .map(|(at, c, output)| (c.floats, at, output));
        let conv = Conv::new(cout, [1, 1], 0, weights, bias.as_ref().map(|(b, _, _)| b.clone()));
        let shape = Shape { c: cout, ..s };
        self.push(node, Op::Conv(conv), &[&x], shape);
        if let Some((_, at, output)) = bias {
            self.consumed.insert(at);
            let produced = self.values[&node.output[0]].clone();
            self.values.insert(output, produced);
        }
        Ok(())
    }
}
