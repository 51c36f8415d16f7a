//! The CPU executor of a perforated convolution layer.

use std::sync::Mutex;

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::error::{Error, Result};
use crate::layer::{ConvLayer, ConvSchedule, ConvSettings};

use super::{gather_interp, im2col_masked, matmul_tiled};

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
        let mask = self.layer.mask().positions();
        let in_map = self.layer.input_map().map_or(&[][..], |m| m.indices());

        let compact_len: usize = self.layer.compact_output_shape().iter().product();
        let mut fallback = Scratch::default();
        let mut guard = self.scratch.try_lock().ok();
        let scratch = guard.as_deref_mut().unwrap_or(&mut fallback);
        // Stale contents are fine: im2col_masked writes every element the GEMM reads, and
        // matmul_tiled writes every element of the compact output.
        scratch.col.resize(self.schedule.col_len, 0.0);
        let mut fresh = Vec::new();
        let compact = if self.schedule.gather.is_some() {
            scratch.compact.resize(compact_len, 0.0);
            &mut scratch.compact
        } else {
            fresh.resize(compact_len, 0.0);
            &mut fresh
        };
        for step in &self.schedule.steps {
            im2col_masked(&step.im2col, x, mask, in_map, &mut scratch.col);
            matmul_tiled(&step.matmul, &self.packed_weights, &scratch.col, self.layer.bias(), compact);
        }
        let data = match &self.schedule.gather {
            Some(g) => {
                let mut dense = vec![0.0f32; (g.plane * g.planes) as usize];
                gather_interp(g, compact, self.layer.interpolation_map().indices(), &mut dense);
                dense
            }
            None => fresh,
        };
        let shape = ConvSchedule::output_shape(&self.layer, &self.settings);
        Ok(ArrayD::from_shape_vec(IxDyn(&shape), data).expect("output length matches its shape"))
    }
}
