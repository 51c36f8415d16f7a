//! Maps an ONNX graph onto a [`Network`], node by node, tracking each tensor's shape.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use super::fold::{self, fold};
use super::nd::{NdValue, ND_OPS};
use super::ops::{ARITH_OPS, UNARY_OPS};
use super::proto::{AttributeProto, ModelProto, NodeProto};
use super::shapes::{shape_of_activation, shape_of_dims};
use super::tensor::{Constant, UNKNOWN};
use super::{OnnxModel, OPSETS};
use crate::error::{Error, Result};
use crate::network::{BatchNorm, InputSpec, Lrn, Network, Op, Pool};

/// Operator types the importer maps onto layers (opsets 9 to 21); the operators of
/// [`fold::FOLDABLE`] are also accepted wherever their inputs are constants.
pub const SUPPORTED_OPS: [&str; 67] = [
    "Conv",
    "Relu",
    "Clip",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "ReduceMean",
    "ReduceMax",
    "LRN",
    "BatchNormalization",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Max",
    "Min",
    "Sum",
    "Pow",
    "Concat",
    "Flatten",
    "Reshape",
    "Transpose",
    "Split",
    "Slice",
    "Squeeze",
    "Unsqueeze",
    "Gemm",
    "MatMul",
    "Softmax",
    "Dropout",
    "Identity",
    "Constant",
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
    "Pad",
    "ReduceSum",
    "LayerNormalization",
    "Gather",
    "InstanceNormalization",
    "PRelu",
    "ReduceMin",
    "ReduceL1",
    "ReduceL2",
    "ReduceSumSquare",
    "Resize",
    "Upsample",
    "Greater",
    "Less",
    "Equal",
    "GreaterOrEqual",
    "LessOrEqual",
    "Where",
    "Einsum",
];

/// Whether the importer knows `op` at all (as a layer, or folded when its inputs are
/// constants).
fn known_op(op: &str) -> bool {
    SUPPORTED_OPS.contains(&op) || fold::FOLDABLE.contains(&op)
}

/// One message naming every operator the importer does not know, with its nodes.
fn check_operators(nodes: &[NodeProto], opset: i64) -> Result<()> {
    let mut missing: Vec<(&str, Vec<String>)> = Vec::new();
    for node in nodes {
        let foreign = !(node.domain.is_empty() || node.domain == "ai.onnx");
        if foreign || !known_op(&node.op_type) {
            let op = node.op_type.as_str();
            let label = if foreign {
                format!("{} (domain '{}')", node_label(node), node.domain)
            } else {
                node_label(node)
            };
            match missing.iter_mut().find(|(o, _)| *o == op) {
                Some((_, v)) => v.push(label),
                None => missing.push((op, vec![label])),
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = missing
        .iter()
        .map(|(op, nodes)| {
            let more = if nodes.len() > 3 { format!(" and {} more", nodes.len() - 3) } else { String::new() };
            format!("  {op} ({} node(s): {}{more})", nodes.len(), nodes[..nodes.len().min(3)].join(", "))
        })
        .collect();
    Err(Error::Model(format!(
        "the model (opset {opset}) uses {} unsupported operator type(s):\n{}\nsupported: {}",
        missing.len(),
        lines.join("\n"),
        SUPPORTED_OPS.join(", ")
    )))
}

/// Per-image shape of an activation: `[C, H, W]` stored NCHW (a flat tensor has H = W = 1
/// and ONNX rank 2). `split` marks a 5-D view of the channels, `[N, G, C/G, H, W]`, as
/// exporters write a channel shuffle; `transposed` when its two channel axes were swapped.
/// `channels_last` marks the `[N, H, W, C]` view a Transpose makes (ConvNeXt's layer norm
/// and pointwise MatMuls): the data stay NCHW and the operators that act on the last axis
/// act on the channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Shape {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    /// Rank of the ONNX tensor (batch included): 2 or 4 (5 for a split view).
    pub rank: usize,
    pub split: Option<(usize, usize, bool)>,
    pub channels_last: bool,
    /// The whole batch flattened to one axis, `[N · C · H · W]` (ONNX rank 1), as
    /// torch.export writes before a whole-batch Gather; only a Gather may read it.
    pub merged: bool,
}

impl Shape {
    pub(super) fn map(c: usize, h: usize, w: usize) -> Self {
        Shape { c, h, w, rank: 4, split: None, channels_last: false, merged: false }
    }

    pub(super) fn flat(features: usize) -> Self {
        Shape { c: features, h: 1, w: 1, rank: 2, split: None, channels_last: false, merged: false }
    }

    /// The ONNX dims after the batch.
    pub(super) fn dims(&self) -> Vec<usize> {
        match (self.rank, self.split) {
            (_, Some((g, per, false))) => vec![g, per, self.h, self.w],
            (_, Some((g, per, true))) => vec![per, g, self.h, self.w],
            (2, _) => vec![self.c * self.h * self.w],
            _ if self.channels_last => vec![self.h, self.w, self.c],
            _ => vec![self.c, self.h, self.w],
        }
    }
}

pub(super) struct Importer<'m> {
    pub dir: Option<&'m Path>,
    pub opset: i64,
    pub constants: HashMap<String, Constant>,
    /// ONNX tensor name → (producing layer or input name, shape).
    pub values: HashMap<String, (String, Shape)>,
    pub net: Network,
    pub layer_names: HashSet<String>,
    /// Nodes already absorbed by an earlier one (the Add of a MatMul's bias).
    pub consumed: HashSet<usize>,
    /// Outputs of zero-padding Pad nodes → [top, left, bottom, right]: the padding is
    /// added to the Conv or AveragePool that reads them.
    pub zero_pads: HashMap<String, [usize; 4]>,
    /// Activations of any rank (`onnx/nd.rs`), by ONNX name; an ONNX name is in this map
    /// or in `values`, never both.
    pub nd: HashMap<String, NdValue>,
}

pub(super) fn node_label(node: &NodeProto) -> String {
    if node.name.is_empty() {
        format!("'{}' node producing '{}'", node.op_type, node.output.first().map_or("", String::as_str))
    } else {
        format!("'{}' node '{}'", node.op_type, node.name)
    }
}

pub(super) fn bad(node: &NodeProto, message: impl std::fmt::Display) -> Error {
    Error::Model(format!("{}: {message}", node_label(node)))
}

pub(super) fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

pub(super) fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

pub(super) fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}

pub(super) fn attr_ints(node: &NodeProto, name: &str) -> Option<Vec<i64>> {
    attr(node, name).map(|a| a.ints.clone())
}

pub(super) fn attr_s(node: &NodeProto, name: &str) -> String {
    attr(node, name).map_or(String::new(), |a| String::from_utf8_lossy(&a.s).into_owned())
}

impl<'m> Importer<'m> {
    /// Input `k` as an activation (5-D and channels-last views are refused).
    pub(super) fn value(&self, node: &NodeProto, k: usize) -> Result<(String, Shape)> {
        let v = self.value_cl(node, k)?;
        if v.1.channels_last {
            return Err(bad(node, format!("input '{}' is a channels-last view [N, H, W, C] (after a Transpose); only element-wise operators, reductions, LayerNormalization and MatMul over the channels, and the Transpose back are supported on it", node.input[k])));
        }
        Ok(v)
    }

    /// Input `k` as an activation, channels-last views included (5-D views are refused).
    pub(super) fn value_cl(&self, node: &NodeProto, k: usize) -> Result<(String, Shape)> {
        let v = self.value_view(node, k)?;
        if v.1.split.is_some() {
            return Err(bad(node, format!("input '{}' is a 5-D view of the channels; only a channel shuffle (Reshape, Transpose, Reshape) is supported on it", node.input[k])));
        }
        Ok(v)
    }

    /// Input `k` as an activation, 5-D channel views included.
    pub(super) fn value_view(&self, node: &NodeProto, k: usize) -> Result<(String, Shape)> {
        let name = node
            .input
            .get(k)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad(node, format!("input {k} is missing")))?;
        if self.zero_pads.contains_key(name) && !(k == 0 && node.op_type == "Conv") {
            return Err(bad(node, format!("input '{name}' comes from a Pad absorbed by a Conv")));
        }
        self.values.get(name).cloned().ok_or_else(|| {
            if self.constants.contains_key(name) {
                bad(node, format!("input '{name}' is a constant where an activation is expected"))
            } else {
                bad(node, format!("input '{name}' is not produced by any earlier node (graph not in topological order?)"))
            }
        })
    }

    pub(super) fn constant(&self, node: &NodeProto, k: usize, what: &str) -> Result<Option<&Constant>> {
        let Some(name) = node.input.get(k).filter(|n| !n.is_empty()) else { return Ok(None) };
        match self.constants.get(name) {
            Some(c) => Ok(Some(c)),
            None if self.values.contains_key(name) => Err(bad(
                node,
                format!("{what} '{name}' is computed at run time; only constant {what}s are supported"),
            )),
            None => Err(bad(
                node,
                format!("{what} '{name}' is missing: no initializer or constant has that name"),
            )),
        }
    }

    pub(super) fn required(&self, node: &NodeProto, k: usize, what: &str) -> Result<&Constant> {
        self.constant(node, k, what)?.ok_or_else(|| bad(node, format!("{what} (input {k}) is missing")))
    }

    /// The node reading `node`'s output and nothing else reads, when it is an Add of that
    /// output and a constant (a MatMul's bias): its index, the constant and its output.
    pub(super) fn bias_add(
        &self,
        node: &NodeProto,
        nodes: &[NodeProto],
        index: usize,
    ) -> Option<(usize, Constant, String)> {
        let out = &node.output[0];
        let users: Vec<usize> = nodes
            .iter()
            .enumerate()
            .skip(index + 1)
            .filter(|(_, n)| n.input.contains(out))
            .map(|(i, _)| i)
            .collect();
        let [only] = users[..] else { return None };
        let add = &nodes[only];
        if add.op_type != "Add" || add.input.len() != 2 || add.output.is_empty() {
            return None;
        }
        let other = add.input.iter().find(|n| *n != out)?;
        Some((only, self.constants.get(other)?.clone(), add.output[0].clone()))
    }

    pub(super) fn layer_name(&mut self, node: &NodeProto) -> String {
        let base = if node.name.is_empty() { node.output[0].clone() } else { node.name.clone() };
        self.unique_name(base)
    }

    /// `base`, or `base_1`, `base_2`, ... if a layer (or the input) already has that name;
    /// the name is reserved.
    pub(super) fn unique_name(&mut self, base: String) -> String {
        let mut name = base.clone();
        let mut k = 1;
        while self.layer_names.contains(&name) || name == self.net.input.name {
            name = format!("{base}_{k}");
            k += 1;
        }
        self.layer_names.insert(name.clone());
        name
    }

    pub(super) fn push(&mut self, node: &NodeProto, op: Op, inputs: &[&str], shape: Shape) {
        self.nd.remove(&node.output[0]);
        let name = self.layer_name(node);
        self.net.push(name.clone(), op, inputs);
        self.values.insert(node.output[0].clone(), (name, shape));
    }

    pub(super) fn alias(&mut self, node: &NodeProto, from: (String, Shape)) {
        self.nd.remove(&node.output[0]);
        self.values.insert(node.output[0].clone(), from);
    }

    fn node(&mut self, nodes: &[NodeProto], index: usize) -> Result<()> {
        let node = &nodes[index];
        if self.consumed.contains(&index) {
            return Ok(());
        }
        if !(node.domain.is_empty() || node.domain == "ai.onnx") || node.output.is_empty() {
            return self.node_ops(node, nodes, index);
        }
        if self.try_fold(node)? {
            return Ok(());
        }
        // Einsum exists only on atoms.
        if node.op_type == "Einsum" || node.input.iter().any(|n| self.nd.contains_key(n)) {
            return self.nd_node(node, nodes, index);
        }
        // The ordinary shapes first; an operator they refuse may still work on atoms.
        let (layers, output) = (self.net.layers.len(), self.net.output.clone());
        match self.node_ops(node, nodes, index) {
            Err(e)
                if ND_OPS.contains(&node.op_type.as_str()) || ARITH_OPS.contains(&node.op_type.as_str()) =>
            {
                self.net.layers.truncate(layers);
                self.net.output = output;
                self.nd_node(node, nodes, index).map_err(|nd| match (e, nd) {
                    (Error::Model(first), Error::Model(general)) => {
                        let label = node_label(node);
                        let general =
                            general.strip_prefix(&format!("{label}: ")).unwrap_or(&general).to_string();
                        Error::Model(format!("{first}; as a tensor of any rank: {general}"))
                    }
                    (e, _) => e,
                })
            }
            r => r,
        }
    }

    /// The node on ordinary shapes.
    pub(super) fn node_ops(&mut self, node: &NodeProto, nodes: &[NodeProto], index: usize) -> Result<()> {
        if self.consumed.contains(&index) && std::ptr::eq(node, &nodes[index]) {
            return Ok(());
        }
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(bad(
                node,
                format!(
                    "operator domain '{}' is not supported (only the default ONNX domain is)",
                    node.domain
                ),
            ));
        }
        if node.output.is_empty() {
            return Err(bad(node, "has no output"));
        }
        if self.try_fold(node)? {
            return Ok(());
        }
        let op = node.op_type.as_str();
        if UNARY_OPS.contains(&op) {
            return self.unary(node);
        }
        if ARITH_OPS.contains(&op) {
            return self.arith(node);
        }
        match op {
            "Transpose" => return self.transpose(node),
            "Pad" => return self.pad(node, nodes, index),
            "Resize" | "Upsample" => return self.resize(node),
            "Greater" | "Less" | "Equal" | "GreaterOrEqual" | "LessOrEqual" => return self.compare(node),
            "Where" => return self.where_op(node),
            "Gather" => return self.gather_activation(node),
            "Split" => return self.split(node),
            "Slice" => return self.slice(node),
            "Squeeze" | "Unsqueeze" => return self.squeeze(node),
            "Reshape" => return self.reshape(node),
            _ => {}
        }
        match node.op_type.as_str() {
            "Constant" => {
                let c = constant_node(node, self.dir)?;
                self.constants.insert(node.output[0].clone(), c);
            }
            "Conv" => self.conv(node)?,
            "Relu" => {
                let (x, s) = self.value(node, 0)?;
                self.push(node, Op::Relu, &[&x], s);
            }
            "Clip" => {
                let (x, s) = self.value(node, 0)?;
                let (lo, hi) = if self.opset < 11 {
                    (attr_f(node, "min", f32::MIN), attr_f(node, "max", f32::MAX))
                } else {
                    let scalar =
                        |c: &Constant| c.floats.first().copied().ok_or_else(|| bad(node, "empty Clip bound"));
                    let lo = self.constant(node, 1, "min")?.map_or(Ok(f32::MIN), scalar)?;
                    let hi = self.constant(node, 2, "max")?.map_or(Ok(f32::MAX), scalar)?;
                    (lo, hi)
                };
                let op = if lo == 0.0 && hi >= f32::MAX { Op::Relu } else { Op::Clip { min: lo, max: hi } };
                self.push(node, op, &[&x], s);
            }
            "MaxPool" | "AveragePool" => {
                let (x, s) = self.value(node, 0)?;
                let (pool, shape) = self.pool_geometry(node, s)?;
                let op = if node.op_type == "MaxPool" { Op::MaxPool(pool) } else { Op::AvgPool(pool) };
                self.push(node, op, &[&x], shape);
            }
            "GlobalAveragePool" => {
                let (x, s) = self.value(node, 0)?;
                self.push(node, Op::GlobalAvgPool, &[&x], Shape::map(s.c, 1, 1));
            }
            "GlobalMaxPool" => {
                let (x, s) = self.value(node, 0)?;
                let pool = Pool {
                    kernel: [s.h, s.w],
                    stride: [1, 1],
                    pads: [0; 4],
                    ceil_mode: false,
                    count_include_pad: false,
                };
                self.push(node, Op::MaxPool(pool), &[&x], Shape::map(s.c, 1, 1));
            }
            "ReduceMean" | "ReduceMax" | "ReduceSum" | "ReduceMin" | "ReduceL1" | "ReduceL2"
            | "ReduceSumSquare" => self.reduce(node)?,
            "LRN" => {
                let (x, s) = self.value(node, 0)?;
                let size = usize::try_from(attr_i(node, "size", 0))
                    .ok()
                    .filter(|&v| v > 0)
                    .ok_or_else(|| bad(node, "size must be positive"))?;
                let lrn = Lrn {
                    size,
                    alpha: attr_f(node, "alpha", 1e-4),
                    beta: attr_f(node, "beta", 0.75),
                    bias: attr_f(node, "bias", 1.0),
                };
                self.push(node, Op::Lrn(lrn), &[&x], s);
            }
            "BatchNormalization" => {
                let (x, s) = self.value(node, 0)?;
                if attr_i(node, "training_mode", 0) != 0 || node.output.iter().skip(1).any(|o| !o.is_empty())
                {
                    return Err(bad(
                        node,
                        "training-mode batch normalisation is not supported (export in eval mode)",
                    ));
                }
                let get = |k, what| self.required(node, k, what).map(|c| c.floats.clone());
                let bn = BatchNorm {
                    scale: get(1, "scale")?,
                    shift: get(2, "bias")?,
                    mean: get(3, "mean")?,
                    var: get(4, "variance")?,
                    epsilon: attr_f(node, "epsilon", 1e-5),
                };
                self.push(node, Op::BatchNorm(bn), &[&x], s);
            }
            "Concat" => {
                let axis = attr_i(node, "axis", 1);
                let parts: Vec<(String, Shape)> =
                    (0..node.input.len()).map(|k| self.value(node, k)).collect::<Result<_>>()?;
                let Some(&(_, first)) = parts.first() else { return Err(bad(node, "has no inputs")) };
                if !(axis == 1 || (axis == -3 && first.h * first.w > 1)) {
                    return Err(bad(
                        node,
                        format!("concatenation along axis {axis} is not supported (channels, axis 1, are)"),
                    ));
                }
                let c = parts.iter().map(|(_, s)| s.c).sum();
                let names: Vec<&str> = parts.iter().map(|(n, _)| n.as_str()).collect();
                self.push(node, Op::Concat, &names, Shape { c, ..first });
            }
            "Flatten" => {
                let (x, s) = self.value(node, 0)?;
                if attr_i(node, "axis", 1) != 1 {
                    return Err(bad(node, "only Flatten with axis 1 is supported"));
                }
                if s.rank == 2 {
                    self.alias(node, (x, s));
                } else {
                    self.push(node, Op::Flatten, &[&x], Shape::flat(s.c * s.h * s.w));
                }
            }
            "MatMul" if self.value_cl(node, 0).is_ok_and(|(_, s)| s.channels_last) => {
                self.matmul_channels_last(node, nodes, index)?
            }
            "LayerNormalization" => self.layer_norm(node)?,
            "InstanceNormalization" => self.instance_norm(node)?,
            "Gemm" | "MatMul" => self.gemm(node, nodes, index)?,
            "Softmax" => {
                let (x, s) = self.value(node, 0)?;
                let axis = attr_i(node, "axis", if self.opset < 13 { 1 } else { -1 });
                if s.h * s.w != 1 || !(axis == 1 || axis == -1) {
                    return Err(bad(node, format!("softmax over axis {axis} of a {s:?} tensor is not supported (only over the features of [N, C])")));
                }
                self.push(node, Op::Softmax, &[&x], s);
            }
            "Dropout" | "Identity" => {
                if node.output.get(1).is_some_and(|o| !o.is_empty()) {
                    return Err(bad(node, "the mask output of Dropout is not supported"));
                }
                let v = self.value(node, 0)?;
                self.alias(node, v);
            }
            other => {
                return Err(bad(
                    node,
                    format!("unsupported ONNX op '{other}'; supported: {}", SUPPORTED_OPS.join(", ")),
                ));
            }
        }
        Ok(())
    }
}

impl Importer<'_> {
    /// Folds `node` when its inputs are constants (or it is the Shape of an activation);
    /// true when it did.
    fn try_fold(&mut self, node: &NodeProto) -> Result<bool> {
        let op = node.op_type.as_str();
        let present: Vec<&String> = node.input.iter().filter(|n| !n.is_empty()).collect();
        if op == "Shape" {
            if let Some(v) = present.first().and_then(|n| self.nd.get(*n)) {
                let c = shape_of_dims(node, v.nd.dims());
                self.constants.insert(node.output[0].clone(), c);
                return Ok(true);
            }
            if let Some((_, s)) = present.first().and_then(|n| self.values.get(*n)) {
                let c = if s.merged {
                    Constant::from_ints(vec![1], vec![UNKNOWN])
                } else {
                    shape_of_activation(node, &s.dims())
                };
                self.constants.insert(node.output[0].clone(), c);
                return Ok(true);
            }
        }
        if op == "Size"
            && present.first().is_some_and(|n| self.values.contains_key(*n) || self.nd.contains_key(*n))
        {
            self.constants.insert(node.output[0].clone(), Constant::from_ints(vec![], vec![UNKNOWN]));
            return Ok(true);
        }
        if !fold::FOLDABLE.contains(&op)
            || present.is_empty()
            || !present.iter().all(|n| self.constants.contains_key(*n))
        {
            return Ok(false);
        }
        if op == "Dropout" && node.output.get(1).is_some_and(|o| !o.is_empty()) {
            return Err(bad(node, "the mask output of Dropout is not supported"));
        }
        let inputs: Vec<Option<&Constant>> =
            node.input.iter().map(|n| if n.is_empty() { None } else { self.constants.get(n) }).collect();
        let c = fold(node, &inputs, self.opset)?;
        self.constants.insert(node.output[0].clone(), c);
        Ok(true)
    }
}

/// The tensor of a Constant node (`value`, or the scalar and list forms of opset 12+).
fn constant_node(node: &NodeProto, dir: Option<&Path>) -> Result<Constant> {
    if let Some(t) = attr(node, "value").and_then(|a| a.t.as_ref()) {
        return Constant::from_proto(t, dir);
    }
    if let Some(a) = attr(node, "value_float") {
        return Ok(Constant::from_floats(vec![], vec![a.f]));
    }
    if let Some(a) = attr(node, "value_floats") {
        return Ok(Constant::from_floats(vec![a.floats.len()], a.floats.clone()));
    }
    if let Some(a) = attr(node, "value_int") {
        return Ok(Constant::from_ints(vec![], vec![a.i]));
    }
    if let Some(a) = attr(node, "value_ints") {
        return Ok(Constant::from_ints(vec![a.ints.len()], a.ints.clone()));
    }
    Err(bad(node, "only tensor, float and int Constant values are supported"))
}

/// Converts a decoded model.
pub(super) fn import(model: &ModelProto, dir: Option<&Path>) -> Result<OnnxModel> {
    let graph = model.graph.as_ref().ok_or_else(|| Error::Model("the model has no graph".into()))?;
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .ok_or_else(|| {
            Error::Model("the model imports no version of the default ONNX operator set".into())
        })?;
    if !OPSETS.contains(&opset) {
        return Err(Error::Model(format!(
            "opset {opset} is not supported (opsets {} to {} are)",
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    let mut constants = HashMap::new();
    for t in &graph.initializer {
        constants.insert(t.name.clone(), Constant::from_proto(t, dir)?);
    }
    let inputs: Vec<_> = graph.input.iter().filter(|i| !constants.contains_key(&i.name)).collect();
    let [input] = inputs[..] else {
        return Err(Error::Model(format!(
            "the graph has {} inputs; exactly one image input is supported",
            inputs.len()
        )));
    };
    let dims: Vec<Option<usize>> = input
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| {
            s.dim
                .iter()
                .map(|d| d.dim_value.and_then(|v| usize::try_from(v).ok()).filter(|&v| v > 0))
                .collect()
        })
        .ok_or_else(|| Error::Model(format!("input '{}' has no tensor shape", input.name)))?;
    let (Some(c), Some(h), Some(w)) =
        (dims.get(1).copied().flatten(), dims.get(2).copied().flatten(), dims.get(3).copied().flatten())
    else {
        return Err(Error::Model(format!(
            "input '{}' must be [N, C, H, W] with fixed C, H, W; got {dims:?}",
            input.name
        )));
    };
    if dims.len() != 4 {
        return Err(Error::Model(format!(
            "input '{}' must be 4-D [N, C, H, W], got {} dimensions",
            input.name,
            dims.len()
        )));
    }
    let spec = InputSpec { name: input.name.clone(), channels: c, height: h, width: w };
    let mut im = Importer {
        dir,
        opset,
        constants,
        values: HashMap::from([(input.name.clone(), (input.name.clone(), Shape::map(c, h, w)))]),
        net: Network::new(graph.name.clone(), spec),
        layer_names: HashSet::new(),
        consumed: HashSet::new(),
        zero_pads: HashMap::new(),
        nd: HashMap::new(),
    };
    check_operators(&graph.node, opset)?;
    for i in 0..graph.node.len() {
        im.node(&graph.node, i)?;
    }
    let output_names: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
    let output_rank = graph
        .output
        .first()
        .and_then(|o| o.r#type.as_ref())
        .and_then(|t| t.tensor_type.as_ref())
        .and_then(|t| t.shape.as_ref())
        .map(|s| s.dim.len());
    let [out] = &output_names[..] else {
        return Err(Error::Model(format!(
            "the graph has {} outputs; exactly one is supported",
            output_names.len()
        )));
    };
    im.nd_finish(out)?;
    let (layer, _) = im
        .values
        .get(out)
        .ok_or_else(|| Error::Model(format!("output '{out}' is not produced by any node")))?;
    im.net.output = layer.clone();
    if im.net.name.is_empty() {
        im.net.name = "onnx".into();
    }
    Ok(OnnxModel {
        network: im.net,
        input_name: input.name.clone(),
        input_shape: [dims[0], Some(c), Some(h), Some(w)],
        output_names,
        output_rank,
        opset,
        producer: format!("{} {}", model.producer_name, model.producer_version).trim().to_string(),
    })
}
