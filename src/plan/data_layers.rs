//! Lowering of the layers that move or select data (Where, Resample, SelectChannels,
//! Reshape, Strided, Constant, MatMul, Concat, Softmax): each reads dense inputs (or
//! selects channels of a compact one) and writes one tensor, and none fuses with its
//! neighbours. Split from `Builder::lower`, which hands these layers here.

use super::compile::Builder;
use super::graph::{in_layer, layer_error};
use super::tensor_params::{matmul_params, strided_params};
use super::{Form, StepOp, TensorId, TensorInfo};
use crate::error::{to_u32, Result};
use crate::network::{Layer, Op, Strided};
use crate::params::{SelectChannelsParams, SelectElementsParams, SoftmaxParams};

impl Builder<'_> {
    /// Lowers `layer`, one of the data layers above, reading `inputs` (`x` the first,
    /// described by `t`); the tensor it writes.
    pub(super) fn data_layer(
        &mut self,
        layer: &Layer,
        inputs: &[TensorId],
        x: TensorId,
        t: &TensorInfo,
    ) -> Result<TensorId> {
        Ok(match &layer.op {
            Op::Where => {
                let parts: Vec<TensorId> =
                    inputs.iter().map(|&i| self.dense(i, &layer.name)).collect::<Result<_>>()?;
                if parts.len() != 3 {
                    return Err(layer_error(
                        layer,
                        format!("takes 3 inputs (cond, a, b), got {}", parts.len()),
                    ));
                }
                let shapes: Vec<_> = parts.iter().map(|&p| self.tensors[p].shape()).collect();
                if shapes.iter().any(|s| *s != shapes[0]) {
                    return Err(layer_error(layer, format!("inputs have different shapes {shapes:?}")));
                }
                let d = &self.tensors[parts[1]];
                let params = SelectElementsParams { len: to_u32(d.len(), "length")?, ..Default::default() };
                let out = self.tensor(&layer.name, d.channels, d.height, d.width, Form::Dense);
                self.step(&layer.name, StepOp::SelectElements(params), parts, out);
                out
            }
            Op::Resample(r) => {
                let d = self.dense(x, &layer.name)?;
                let params = in_layer(layer, r.params(t.batch * t.channels, t.height, t.width))?;
                let (index, weight) = in_layer(layer, r.tables())?;
                let out = self.tensor(&layer.name, t.channels, r.out_height(), r.out_width(), Form::Dense);
                self.step(&layer.name, StepOp::Resample { params, index, weight }, vec![d], out);
                out
            }
            Op::SelectChannels { channels } => {
                if channels.is_empty() {
                    return Err(layer_error(layer, "selects no channels"));
                }
                if let Some(bad) = channels.iter().find(|&&c| c >= t.channels) {
                    return Err(layer_error(
                        layer,
                        format!("selects channel {bad} of a {}-channel input", t.channels),
                    ));
                }
                let params = SelectChannelsParams {
                    images: to_u32(t.batch, "batch")?,
                    in_channels: to_u32(t.channels, "channels")?,
                    out_channels: to_u32(channels.len(), "channels")?,
                    plane: to_u32(t.plane(), "plane")?,
                };
                let table = channels.iter().map(|&c| to_u32(c, "channel")).collect::<Result<_>>()?;
                let out = self.tensor(&layer.name, channels.len(), t.height, t.width, t.form.clone());
                self.step(&layer.name, StepOp::SelectChannels { params, channels: table }, vec![x], out);
                out
            }
            Op::Reshape { shape: [c, h, w] } => {
                if c * h * w != t.channels * t.height * t.width || c * h * w == 0 {
                    return Err(layer_error(
                        layer,
                        format!("view {c}x{h}x{w} of a {}x{}x{} input", t.channels, t.height, t.width),
                    ));
                }
                let d = self.dense(x, &layer.name)?;
                self.alias(d, &layer.name, *c, *h, *w)
            }
            Op::Strided(v) => {
                let d = self.dense(x, &layer.name)?;
                let image = t.channels * t.height * t.width;
                in_layer(layer, v.validate(image))?;
                let params = in_layer(layer, strided_params(v, t.batch, image))?;
                let [c, h, w] = v.shape;
                let out = self.tensor(&layer.name, c, h, w, Form::Dense);
                self.step(&layer.name, StepOp::StridedCopy(params), vec![d], out);
                out
            }
            Op::Constant { shape, values } => {
                let [c, h, w] = *shape;
                if values.len() != c * h * w || values.is_empty() {
                    return Err(layer_error(
                        layer,
                        format!("{} values for a {c}x{h}x{w} constant", values.len()),
                    ));
                }
                let view = Strided { dims: vec![values.len()], strides: vec![1], offset: 0, shape: *shape };
                let mut params = in_layer(layer, strided_params(&view, t.batch, values.len()))?;
                params.in_image = 0;
                let out = self.tensor(&layer.name, c, h, w, Form::Dense);
                // The input only sets the batch: the step reads none of it.
                self.step(&layer.name, StepOp::Constant { params, values: values.clone() }, vec![x], out);
                out
            }
            Op::MatMul(mm) => {
                let a = self.dense(inputs[0], &layer.name)?;
                let b = self.dense(inputs[1], &layer.name)?;
                let image = |id: TensorId| self.tensors[id].len() / self.tensors[id].batch.max(1);
                let (a_len, b_len) = (image(a), image(b));
                in_layer(layer, mm.validate(a_len, b_len))?;
                let params = in_layer(layer, matmul_params(mm, t.batch, a_len, b_len))?;
                let [c, h, w] = mm.shape;
                let out = self.tensor(&layer.name, c, h, w, Form::Dense);
                self.step(&layer.name, StepOp::MatmulStrided(params), vec![a, b], out);
                out
            }
            Op::Concat => {
                let parts: Vec<TensorId> =
                    inputs.iter().map(|&i| self.dense(i, &layer.name)).collect::<Result<_>>()?;
                if let Some(&bad) = parts
                    .iter()
                    .find(|&&p| (self.tensors[p].height, self.tensors[p].width) != (t.height, t.width))
                {
                    let b = &self.tensors[bad];
                    return Err(layer_error(
                        layer,
                        format!(
                            "inputs have different maps: {}x{} and {}x{}",
                            t.height, t.width, b.height, b.width
                        ),
                    ));
                }
                let channels = parts.iter().map(|&p| self.tensors[p].channels).sum();
                let out = self.tensor(&layer.name, channels, t.height, t.width, Form::Dense);
                self.step(&layer.name, StepOp::Concat, parts, out);
                out
            }
            Op::Softmax => {
                let d = self.dense(x, &layer.name)?;
                let params = SoftmaxParams {
                    rows: to_u32(t.batch, "batch")?,
                    cols: to_u32(t.channels, "features")?,
                    plane: to_u32(t.height * t.width, "plane")?,
                    _pad1: 0,
                };
                let out = self.tensor(&layer.name, t.channels, t.height, t.width, Form::Dense);
                self.step(&layer.name, StepOp::Softmax(params), vec![d], out);
                out
            }
            _ => return Err(layer_error(layer, "is not a data layer")),
        })
    }
}
