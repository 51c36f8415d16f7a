//! Buffer creation with size checks, the uniform arena holding every launch's `Params`,
//! and readback.

use std::num::NonZeroU64;
use std::sync::mpsc::RecvTimeoutError;

use super::context::GpuContext;
use crate::error::{Error, Result};

/// Fails with a clear message when `bytes` exceed the device's storage-binding limit.
pub(crate) fn check_binding_size(ctx: &GpuContext, what: &str, bytes: u64) -> Result<()> {
    let limit = ctx.max_binding_bytes();
    if bytes > limit {
        return Err(Error::TooLarge(format!(
            "{what} needs {bytes} bytes but {} allows at most {limit} per storage binding \
             (activations and im2col columns shrink with a smaller batch; weight matrices are \
             split by rows on their own)",
            ctx.adapter_info().name
        )));
    }
    Ok(())
}

/// A storage buffer initialised with `contents` (at least 16 bytes, zero-padded).
pub(crate) fn storage_init(ctx: &GpuContext, label: &str, contents: &[u8]) -> Result<wgpu::Buffer> {
    check_binding_size(ctx, label, contents.len() as u64)?;
    let mut padded;
    let contents = if contents.len() < 16 {
        padded = contents.to_vec();
        padded.resize(16, 0);
        &padded[..]
    } else {
        contents
    };
    buffer_with(ctx, label, contents, wgpu::BufferUsages::STORAGE)
}

/// Creates a buffer and fills it through the queue. (`create_buffer_init` maps at
/// creation and panics if the device was lost in between; this reports an error.)
fn buffer_with(
    ctx: &GpuContext,
    label: &str,
    contents: &[u8],
    usage: wgpu::BufferUsages,
) -> Result<wgpu::Buffer> {
    ctx.scoped(|| {
        let buffer = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (contents.len() as u64).next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT),
            usage: usage | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        ctx.queue().write_buffer(&buffer, 0, contents);
        buffer
    })
}

/// An uninitialised storage buffer of `bytes` (rounded up to 16) that can also be
/// written by the queue and copied from.
pub(crate) fn storage(ctx: &GpuContext, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
    check_binding_size(ctx, label, bytes)?;
    ctx.scoped(|| {
        ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16).next_multiple_of(16),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        })
    })
}

/// A buffer the CPU can map to read `bytes` back.
pub(crate) fn staging(ctx: &GpuContext, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
    ctx.scoped(|| {
        ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16).next_multiple_of(16),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    })
}

/// Every launch's `Params` block in one uniform buffer, each at an offset aligned to
/// the device's `min_uniform_buffer_offset_alignment`.
pub(crate) struct UniformArena {
    bytes: Vec<u8>,
    align: usize,
}

/// Where one `Params` block sits in the arena.
#[derive(Clone, Copy, Debug)]
pub(crate) struct UniformSlot {
    offset: u64,
    size: NonZeroU64,
}

impl UniformArena {
    pub(crate) fn new(ctx: &GpuContext) -> Self {
        let align = ctx.limits().min_uniform_buffer_offset_alignment.max(16) as usize;
        UniformArena { bytes: Vec::new(), align }
    }

    /// Appends one parameter block.
    pub(crate) fn push<P: bytemuck::Pod>(&mut self, params: &P) -> UniformSlot {
        let offset = self.bytes.len().next_multiple_of(self.align);
        self.bytes.resize(offset, 0);
        self.bytes.extend_from_slice(bytemuck::bytes_of(params));
        let size = NonZeroU64::new(std::mem::size_of::<P>() as u64).expect("Params are never empty");
        UniformSlot { offset: offset as u64, size }
    }

    /// Uploads the arena.
    pub(crate) fn finish(self, ctx: &GpuContext, label: &str) -> Result<wgpu::Buffer> {
        buffer_with(ctx, label, &self.bytes, wgpu::BufferUsages::UNIFORM)
    }
}

impl UniformSlot {
    /// The binding of this slot in the uploaded arena buffer.
    pub(crate) fn binding(self, buffer: &wgpu::Buffer) -> wgpu::BufferBinding<'_> {
        wgpu::BufferBinding { buffer, offset: self.offset, size: Some(self.size) }
    }
}

/// Maps `staging` after a completed copy into it and returns its first `len` floats.
pub(crate) fn read_f32(ctx: &GpuContext, staging: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
    let bytes = (len * 4) as u64;
    let slice = staging.slice(..bytes.max(4));
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    // Another thread polling the same device may be the one that fires our callback,
    // a moment after our own poll returned: keep polling until it arrives.
    let started = std::time::Instant::now();
    loop {
        ctx.device()
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::DeviceLost(format!("while reading back: {e}")))?;
        ctx.check()?;
        match rx.recv_timeout(std::time::Duration::from_millis(20)) {
            Ok(Ok(())) => break,
            Ok(Err(e)) => return Err(Error::Gpu(format!("mapping the result buffer failed: {e}"))),
            Err(RecvTimeoutError::Timeout) if started.elapsed().as_secs() < 60 => continue,
            Err(_) => return Err(Error::Gpu("the result buffer was never mapped".into())),
        }
    }
    let data = {
        let view =
            slice.get_mapped_range().map_err(|e| Error::Gpu(format!("reading the result buffer: {e:?}")))?;
        bytemuck::pod_collect_to_vec::<u8, f32>(&view[..len * 4])
    };
    staging.unmap();
    Ok(data)
}
