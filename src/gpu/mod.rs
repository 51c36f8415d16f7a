//! The GPU path on wgpu: a [`GpuContext`] (adapter, device, pipeline cache), one host
//! module per WGSL kernel in [`kernels`], and [`GpuConv`], which runs a
//! [`crate::ConvSchedule`] in one command buffer.

mod buffers;
mod context;
mod conv;
pub mod kernels;
mod network;
mod shaders;

pub use context::GpuContext;
pub use conv::GpuConv;
pub use network::{GpuExecutor, GpuMemory};
pub use shaders::{Kernel, SNIPPETS};
