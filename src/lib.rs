//! # perforate
//!
//! Perforated convolutions (Figurnov et al., "PerforatedCNNs", NIPS 2016) on the GPU
//! through wgpu and on the CPU through ndarray and rayon.
//!
//! A convolution is evaluated only at the output positions of a [`Mask`]; every skipped
//! position takes the value of its nearest computed neighbour through an
//! [`InterpMap`]. A layer is described once as a [`ConvLayer`] and compiled for either
//! executor, [`cpu::CpuConv`] or [`gpu::GpuConv`], which follow the same
//! [`ConvSchedule`] of kernel launches.
//!
//! ```
//! use perforate::{ConvGeometry, ConvLayer, ConvSettings, cpu::CpuConv, rng::SeededRng};
//! use ndarray::ArrayD;
//!
//! let geometry = ConvGeometry::new(8, 16, 16, 8, 3, 3).with_padding(1);
//! let mut rng = SeededRng::new(7);
//! let weights = rng.vec_f32(geometry.weight_len(), -0.1, 0.1);
//! let layer = ConvLayer::new(geometry, weights, None)?.with_uniform_perforation(0.5, 1)?;
//! let conv = CpuConv::new(&layer, ConvSettings::default())?;
//! let input = ArrayD::from_elem(layer.input_shape(), 1.0f32);
//! let output = conv.run(input.view())?;
//! assert_eq!(output.shape(), &[1, 8, 16, 16]);
//! assert_eq!(layer.theoretical_speedup(), 2.0);
//! # Ok::<(), perforate::Error>(())
//! ```

pub mod cpu;
pub mod data;
mod error;
mod geometry;
pub mod gpu;
mod interp;
mod layer;
mod mask;
pub mod network;
pub mod onnx;
pub mod params;
pub mod plan;
pub mod rng;
mod strategy;
pub mod train;

pub use error::{Error, Result};
pub use geometry::ConvGeometry;
pub use interp::{InterpMap, MapKind, ZERO_TAP};
pub use layer::{ConvKernels, ConvLayer, ConvSchedule, ConvSettings, ConvStep, GemmTile, OutputForm};
pub use mask::{kept_count, Mask};
pub use strategy::{grid_offsets, grid_sequence, window_counts, Interpolation, MaskStrategy, PoolWindows};
