//! Lowering of the element-wise layers with several operands or per-channel constants:
//! residual Add, Binary with broadcasting, and Affine, each staying compact where the
//! function commutes with the operands' map.

use std::sync::Arc;

use super::compile::{form_kind, Builder};
use super::graph::layer_error;
use super::{Form, StepOp, TensorId, TensorInfo};
use crate::error::{to_u32, Result};
use crate::interp::MapKind;
use crate::network::{broadcast_mode, Affine, Binary, Layer};
use crate::params::{AddParams, BinaryParams, ChannelAffineParams};

impl<'n> Builder<'n> {
    pub(super) fn add(&mut self, layer: &Layer, inputs: &[TensorId]) -> Result<(TensorId, Vec<&'n Layer>)> {
        let first = self.tensors[inputs[0]].clone();
        for &i in &inputs[1..] {
            let t = &self.tensors[i];
            if (t.channels, t.height, t.width) != (first.channels, first.height, first.width) {
                return Err(layer_error(
                    layer,
                    format!(
                        "inputs have different shapes: {}x{}x{} ('{}') and {}x{}x{} ('{}')",
                        first.channels,
                        first.height,
                        first.width,
                        first.producer,
                        t.channels,
                        t.height,
                        t.width,
                        t.producer
                    ),
                ));
            }
        }
        // Compact only when every operand is compact through an equal map (the same table
        // reads the same compact index at every position, so the sum commutes with it; two
        // perforated convs of one geometry and mask, as in a residual block, give equal maps).
        let shared = first.map().filter(|m| {
            inputs.iter().all(|&i| {
                self.tensors[i].map().is_some_and(|n| Arc::ptr_eq(m, n) || m.as_ref() == n.as_ref())
            })
        });
        if let Some(m) = shared {
            let form = Form::Compact(m.clone());
            let (absorbed, _, relu) = self.absorb(&layer.name, false, form_kind(&form));
            let acc = self.add_chain(layer, &first, inputs, form, relu)?;
            return Ok((acc, absorbed));
        }
        // A dense sum. One compact operand (not gathered already for another consumer) is
        // read through its map by the last step, `gather_interp` with the others' sum as its
        // residual addend: no gathered temporary and no separate add pass.
        let mapped =
            inputs.iter().position(|&i| self.tensors[i].map().is_some() && !self.gathered.contains_key(&i));
        let rest = inputs
            .iter()
            .enumerate()
            .filter(|&(k, _)| Some(k) != mapped)
            .map(|(_, &i)| self.dense(i, &layer.name))
            .collect::<Result<Vec<_>>>()?;
        let (absorbed, _, relu) = self.absorb(&layer.name, false, None);
        let Some(k) = mapped else {
            return Ok((self.add_chain(layer, &first, &rest, Form::Dense, relu)?, absorbed));
        };
        let addend = self.add_chain(layer, &first, &rest, Form::Dense, false)?;
        Ok((self.gather(inputs[k], &layer.name, relu, Some(addend))?, absorbed))
    }

    /// The sum of `operands` (all stored in `form`, at least one) by a chain of `add` steps,
    /// the ReLU on the last; a single operand is returned as it is.
    fn add_chain(
        &mut self,
        layer: &Layer,
        first: &TensorInfo,
        operands: &[TensorId],
        form: Form,
        relu: bool,
    ) -> Result<TensorId> {
        // Length of the operands as stored (compact or gathered), not of the first input.
        let len = to_u32(self.tensors[operands[0]].len(), "length")?;
        let mut acc = operands[0];
        for (k, &next) in operands[1..].iter().enumerate() {
            let last = k + 2 == operands.len();
            let out = self.tensor(&layer.name, first.channels, first.height, first.width, form.clone());
            let params = AddParams { len, relu: u32::from(last && relu), ..Default::default() };
            self.step(&layer.name, StepOp::Add(params), vec![acc, next], out);
            acc = out;
        }
        Ok(acc)
    }
}

impl<'n> Builder<'n> {
    pub(super) fn affine(
        &mut self,
        layer: &Layer,
        a: &Affine,
        x: TensorId,
    ) -> Result<(TensorId, Vec<&'n Layer>)> {
        let t = self.tensors[x].clone();
        let (scale, shift) = a.per_channel(t.channels).ok_or_else(|| {
            layer_error(
                layer,
                format!(
                    "{} scale and {} shift values for {} channels (one or one per channel)",
                    a.scale.len(),
                    a.shift.len(),
                    t.channels
                ),
            )
        })?;
        let (absorbed, _, relu) = self.absorb(&layer.name, false, t.map().map(|m| m.kind()));
        let params = ChannelAffineParams {
            len: to_u32(t.len(), "length")?,
            channels: to_u32(t.channels, "channels")?,
            plane: to_u32(t.plane(), "plane")?,
            relu: u32::from(relu),
        };
        let out = self.tensor(&layer.name, t.channels, t.height, t.width, t.form.clone());
        self.step(&layer.name, StepOp::Affine { params, scale, shift }, vec![x], out);
        Ok((out, absorbed))
    }

    /// `a op b` for equal shapes, or with one operand one value per image and channel
    /// (`[B, C, 1, 1]`, broadcast over the other's positions) or per image and position
    /// (`[B, 1, H, W]`, broadcast over the other's channels).
    pub(super) fn binary(
        &mut self,
        layer: &Layer,
        f: Binary,
        inputs: &[TensorId],
    ) -> Result<(TensorId, Vec<&'n Layer>)> {
        let (ta, tb) = (self.tensors[inputs[0]].clone(), self.tensors[inputs[1]].clone());
        let dims = |t: &TensorInfo| [t.channels, t.height, t.width];
        let Some(broadcast) = broadcast_mode(dims(&ta), dims(&tb)) else {
            return Err(layer_error(
                layer,
                format!(
                    "operands of shapes {}x{}x{} ('{}') and {}x{}x{} ('{}') do not broadcast (equal shapes, \
                     one value per channel or one value per position are supported)",
                    ta.channels,
                    ta.height,
                    ta.width,
                    ta.producer,
                    tb.channels,
                    tb.height,
                    tb.width,
                    tb.producer
                ),
            ));
        };
        let (a, b) = match broadcast {
            1 => {
                let a = match ta.map() {
                    Some(m) if !f.commutes_with_per_channel(m.kind(), false) => {
                        self.dense(inputs[0], &layer.name)?
                    }
                    _ => inputs[0],
                };
                (a, self.dense(inputs[1], &layer.name)?)
            }
            2 => {
                let b = match tb.map() {
                    Some(m) if !f.commutes_with_per_channel(m.kind(), true) => {
                        self.dense(inputs[1], &layer.name)?
                    }
                    _ => inputs[1],
                };
                (self.dense(inputs[0], &layer.name)?, b)
            }
            _ => {
                // Both operands vary over the positions: compact only through one shared map
                // the function commutes with, position by position.
                let (ma, mb) = (ta.map(), tb.map());
                let same = ma.zip(mb).is_some_and(|(m, n)| Arc::ptr_eq(m, n));
                let keeps = ma.is_some_and(|m| match m.kind() {
                    MapKind::Nearest => true,
                    MapKind::Barycentric => matches!(f, Binary::Add | Binary::Sub),
                    MapKind::Zeros => f != Binary::Div,
                });
                if same && keeps {
                    (inputs[0], inputs[1])
                } else {
                    (self.dense(inputs[0], &layer.name)?, self.dense(inputs[1], &layer.name)?)
                }
            }
        };
        let full = if matches!(broadcast, 2 | 4) { b } else { a };
        let info = self.tensors[full].clone();
        let params = BinaryParams {
            len: to_u32(info.len(), "length")?,
            op: f.code(),
            plane: to_u32(if broadcast == 0 { info.len() } else { info.plane() }, "plane")?,
            broadcast,
            channels: to_u32(info.channels, "channels")?,
            ..Default::default()
        };
        let out = self.tensor(&layer.name, info.channels, info.height, info.width, info.form.clone());
        self.step(&layer.name, StepOp::Binary(params), vec![a, b], out);
        Ok((out, vec![]))
    }
}
