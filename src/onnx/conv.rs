//! The importer's convolution-family operators: Conv, MaxPool/AveragePool geometry
//! (explicit, `auto_pad` and absorbed zero Pads) and Gemm/MatMul as fully connected layers.

use super::import::{attr_f, attr_i, attr_ints, attr_s, bad, Importer, Shape};
use super::proto::NodeProto;
use crate::error::Result;
use crate::network::{Conv, Linear, Op, Pool};

pub(super) fn to_usize(node: &NodeProto, what: &str, v: &[i64]) -> Result<Vec<usize>> {
    v.iter()
        .map(|&x| usize::try_from(x).map_err(|_| bad(node, format!("{what} {v:?} has a negative entry"))))
        .collect()
}

/// Padding of one axis: explicit, or from `auto_pad` (SAME_UPPER puts the odd pixel at
/// the end, SAME_LOWER at the beginning).
fn same_pads(auto_pad: &str, size: usize, kernel: usize, stride: usize, dilation: usize) -> (usize, usize) {
    let out = size.div_ceil(stride);
    let span = (kernel - 1) * dilation + 1;
    let total = ((out - 1) * stride + span).saturating_sub(size);
    match auto_pad {
        "SAME_LOWER" => (total.div_ceil(2), total / 2),
        _ => (total / 2, total.div_ceil(2)),
    }
}

impl Importer<'_> {
    pub(super) fn pool_geometry(&self, node: &NodeProto, s: Shape) -> Result<(Pool, Shape)> {
        let kernel = to_usize(
            node,
            "kernel_shape",
            &attr_ints(node, "kernel_shape").ok_or_else(|| bad(node, "kernel_shape is required"))?,
        )?;
        if kernel.len() != 2 {
            return Err(bad(node, format!("only 2-D pooling is supported, kernel_shape is {kernel:?}")));
        }
        if attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|&x| x != 1)) {
            return Err(bad(node, "pooling dilations other than 1 are not supported"));
        }
        if node.output.get(1).is_some_and(|o| !o.is_empty()) {
            return Err(bad(node, "the Indices output of MaxPool is not supported"));
        }
        let stride = to_usize(node, "strides", &attr_ints(node, "strides").unwrap_or(vec![1, 1]))?;
        if kernel.contains(&0) || stride.len() != 2 || stride.contains(&0) {
            return Err(bad(
                node,
                format!("kernel {kernel:?} and strides {stride:?} must be two positive values"),
            ));
        }
        let ceil_mode = attr_i(node, "ceil_mode", 0) != 0;
        let pads = self.pads(node, s, &kernel, &stride, &[1, 1])?;
        let count_include_pad = attr_i(node, "count_include_pad", 0) != 0;
        let pool = Pool {
            kernel: [kernel[0], kernel[1]],
            stride: [stride[0], stride[1]],
            pads,
            ceil_mode,
            count_include_pad,
        };
        let out = |size: usize, k: usize, st: usize, a: usize, b: usize| -> Result<usize> {
            let span = (size + a + b).checked_sub(k).ok_or_else(|| {
                bad(node, format!("window {k} is larger than the padded input {}", size + a + b))
            })?;
            let mut o = if ceil_mode { span.div_ceil(st) + 1 } else { span / st + 1 };
            if ceil_mode && (o - 1) * st >= size + a {
                o -= 1;
            }
            Ok(o)
        };
        let h = out(s.h, kernel[0], stride[0], pads[0], pads[2])?;
        let w = out(s.w, kernel[1], stride[1], pads[1], pads[3])?;
        Ok((pool, Shape::map(s.c, h, w)))
    }

    /// `[top, left, bottom, right]` from `pads` or `auto_pad`.
    pub(super) fn pads(
        &self,
        node: &NodeProto,
        s: Shape,
        kernel: &[usize],
        stride: &[usize],
        dilation: &[usize],
    ) -> Result<[usize; 4]> {
        let auto_pad = attr_s(node, "auto_pad");
        if let Some(extra) = node.input.first().and_then(|i| self.zero_pads.get(i)) {
            if !matches!(auto_pad.as_str(), "" | "NOTSET" | "VALID") {
                return Err(bad(node, format!("auto_pad {auto_pad} after a Pad node is not supported")));
            }
            let own = match auto_pad.as_str() {
                "VALID" => vec![0; 4],
                _ => to_usize(node, "pads", &attr_ints(node, "pads").unwrap_or(vec![0; 4]))?,
            };
            if own.len() != 4 {
                return Err(bad(node, format!("pads {own:?} must have 4 entries for 2-D")));
            }
            return Ok([own[0] + extra[0], own[1] + extra[1], own[2] + extra[2], own[3] + extra[3]]);
        }
        match auto_pad.as_str() {
            "" | "NOTSET" => {
                let p = to_usize(node, "pads", &attr_ints(node, "pads").unwrap_or(vec![0; 4]))?;
                if p.len() != 4 {
                    return Err(bad(node, format!("pads {p:?} must have 4 entries for 2-D")));
                }
                // ONNX order: [y_begin, x_begin, y_end, x_end] = [top, left, bottom, right].
                Ok([p[0], p[1], p[2], p[3]])
            }
            "VALID" => Ok([0; 4]),
            "SAME_UPPER" | "SAME_LOWER" => {
                let (t, b) = same_pads(&auto_pad, s.h, kernel[0], stride[0], dilation[0]);
                let (l, r) = same_pads(&auto_pad, s.w, kernel[1], stride[1], dilation[1]);
                Ok([t, l, b, r])
            }
            other => Err(bad(node, format!("unknown auto_pad '{other}'"))),
        }
    }

    pub(super) fn conv(&mut self, node: &NodeProto) -> Result<()> {
        let (x, s) = self.value(node, 0)?;
        let w = self.required(node, 1, "weight")?.clone();
        let bias = self.constant(node, 2, "bias")?.map(|b| b.floats.clone());
        if w.dims.len() != 4 {
            return Err(bad(node, format!("only 2-D convolutions are supported, weights are {:?}", w.dims)));
        }
        let group = usize::try_from(attr_i(node, "group", 1))
            .ok()
            .filter(|&g| g > 0)
            .ok_or_else(|| bad(node, "group must be positive"))?;
        let (m, kh, kw) = (w.dims[0], w.dims[2], w.dims[3]);
        if m == 0 || kh == 0 || kw == 0 {
            return Err(bad(node, format!("weights {:?} have an empty dimension", w.dims)));
        }
        if w.dims[1] * group != s.c {
            return Err(bad(
                node,
                format!("weights {:?} in {group} group(s) do not fit a {}-channel input", w.dims, s.c),
            ));
        }
        let stride = to_usize(node, "strides", &attr_ints(node, "strides").unwrap_or(vec![1, 1]))?;
        let dilation = to_usize(node, "dilations", &attr_ints(node, "dilations").unwrap_or(vec![1, 1]))?;
        if stride.len() != 2 || dilation.len() != 2 || stride.contains(&0) || dilation.contains(&0) {
            return Err(bad(
                node,
                format!("strides {stride:?} and dilations {dilation:?} must be two positive values"),
            ));
        }
        let pads = self.pads(node, s, &[kh, kw], &stride, &dilation)?;
        let out = |size: usize, k: usize, st: usize, d: usize, a: usize, b: usize| -> Result<usize> {
            let span = (size + a + b)
                .checked_sub((k - 1) * d + 1)
                .ok_or_else(|| bad(node, "kernel larger than the padded input"))?;
            Ok(span / st + 1)
        };
        let shape = Shape::map(
            m,
            out(s.h, kh, stride[0], dilation[0], pads[0], pads[2])?,
            out(s.w, kw, stride[1], dilation[1], pads[1], pads[3])?,
        );
        let op = Op::Conv(Conv {
            out_channels: m,
            kernel: [kh, kw],
            stride: [stride[0], stride[1]],
            pads,
            dilation: [dilation[0], dilation[1]],
            groups: group,
            weights: w.floats.into(),
            bias,
            perforation: None,
        });
        self.push(node, op, &[&x], shape);
        Ok(())
    }

    /// `y = alpha · A · op(B) + beta · C` as a Linear layer (A the activations).
    pub(super) fn gemm(&mut self, node: &NodeProto, nodes: &[NodeProto], index: usize) -> Result<()> {
        let (x, s) = self.value(node, 0)?;
        let features = s.c * s.h * s.w;
        let b = self.required(node, 1, "weight")?.clone();
        if b.dims.len() != 2 {
            return Err(bad(node, format!("weights must be a matrix, got dims {:?}", b.dims)));
        }
        let (alpha, beta, trans_b) = if node.op_type == "Gemm" {
            if attr_i(node, "transA", 0) != 0 {
                return Err(bad(node, "transA = 1 is not supported (the activations must be the rows of A)"));
            }
            (attr_f(node, "alpha", 1.0), attr_f(node, "beta", 1.0), attr_i(node, "transB", 0) != 0)
        } else {
            (1.0, 1.0, false)
        };
        let (rows, cols) = (b.dims[0], b.dims[1]);
        let (fin, fout) = if trans_b { (cols, rows) } else { (rows, cols) };
        if fin != features {
            return Err(bad(
                node,
                format!("weights {:?} expect {fin} input features, the input has {features}", b.dims),
            ));
        }
        // Linear weights are [out, in]: B as stored when transB, its transpose otherwise.
        let mut weights = vec![0.0f32; fin * fout];
        for o in 0..fout {
            for i in 0..fin {
                let v = if trans_b { b.floats[o * fin + i] } else { b.floats[i * fout + o] };
                weights[o * fin + i] = alpha * v;
            }
        }
        let mut bias_input =
            if node.op_type == "Gemm" { self.constant(node, 2, "bias")?.cloned() } else { None };
        // MatMul followed by an Add of a constant vector: the Add is the bias, and its
        // output is this layer's output.
        let mut absorbed_add = None;
        if node.op_type == "MatMul" {
            if let Some((only, c, output)) = self.bias_add(node, nodes, index) {
                bias_input = Some(c);
                self.consumed.insert(only);
                absorbed_add = Some(output);
            }
        }
        let bias = match bias_input {
            None => None,
            Some(c) if c.floats.len() == fout => Some(c.floats.iter().map(|v| beta * v).collect()),
            Some(c) if c.floats.len() == 1 => Some(vec![beta * c.floats[0]; fout]),
            Some(c) => {
                return Err(bad(
                    node,
                    format!("bias of {} values does not broadcast to {fout} outputs", c.floats.len()),
                ))
            }
        };
        let shape = Shape::flat(fout);
        let name = self.layer_name(node);
        self.net.push(
            name.clone(),
            Op::Linear(Linear { out_features: fout, weights: weights.into(), bias }),
            &[&x],
        );
        self.values.insert(node.output[0].clone(), (name.clone(), shape));
        if let Some(add_output) = absorbed_add {
            self.values.insert(add_output, (name, shape));
        }
        Ok(())
    }
}
