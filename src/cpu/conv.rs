//! The CPU executor of a perforated convolution layer.

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::error::{Error, Result};
use crate::layer::{ConvLayer, ConvSchedule, ConvSettings};

use super::{gather_interp, im2col_masked, matmul_tiled};

/// Default bound on one im2col chunk on the CPU: large enough for full-width GEMMs,
/// small enough not to balloon memory on VGG's first layers at large batch.
pub const CPU_DEFAULT_CHUNK_BYTES: u64 = 64 << 20;

/// A [`ConvLayer`] compiled for the CPU: the schedule is resolved and the weights packed
/// once; [`CpuConv::run`] can then be called any number of times.
#[derive(Clone, Debug)]
pub struct CpuConv {
    layer: ConvLayer,
    settings: ConvSettings,
    schedule: ConvSchedule,
    packed_weights: Vec<f32>,
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
            return Err(Error::shape(
                "conv input",
                format!("{expected:?}"),
                format!("{:?}", input.shape()),
            ));
        }
        let input = input.as_standard_layout();
        let x = input.as_slice().expect("standard layout is contiguous");
        let mask = self.layer.mask().positions();
        let in_map = self.layer.input_map().map_or(&[][..], |m| m.indices());

        let compact_len: usize = self.layer.compact_output_shape().iter().product();
        let mut compact = vec![0.0f32; compact_len];
        let mut col = vec![0.0f32; self.schedule.col_len];
        for step in &self.schedule.steps {
            im2col_masked(&step.im2col, x, mask, in_map, &mut col);
            matmul_tiled(
                &step.matmul,
                &self.packed_weights,
                &col,
                self.layer.bias(),
                &mut compact,
            );
        }
        let data = match &self.schedule.gather {
            Some(g) => {
                let mut dense = vec![0.0f32; (g.plane * g.planes) as usize];
                gather_interp(
                    g,
                    &compact,
                    self.layer.interpolation_map().indices(),
                    &mut dense,
                );
                dense
            }
            None => compact,
        };
        let shape = ConvSchedule::output_shape(&self.layer, &self.settings);
        Ok(ArrayD::from_shape_vec(IxDyn(&shape), data).expect("output length matches its shape"))
    }
}
