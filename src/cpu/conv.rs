//! The CPU executor of a perforated convolution layer.

use std::sync::Mutex;

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::error::{Error, Result};
use crate::layer::{ConvLayer, ConvSchedule, ConvSettings};

use super::{conv_fused, depthwise_masked, gather_interp, im2col_masked, matmul_narrow, matmul_tiled};
use crate::params::ConvFusedParams;

/// Default bound on one im2col chunk on the CPU: large enough for full-width GEMMs,
/// small enough not to balloon memory on VGG's first layers at large batch.
pub const CPU_DEFAULT_CHUNK_BYTES: u64 = 64 << 20;

/// A [`ConvLayer`] compiled for the CPU: the schedule is resolved and the weights packed
/// once; [`CpuConv::run`] can then be called any number of times.
#[derive(Debug)]
pub struct CpuConv {
    layer: ConvLayer,
    settings: ConvSettings,
    schedule: ConvSchedule,
    packed_weights: Vec<f32>,
    /// Intermediate buffers kept between runs: reallocating (and zeroing) tens of MB per
    /// run costs as much as the im2col itself. Concurrent runs allocate their own.
    scratch: Mutex<Scratch>,
}

#[derive(Debug, Default)]
struct Scratch {
    /// The im2col chunk.
    col: Vec<f32>,
    /// The compact output when a gather turns it into the dense result.
    compact: Vec<f32>,
}

impl CpuConv {
    /// Compiles `layer` under `settings`.
    pub fn new(layer: &ConvLayer, settings: ConvSettings) -> Result<Self> {
        let schedule = ConvSchedule::new(layer, &settings, CPU_DEFAULT_CHUNK_BYTES)?;
        let (packed_weights, _) = layer.packed_weights();
        Ok(CpuConv {
            layer: layer.clone(),
            settings,
            schedule,
            packed_weights,
            scratch: Mutex::new(Scratch::default()),
        })
    }

    /// The resolved launch schedule.
    pub fn schedule(&self) -> &ConvSchedule {
        &self.schedule
    }

    /// Runs the layer on `input` (shape [`ConvLayer::input_shape`]) and returns the output
    /// in the form the settings ask for.
    pub fn run(&self, input: ArrayViewD<'_, f32>) -> Result<ArrayD<f32>> {
        let expected = self.layer.input_shape();
        if input.shape() != expected.as_slice() {
            return Err(Error::shape("conv input", format!("{expected:?}"), format!("{:?}", input.shape())));
        }
        let input = input.as_standard_layout();
        let x = input.as_slice().expect("standard layout is contiguous");
        let compact_len: usize = self.layer.compact_output_shape().iter().product();
        let mut fallback = Scratch::default();
        let mut guard = self.scratch.try_lock().ok();
        let scratch = guard.as_deref_mut().unwrap_or(&mut fallback);
        let mut fresh = Vec::new();
        let compact = if self.schedule.gather.is_some() {
            scratch.compact.resize(compact_len, 0.0);
            &mut scratch.compact
        } else {
            fresh.resize(compact_len, 0.0);
            &mut fresh
        };
        conv_forward(&self.layer, &self.schedule, &self.packed_weights, x, &mut scratch.col, compact);
        let data = match &self.schedule.gather {
            Some(g) => {
                let mut dense = vec![0.0f32; (g.plane * g.planes) as usize];
                gather_interp(g, compact, self.layer.interpolation_map().table(), &[], &mut dense);
                dense
            }
            None => fresh,
        };
        let shape = ConvSchedule::output_shape(&self.layer, &self.settings);
        Ok(ArrayD::from_shape_vec(IxDyn(&shape), data).expect("output length matches its shape"))
    }
}

/// Runs the `im2col_masked → matmul_tiled` (or `matmul_narrow`) steps of `schedule` (or its one
/// `depthwise_masked` launch): `x` is the layer's input,
/// `compact` receives the `[B, T, N]` output, `col` is workspace (grown as needed; stale
/// contents are fine because im2col writes every element the GEMM reads).
pub(crate) fn conv_forward(
    layer: &ConvLayer,
    schedule: &ConvSchedule,
    packed_weights: &[f32],
    x: &[f32],
    col: &mut Vec<f32>,
    compact: &mut [f32],
) {
    let mask = layer.mask().positions();
    let in_map = layer.input_map().map_or(&[][..], |m| m.table());
    if let Some(p) = &schedule.depthwise {
        depthwise_masked(p, x, mask, in_map, packed_weights, layer.bias(), compact);
        return;
    }
    if col.len() < schedule.col_len {
        col.resize(schedule.col_len, 0.0);
    }
    for step in &schedule.steps {
        if schedule.fused {
            let p = ConvFusedParams::of(&step.im2col, &step.matmul);
            conv_fused(&p, packed_weights, x, mask, in_map, layer.bias(), compact);
            continue;
        }
        im2col_masked(&step.im2col, x, mask, in_map, col);
        if step.narrow {
            matmul_narrow(&step.matmul, packed_weights, col, layer.bias(), compact);
        } else {
            matmul_tiled(&step.matmul, packed_weights, col, layer.bias(), compact);
        }
    }
}
