//! ONNX operators on atom descriptions.

use super::{checked_product, laid_out, progression, show, Nd, NdValue};
use crate::error::Result;
use crate::network::{Conv, MatMul, Op};
use crate::onnx::fold;
use crate::onnx::import::{attr_f, attr_i, attr_ints, bad, Importer, Shape};
use crate::onnx::ops::{ARITH_OPS, UNARY_OPS};
use crate::onnx::proto::NodeProto;
use crate::onnx::tensor::{batch_factor, batch_times, symbolic, Constant};

impl Importer<'_> {
    /// The node, where an input is an atom description or the ordinary importer refused it.
    pub(crate) fn nd_node(&mut self, node: &NodeProto, nodes: &[NodeProto], index: usize) -> Result<()> {
        let op = node.op_type.as_str();
        match op {
            "Pad" if self.zero_pad(node)? => {
                let v = self.nd_of(node, 0)?;
                self.nd_set(node, 0, v);
                Ok(())
            }
            "Expand" => {
                let v = self.nd_of(node, 0)?;
                let target = self.required(node, 1, "shape")?.to_ints();
                let dims = v.nd.dims();
                if target.len() != dims.len() {
                    return Err(bad(
                        node,
                        format!(
                            "Expand of {} to rank {} is not supported (same rank is)",
                            show(&dims),
                            target.len()
                        ),
                    ));
                }
                let mut like = v.nd.clone();
                for (a, (&t, &d)) in target.iter().zip(&dims).enumerate() {
                    if d == 1 && t > 1 {
                        like.replace_axis(a, usize::try_from(t).map_err(|_| bad(node, "bad size"))?, false);
                    } else if t != 1 && t != d && !(symbolic(t) && batch_factor(t) == batch_factor(d)) {
                        return Err(bad(node, format!("Expand of {} to {}", show(&dims), show(&target))));
                    }
                }
                let sizes: Vec<usize> = like.phys.iter().map(|&a| like.size[a]).collect();
                if checked_product(&sizes).is_none_or(|n| n > 1 << 30) {
                    return Err(bad(node, format!("Expand to {} is too large", show(&target))));
                }
                let out = if like == v.nd { v } else { self.nd_broadcast(node, &v, &like)? };
                self.nd_set(node, 0, out);
                Ok(())
            }
            "Identity" | "Dropout" => {
                let v = self.nd_of(node, 0)?;
                self.nd_set(node, 0, v);
                Ok(())
            }
            "Transpose" => {
                let v = self.nd_of(node, 0)?;
                let rank = v.nd.rank();
                let perm: Vec<usize> = match attr_ints(node, "perm") {
                    Some(p) => p.iter().map(|&a| fold::axis(node, a, rank)).collect::<Result<_>>()?,
                    None => (0..rank).rev().collect(),
                };
                let mut sorted = perm.clone();
                sorted.sort_unstable();
                if sorted != (0..rank).collect::<Vec<_>>() {
                    return Err(bad(node, format!("perm {perm:?} is not a permutation of {rank} axes")));
                }
                self.nd_set(node, 0, v.permuted(&perm));
                Ok(())
            }
            "Reshape" => {
                let v = self.nd_of(node, 0)?;
                let target = self.required(node, 1, "shape")?.to_ints();
                let allowzero = attr_i(node, "allowzero", 0) != 0;
                let dims = v.nd.dims();
                let target: Vec<i64> = target
                    .iter()
                    .enumerate()
                    .map(|(i, &d)| if d == 0 && !allowzero { dims.get(i).copied().unwrap_or(0) } else { d })
                    .collect();
                let out = self.nd_reshape(node, &v, &target)?;
                self.nd_set(node, 0, out);
                Ok(())
            }
            "Flatten" => {
                let v = self.nd_of(node, 0)?;
                let rank = v.nd.rank();
                let axis = fold::axis(node, attr_i(node, "axis", 1), rank + 1)?;
                let dims = v.nd.dims();
                let fold_dims = |d: &[i64]| -> i64 {
                    let k = d
                        .iter()
                        .map(|&x| batch_factor(x).unwrap_or(x))
                        .try_fold(1i64, |acc, x| acc.checked_mul(x))
                        .unwrap_or(-2);
                    if d.iter().any(|&x| symbolic(x)) {
                        batch_times(k)
                    } else {
                        k
                    }
                };
                let target = vec![fold_dims(&dims[..axis]), fold_dims(&dims[axis..])];
                let out = self.nd_reshape(node, &v, &target)?;
                self.nd_set(node, 0, out);
                Ok(())
            }
            "Squeeze" | "Unsqueeze" => {
                let v = self.nd_of(node, 0)?;
                let axes = if self.opset < 13 {
                    attr_ints(node, "axes")
                } else {
                    self.constant(node, 1, "axes")?.map(Constant::to_ints)
                };
                let mut nd = v.nd.clone();
                let rank = nd.rank();
                let groups: Vec<Vec<usize>> = nd.axes().iter().map(|g| g.to_vec()).collect();
                let new_groups: Vec<Vec<usize>> = if op == "Unsqueeze" {
                    let axes = axes.ok_or_else(|| bad(node, "Unsqueeze needs axes"))?;
                    let out_rank = rank + axes.len();
                    let mut at: Vec<usize> =
                        axes.iter().map(|&a| fold::axis(node, a, out_rank)).collect::<Result<_>>()?;
                    at.sort_unstable();
                    let mut old = groups.into_iter();
                    (0..out_rank)
                        .map(|i| {
                            if at.contains(&i) {
                                let a = nd.new_atom(1);
                                nd.phys.push(a);
                                vec![a]
                            } else {
                                old.next().unwrap_or_default()
                            }
                        })
                        .collect()
                } else {
                    let at: Vec<usize> = match axes {
                        Some(a) => a.iter().map(|&x| fold::axis(node, x, rank)).collect::<Result<_>>()?,
                        None => (0..rank)
                            .filter(|&a| nd.axis_len(a) == 1 && !groups[a].contains(&nd.batch))
                            .collect(),
                    };
                    for &a in &at {
                        if nd.axis_len(a) != 1 || groups[a].contains(&nd.batch) {
                            return Err(bad(node, format!("axis {a} of {:?} is not of size 1", nd.dims())));
                        }
                    }
                    let dropped: Vec<usize> = at.iter().flat_map(|&a| groups[a].clone()).collect();
                    nd.phys.retain(|x| !dropped.contains(x));
                    groups.into_iter().enumerate().filter(|(i, _)| !at.contains(i)).map(|(_, g)| g).collect()
                };
                nd.order = new_groups.iter().flatten().copied().collect();
                nd.groups = new_groups.iter().map(Vec::len).collect();
                self.nd_set(node, 0, NdValue { nd, ..v });
                Ok(())
            }
            "Gather" => self.nd_gather(node),
            "Slice" => self.nd_slice(node),
            "Split" => {
                let v = self.nd_of(node, 0)?;
                let axis = fold::axis(node, attr_i(node, "axis", 0), v.nd.rank())?;
                if axis == v.nd.batch_axis() {
                    return Err(bad(node, "splitting the batch axis is not supported"));
                }
                let sizes = self.split_sizes(node, v.nd.axis_len(axis))?;
                let mut start = 0;
                for (k, &len) in sizes.iter().enumerate() {
                    if !node.output[k].is_empty() {
                        let part = self.nd_select(node, v.clone(), axis, start, 1, Some(len))?;
                        self.nd_set(node, k, part);
                    }
                    start += len;
                }
                Ok(())
            }
            "Concat" => self.nd_concat(node),
            "MatMul" | "Gemm" => self.nd_matmul(node, nodes, index),
            "Einsum" => self.nd_einsum(node),
            "Softmax" => {
                let v = self.nd_of(node, 0)?;
                let rank = v.nd.rank();
                let axis =
                    fold::axis(node, attr_i(node, "axis", if self.opset < 13 { 1 } else { -1 }), rank)?;
                let axes: Vec<usize> = if self.opset < 13 { (axis..rank).collect() } else { vec![axis] };
                let (w, c) = self.nd_leading(node, &v, &axes)?;
                let rest = w.nd.image_len() / c;
                let x = self.nd_view(node, &w, [c, rest, 1]);
                let layer = self.push_named(node, "softmax", Op::Softmax, &[&x]);
                self.nd_set(node, 0, NdValue { layer, nd: w.nd, view: [c, rest, 1] });
                Ok(())
            }
            "LayerNormalization" => {
                let v = self.nd_of(node, 0)?;
                let rank = v.nd.rank();
                let axis = fold::axis(node, attr_i(node, "axis", -1), rank)?;
                let axes: Vec<usize> = (axis..rank).collect();
                let (w, c) = self.nd_leading(node, &v, &axes)?;
                let rest = w.nd.image_len() / c;
                let x = self.nd_view(node, &w, [c, rest, 1]);
                // The channels-last view [N, rest, 1, C] of memory [C, rest, 1].
                let shape = Shape { channels_last: true, ..Shape::map(c, rest, 1) };
                let mut fake = node.clone();
                for a in &mut fake.attribute {
                    if a.name == "axis" {
                        a.i = -1;
                    }
                }
                let (layer, out) = self.via_map(&fake, &[(0, x, shape)], nodes, index)?;
                self.nd_set(node, 0, NdValue { layer, nd: w.nd, view: [out.c, out.h, out.w] });
                Ok(())
            }
            "Relu" | "Clip" => self.nd_elementwise(node, nodes, index),
            "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceL2" | "ReduceSumSquare" => self.nd_reduce(node),
            _ if UNARY_OPS.contains(&op) || ARITH_OPS.contains(&op) => {
                self.nd_elementwise(node, nodes, index)
            }
            _ => {
                // Anything else reads ordinary shapes.
                let mut inputs = Vec::new();
                for (k, name) in node.input.iter().enumerate() {
                    if let Some(v) = self.nd.get(name).cloned() {
                        let shape = self.nd_plain_shape(node, &v)?;
                        let plain = self.nd_arrange(node, &v, v.nd.logical_atoms())?;
                        let x = self.nd_view(node, &plain, [shape.c, shape.h, shape.w]);
                        inputs.push((k, x, shape));
                    }
                }
                self.via_map(node, &inputs, nodes, index).map(|_| ())
            }
        }
    }

    /// Element-wise operators: the activations in one memory order, non-scalar constants
    /// laid out as a `Constant` layer in it, then the ordinary operator on flat views.
    pub(super) fn nd_elementwise(
        &mut self,
        node: &NodeProto,
        nodes: &[NodeProto],
        index: usize,
    ) -> Result<()> {
        let acts: Vec<usize> = (0..node.input.len())
            .filter(|&k| {
                !node.input[k].is_empty()
                    && (self.nd.contains_key(&node.input[k]) || self.values.contains_key(&node.input[k]))
            })
            .collect();
        let Some(&first) = acts.first() else { return Err(bad(node, "has no activation input")) };
        let mut operands: Vec<NdValue> = acts.iter().map(|&k| self.nd_of(node, k)).collect::<Result<_>>()?;
        // The operand with the most elements sets the layout; the others broadcast to it.
        let widest =
            (0..operands.len()).max_by_key(|&i| (operands[i].nd.image_len(), usize::MAX - i)).unwrap_or(0);
        let mut base = operands[widest].clone();
        let _ = first;
        for o in &mut operands {
            if o.nd.dims() != base.nd.dims() {
                *o = self.nd_broadcast(node, o, &base.nd)?;
            }
        }
        if operands.iter().any(|o| !o.nd.same_layout(&base.nd)) {
            // Everything in logical order.
            base = self.nd_arrange(node, &base, base.nd.logical_atoms())?;
            for o in &mut operands {
                *o = self.nd_arrange(node, o, o.nd.logical_atoms())?;
            }
        }
        let len = base.nd.image_len();
        let flat = Shape::flat(len);
        let mut inputs = Vec::new();
        for (o, &k) in operands.iter().zip(&acts) {
            let x = self.nd_view(node, o, [len, 1, 1]);
            inputs.push((k, x, flat));
        }
        // Constants of more than one value: laid out like the activation.
        let x0 = inputs[0].1.clone();
        for k in 0..node.input.len() {
            if acts.contains(&k)
                || node.input[k].is_empty()
                || UNARY_OPS.contains(&node.op_type.as_str())
                || node.op_type == "Clip"
            {
                continue;
            }
            let Some(c) = self.constants.get(&node.input[k]).cloned() else { continue };
            if c.len() <= 1 {
                continue;
            }
            let values = laid_out(node, &c, &base.nd)?;
            let layer = self.push_named(
                node,
                &format!("constant{k}"),
                Op::Constant { shape: [len, 1, 1], values },
                &[&x0],
            );
            inputs.push((k, layer, flat));
        }
        let (layer, out) = self.via_map(node, &inputs, nodes, index)?;
        if out.c * out.h * out.w != len {
            return Err(bad(node, "element-wise output of another size"));
        }
        self.nd_set(node, 0, NdValue { layer, nd: base.nd, view: [out.c, out.h, out.w] });
        Ok(())
    }

    /// ReduceMean, ReduceSum and ReduceMax over per-image axes: those axes outermost,
    /// then a reduction over the channels of that view.
    pub(super) fn nd_reduce(&mut self, node: &NodeProto) -> Result<()> {
        let v = self.nd_of(node, 0)?;
        let rank = v.nd.rank();
        let mut axes = self.reduce_axes(node, rank)?;
        if axes.is_empty() {
            axes = (0..rank).collect();
        }
        let (w, c) = self.nd_leading(node, &v, &axes)?;
        let rest = w.nd.image_len() / c;
        let x = self.nd_view(node, &w, [c, rest, 1]);
        let squares = matches!(node.op_type.as_str(), "ReduceL2" | "ReduceSumSquare");
        let x = if squares {
            self.push_named(node, "square", Op::Binary(crate::network::Binary::Mul), &[&x, &x])
        } else {
            x
        };
        let r = match node.op_type.as_str() {
            "ReduceMean" => crate::network::Reduce::Mean,
            "ReduceMax" => crate::network::Reduce::Max,
            _ => crate::network::Reduce::Sum,
        };
        let mut layer = self.push_named(node, "reduce", Op::ReduceChannels(r), &[&x]);
        if node.op_type == "ReduceL2" {
            layer = self.push_named(node, "sqrt", Op::Unary(crate::network::Unary::Sqrt), &[&layer]);
        }
        let mut nd = w.nd.clone();
        let groups: Vec<Vec<usize>> = nd.axes().iter().map(|g| g.to_vec()).collect();
        let reduced: Vec<usize> = axes.iter().flat_map(|&a| groups[a].clone()).collect();
        nd.phys.retain(|a| !reduced.contains(a));
        let keep = attr_i(node, "keepdims", 1) != 0;
        let mut new_groups = Vec::new();
        for (a, g) in groups.into_iter().enumerate() {
            if !axes.contains(&a) {
                new_groups.push(g);
            } else if keep {
                let one = nd.new_atom(1);
                nd.phys.push(one);
                new_groups.push(vec![one]);
            }
        }
        nd.order = new_groups.iter().flatten().copied().collect();
        nd.groups = new_groups.iter().map(Vec::len).collect();
        self.nd_set(node, 0, NdValue { layer, nd, view: [1, rest, 1] });
        Ok(())
    }

    /// Gather of constant indices along a per-image axis: one strided copy.
    pub(super) fn nd_gather(&mut self, node: &NodeProto) -> Result<()> {
        let v = self.nd_of(node, 0)?;
        let idx = self.required(node, 1, "indices")?.clone();
        let rank = v.nd.rank();
        let axis = fold::axis(node, attr_i(node, "axis", 0), rank)?;
        let n = v.nd.axis_len(axis) as i64;
        let list: Vec<usize> = fold::known_ints(node, &idx, "indices")?
            .iter()
            .map(|&i| if i < 0 { i + n } else { i })
            .map(|i| {
                usize::try_from(i)
                    .ok()
                    .filter(|&i| (i as i64) < n)
                    .ok_or_else(|| bad(node, format!("index {i} out of range for an axis of {n}")))
            })
            .collect::<Result<_>>()?;
        let scalar = idx.dims.is_empty();
        if !scalar && idx.dims.len() != 1 {
            return Err(bad(node, "gathers of index tensors of rank > 1 are not supported on this tensor"));
        }
        let step =
            progression(&list).ok_or_else(|| bad(node, format!("indices {list:?} are not evenly spaced")))?;
        self.nd_take(node, v, axis, list[0], step, if scalar { None } else { Some(list.len()) })
    }

    /// Slice of per-image axes with constant bounds and steps.
    pub(super) fn nd_slice(&mut self, node: &NodeProto) -> Result<()> {
        let mut v = self.nd_of(node, 0)?;
        let ints = |k: usize, what: &str| -> Result<Option<Vec<i64>>> {
            Ok(match self.constant(node, k, what)? {
                Some(c) => Some(fold::known_ints(node, c, what)?),
                None => None,
            })
        };
        let (starts, ends, axes, steps) = if self.opset < 10 {
            (
                attr_ints(node, "starts").unwrap_or_default(),
                attr_ints(node, "ends").unwrap_or_default(),
                attr_ints(node, "axes"),
                None,
            )
        } else {
            let raw = |k: usize, what: &str| -> Result<Vec<i64>> {
                Ok(self.constant(node, k, what)?.map(Constant::to_ints).unwrap_or_default())
            };
            (raw(1, "starts")?, raw(2, "ends")?, ints(3, "axes")?, ints(4, "steps")?)
        };
        let rank = v.nd.rank();
        let axes: Vec<usize> = match axes {
            Some(a) => a.iter().map(|&x| fold::axis(node, x, rank)).collect::<Result<_>>()?,
            None => (0..starts.len()).collect(),
        };
        let dims: Vec<usize> = (0..rank).map(|a| v.nd.axis_len(a)).collect();
        let ranges =
            super::super::shapes::slice_ranges(node, &dims, &starts, &ends, &axes, steps.as_deref())?;
        let b = v.nd.batch_axis();
        for (a, r) in ranges.iter().enumerate() {
            if r.len() == dims[a] && progression(r) == Some(1) || a == b && r.len() == dims[a] {
                continue;
            }
            if a == b {
                return Err(bad(node, "slicing the batch axis is not supported"));
            }
            if r.is_empty() {
                return Err(bad(node, format!("slice leaves axis {a} empty")));
            }
            let step = progression(r).ok_or_else(|| bad(node, "uneven slice"))?;
            v = self.nd_select(node, v, a, r[0], step, Some(r.len()))?;
        }
        self.nd_set(node, 0, v);
        Ok(())
    }

    pub(super) fn nd_take(
        &mut self,
        node: &NodeProto,
        v: NdValue,
        axis: usize,
        start: usize,
        step: usize,
        count: Option<usize>,
    ) -> Result<()> {
        let out = self.nd_select(node, v, axis, start, step, count)?;
        self.nd_set(node, 0, out);
        Ok(())
    }

    /// Concatenation along a per-image axis: every part with that axis outermost, then a
    /// channel concatenation. Constant parts (a class token) are laid out per image.
    pub(super) fn nd_concat(&mut self, node: &NodeProto) -> Result<()> {
        let acts: Vec<usize> = (0..node.input.len())
            .filter(|&k| self.nd.contains_key(&node.input[k]) || self.values.contains_key(&node.input[k]))
            .collect();
        let Some(&first) = acts.first() else { return Err(bad(node, "has no activation input")) };
        let base = self.nd_of(node, first)?;
        let rank = base.nd.rank();
        let axis = fold::axis(node, attr_i(node, "axis", 1), rank)?;
        if axis == base.nd.batch_axis() {
            return Err(bad(node, "concatenation along the batch axis is not supported"));
        }
        // The output: the first part's atoms, the axis one fresh atom outermost.
        let mut layers = Vec::new();
        let mut total = 0;
        let mut canonical: Option<Nd> = None;
        for k in 0..node.input.len() {
            let (layer, n) = if acts.contains(&k) {
                let v = self.nd_of(node, k)?;
                if v.nd.rank() != rank {
                    return Err(bad(node, "parts of different ranks"));
                }
                let (w, n) = self.nd_leading(node, &v, &[axis])?;
                // The other axes in logical order.
                let mut phys: Vec<usize> = w.nd.axes()[axis].to_vec();
                phys.extend(w.nd.logical_atoms().into_iter().filter(|a| !w.nd.axes()[axis].contains(a)));
                let w = self.nd_arrange(node, &w, phys)?;
                if canonical.is_none() {
                    canonical = Some(w.nd.clone());
                }
                let rest = w.nd.image_len() / n;
                (self.nd_view(node, &w, [n, rest, 1]), n)
            } else {
                (String::new(), 0)
            };
            layers.push(layer);
            total += n;
        }
        let canon = canonical.unwrap_or_else(|| base.nd.clone());
        let rest = canon.image_len() / canon.axis_len(axis);
        // Constant parts, laid out [axis, rest] in the same order.
        for k in 0..node.input.len() {
            if acts.contains(&k) {
                continue;
            }
            let c = self.required(node, k, "part")?.clone();
            if c.dims.len() != rank {
                return Err(bad(
                    node,
                    format!("constant part of dims {:?} for a rank-{rank} concatenation", c.dims),
                ));
            }
            let n = c.dims[axis];
            let mut like = canon.clone();
            like.replace_axis(axis, n, true);
            let values = laid_out(node, &c, &like)?;
            let source = layers[first].clone();
            layers[k] = self.push_named(
                node,
                &format!("part{k}"),
                Op::Constant { shape: [n, rest, 1], values },
                &[&source],
            );
            total += n;
        }
        let names: Vec<&str> = layers.iter().map(String::as_str).collect();
        let layer = self.push_named(node, "concat", Op::Concat, &names);
        let mut nd = canon;
        nd.replace_axis(axis, total, true);
        self.nd_set(node, 0, NdValue { layer, nd, view: [total, rest, 1] });
        Ok(())
    }

    /// MatMul or Gemm: with constant weights, a pointwise convolution over the last axis
    /// (a following Add of a constant vector is its bias); of two activations, batched
    /// products through strides.
    pub(super) fn nd_matmul(&mut self, node: &NodeProto, nodes: &[NodeProto], index: usize) -> Result<()> {
        let second_is_act =
            node.input.get(1).is_some_and(|n| self.nd.contains_key(n) || self.values.contains_key(n));
        if second_is_act {
            return self.nd_matmul_act(node);
        }
        let v = self.nd_of(node, 0)?;
        let rank = v.nd.rank();
        let w = self.required(node, 1, "weight")?.clone();
        let [rows, cols] = w.dims[..] else {
            return Err(bad(node, format!("weights of dims {:?} (a matrix is supported)", w.dims)));
        };
        let gemm = node.op_type == "Gemm";
        if gemm && attr_i(node, "transA", 0) != 0 {
            return Err(bad(node, "transA = 1 is not supported"));
        }
        let trans_b = gemm && attr_i(node, "transB", 0) != 0;
        let (alpha, beta) =
            if gemm { (attr_f(node, "alpha", 1.0), attr_f(node, "beta", 1.0)) } else { (1.0, 1.0) };
        let (cin, cout) = if trans_b { (cols, rows) } else { (rows, cols) };
        let (x, k) = self.nd_leading(node, &v, &[rank - 1])?;
        if k != cin {
            return Err(bad(
                node,
                format!("weights {:?} expect {cin} inputs, the last axis has {k}", w.dims),
            ));
        }
        let mut weights = vec![0.0f32; cin * cout];
        for o in 0..cout {
            for i in 0..cin {
                let b = if trans_b { w.floats[o * cin + i] } else { w.floats[i * cout + o] };
                weights[o * cin + i] = alpha * b;
            }
        }
        let mut bias = if gemm { self.constant(node, 2, "bias")?.map(|c| c.floats.clone()) } else { None };
        let mut absorbed = None;
        if !gemm {
            let vector = |c: &Constant| c.len() == cout && c.dims.iter().rev().skip(1).all(|&d| d == 1);
            if let Some((only, c, output)) = self.bias_add(node, nodes, index).filter(|(_, c, _)| vector(c)) {
                bias = Some(c.floats);
                absorbed = Some((only, output));
            }
        }
        let bias = match bias {
            None => None,
            Some(b) if b.len() == cout => Some(b.iter().map(|v| beta * v).collect()),
            Some(b) if b.len() == 1 => Some(vec![beta * b[0]; cout]),
            Some(b) => return Err(bad(node, format!("bias of {} values for {cout} outputs", b.len()))),
        };
        let rest = x.nd.image_len() / k;
        let input = self.nd_view(node, &x, [k, rest, 1]);
        let conv = Conv::new(cout, [1, 1], 0, weights, bias);
        let layer = self.push_named(node, "linear", Op::Conv(conv), &[&input]);
        let mut nd = x.nd.clone();
        nd.replace_axis(rank - 1, cout, true);
        let out = NdValue { layer, nd, view: [cout, rest, 1] };
        self.nd_set(node, 0, out);
        if let Some((at, output)) = absorbed {
            self.consumed.insert(at);
            let from = node.output[0].clone();
            if let Some(v) = self.nd.get(&from).cloned() {
                self.nd.insert(output, v);
            } else if let Some(v) = self.values.get(&from).cloned() {
                self.values.insert(output, v);
            }
        }
        Ok(())
    }

    /// MatMul of two activations `[…, M, K] · […, K, N]` (equal leading axes, the batch
    /// among them), output memory `[N][leading][M]` so that a softmax over its last axis
    /// runs over channels.
    pub(super) fn nd_matmul_act(&mut self, node: &NodeProto) -> Result<()> {
        let a = self.nd_of(node, 0)?;
        let b = self.nd_of(node, 1)?;
        let out = self.nd_matmul_values(node, &a, &b)?;
        self.nd_set(node, 0, out);
        Ok(())
    }

    /// The product of two activations `[…, M, K] · […, K, N]` (see [`Self::nd_matmul_act`]).
    pub(super) fn nd_matmul_values(&mut self, node: &NodeProto, a: &NdValue, b: &NdValue) -> Result<NdValue> {
        let rank = a.nd.rank();
        let (da, db) = (a.nd.dims(), b.nd.dims());
        if rank < 3 || b.nd.rank() != rank || da[..rank - 2] != db[..rank - 2] || da[rank - 1] != db[rank - 2]
        {
            return Err(bad(
                node,
                format!(
                    "MatMul of {} and {} is not supported (equal leading axes holding the batch are)",
                    show(&da),
                    show(&db)
                ),
            ));
        }
        if a.nd.batch_axis() >= rank - 2 || b.nd.batch_axis() >= rank - 2 {
            return Err(bad(node, "the batch must be a leading axis of both operands"));
        }
        let lead: Vec<usize> = (0..rank - 2).collect();
        // Each operand with memory in logical order for its leading axes: [lead][M][K].
        let plain = |s: &mut Self, v: &NdValue| s.nd_arrange(node, v, v.nd.logical_atoms());
        let (a, b) = (plain(self, a)?, plain(self, b)?);
        type Run = (usize, usize);
        let units = |v: &NdValue| -> (Vec<Run>, Run, Run) {
            let g = v.nd.axes();
            let lead_atoms: Vec<usize> = lead.iter().flat_map(|&i| g[i].iter().copied()).collect();
            let one = |r: Vec<(usize, usize)>| r.first().copied().unwrap_or((1, 0));
            (v.nd.runs(&lead_atoms), one(v.nd.runs(g[rank - 2])), one(v.nd.runs(g[rank - 1])))
        };
        let (la, (m, am), (k, ak)) = units(&a);
        let (lb, (_, bk), (n, bn)) = units(&b);
        // Logical order makes each operand's leading axes one run.
        let lead_len: usize = la.iter().map(|r| r.0).product();
        if la.len() > 1 || lb.len() > 1 || lead_len != lb.iter().map(|r| r.0).product::<usize>() {
            return Err(bad(node, "leading axes that do not line up"));
        }
        let (sa, sb) = (la.first().map_or(0, |r| r.1), lb.first().map_or(0, |r| r.1));
        let mm = MatMul {
            batch: [1, lead_len],
            m,
            k,
            n,
            a_strides: [0, sa, am, ak],
            b_strides: [0, sb, bk, bn],
            out_strides: [0, m, 1, lead_len * m],
            shape: [n, lead_len * m, 1],
        };
        let layer = self.push_named(node, "matmul", Op::MatMul(mm), &[&a.layer, &b.layer]);
        // Output atoms: A's leading atoms, a fresh M and a fresh N.
        let mut nd = a.nd.clone();
        let g: Vec<Vec<usize>> = nd.axes().iter().map(|x| x.to_vec()).collect();
        let (fm, fn_) = (nd.new_atom(m), nd.new_atom(n));
        let lead_atoms: Vec<usize> = lead.iter().flat_map(|&i| g[i].iter().copied()).collect();
        nd.order = lead_atoms.clone();
        nd.order.extend([fm, fn_]);
        nd.groups = lead.iter().map(|&i| g[i].len()).chain([1, 1]).collect();
        nd.phys = vec![fn_];
        nd.phys.extend(lead_atoms.iter().copied().filter(|&x| x != nd.batch));
        nd.phys.push(fm);
        Ok(NdValue { layer, nd, view: [n, lead_len * m, 1] })
    }

    /// Whether a Pad node pads by nothing.
    fn zero_pad(&self, node: &NodeProto) -> Result<bool> {
        let pads = if self.opset < 11 {
            attr_ints(node, "pads").unwrap_or_default()
        } else {
            self.required(node, 1, "pads")?.to_ints()
        };
        Ok(pads.iter().all(|&p| p == 0))
    }
}
