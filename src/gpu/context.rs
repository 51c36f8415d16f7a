//! Adapter and device selection, the pipeline cache, and turning wgpu's failure modes
//! (no adapter, validation errors, out of memory, device loss) into [`Error`] values.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

use super::kernels::Specialization;
use super::shaders::Kernel;

/// A wgpu device and queue with this crate's pipelines, created once per adapter and
/// shared (cheaply cloned) by every GPU layer.
///
/// Adapter choice honours wgpu's variables: `WGPU_BACKEND` (for example `vulkan`, `gl`),
/// `WGPU_ADAPTER_NAME` (substring of the adapter name) and `WGPU_POWER_PREF`
/// (`high` by default).
#[derive(Clone)]
pub struct GpuContext {
    inner: Arc<Inner>,
    /// A storage-binding limit below the device's ([`GpuContext::with_binding_limit`]).
    binding_limit: Option<u64>,
    /// The most GPU memory one executor may allocate ([`GpuContext::with_memory_budget`]).
    memory_budget: Option<u64>,
}

struct Inner {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    pipelines: Mutex<HashMap<(Kernel, Specialization), wgpu::ComputePipeline>>,
    uncaptured: Arc<Mutex<Vec<String>>>,
    lost: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for GpuContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuContext").field("adapter", &self.describe()).finish()
    }
}

impl GpuContext {
    /// Picks an adapter and creates a device, blocking until done.
    pub fn new() -> Result<Self> {
        pollster::block_on(Self::new_async())
    }

    /// Picks an adapter and creates a device.
    pub async fn new_async() -> Result<Self> {
        let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        let backends = desc.backends;
        let instance = wgpu::Instance::new(desc);
        let adapter = match wgpu::util::initialize_adapter_from_env(&instance, None).await {
            Ok(adapter) => adapter,
            Err(_) => {
                let options = wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::from_env()
                        .unwrap_or(wgpu::PowerPreference::HighPerformance),
                    ..Default::default()
                };
                instance.request_adapter(&options).await.map_err(|e| {
                    Error::NoAdapter(format!(
                        "{e} (backends tried: {backends:?}; install a Vulkan driver such as \
                         mesa-vulkan-drivers, or set WGPU_BACKEND)"
                    ))
                })?
            }
        };
        let info = adapter.get_info();
        // Ask for exactly what the adapter offers: always granted, and it raises the
        // storage-binding limit on hardware that allows more than WebGPU's default.
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("perforate"),
                required_features: wgpu::Features::empty(),
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| Error::DeviceRequest(format!("{} ({:?}): {e}", info.name, info.backend)))?;

        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&uncaptured);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut errors) = sink.lock() {
                errors.push(e.to_string());
            }
        }));
        let lost = Arc::new(Mutex::new(None));
        let flag = Arc::clone(&lost);
        device.set_device_lost_callback(move |reason, message| {
            if let Ok(mut l) = flag.lock() {
                *l = Some(match reason {
                    wgpu::DeviceLostReason::Destroyed => {
                        format!("the device was destroyed ({message})")
                    }
                    _ => format!("{message} ({reason:?}); create a new GpuContext or fall back to the CPU"),
                });
            }
        });
        Ok(GpuContext {
            binding_limit: None,
            memory_budget: None,
            inner: Arc::new(Inner {
                device,
                queue,
                info,
                limits,
                pipelines: Mutex::new(HashMap::new()),
                uncaptured,
                lost,
            }),
        })
    }

    /// The wgpu device.
    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    /// The wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// What the adapter says about itself.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.inner.info
    }

    /// The limits the device was created with.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.inner.limits
    }

    /// One line naming the adapter, backend, device type and driver.
    pub fn describe(&self) -> String {
        let i = &self.inner.info;
        format!("{} ({:?}, {:?}, driver: {} {})", i.name, i.backend, i.device_type, i.driver, i.driver_info)
    }

    /// Largest buffer that can be bound as one storage binding, in bytes: the device's
    /// limit, or the lower one set by [`GpuContext::with_binding_limit`].
    pub fn max_binding_bytes(&self) -> u64 {
        let l = &self.inner.limits;
        let device = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
        self.binding_limit.map_or(device, |b| b.min(device))
    }

    /// The same device, with every buffer this library binds held to at most `bytes`
    /// (weight matrices split into row blocks, im2col columns into chunks; activations past
    /// it are an error). For running as if on a smaller device (WebGPU's default is
    /// 128 MiB per storage binding, as are many mobile drivers') and for testing the splits
    /// on small shapes. The limit is rounded down to a multiple of 16 bytes, at least 16.
    pub fn with_binding_limit(&self, bytes: u64) -> GpuContext {
        GpuContext { binding_limit: Some((bytes / 16 * 16).max(16)), ..self.clone() }
    }

    /// The same device, with each executor built on it held to at most `bytes` of GPU
    /// memory (activations, workspace, weights and tables): a plan that needs more is
    /// refused before anything is allocated, with the numbers. wgpu does not report how
    /// much memory a device has, so without a budget the first allocation the driver
    /// cannot serve is what fails ([`Error::OutOfMemory`], with the same numbers). For apps
    /// that share the GPU with other work, and for running as if on a smaller device.
    pub fn with_memory_budget(&self, bytes: u64) -> GpuContext {
        GpuContext { memory_budget: Some(bytes), ..self.clone() }
    }

    /// The budget set by [`GpuContext::with_memory_budget`], if any.
    pub fn memory_budget(&self) -> Option<u64> {
        self.memory_budget
    }

    /// The compute pipeline of `kernel` with the override constants of `spec`, compiled
    /// on first use and cached.
    pub(crate) fn pipeline(&self, kernel: Kernel, spec: Specialization) -> Result<wgpu::ComputePipeline> {
        let mut cache =
            self.inner.pipelines.lock().map_err(|_| Error::Gpu("pipeline cache poisoned".into()))?;
        if let Some(p) = cache.get(&(kernel, spec)) {
            return Ok(p.clone());
        }
        let device = &self.inner.device;
        let label = match spec.name {
            "" => kernel.label().to_string(),
            name => format!("{}/{name}", kernel.label()),
        };
        let pipeline = self.scoped(|| {
            let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.label()),
                source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
            });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: spec.constants,
                    ..Default::default()
                },
                cache: None,
            })
        })?;
        cache.insert((kernel, spec), pipeline.clone());
        Ok(pipeline)
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns a captured
    /// error (or an earlier uncaptured one, or a lost device) into an [`Error`].
    pub(crate) fn scoped<T>(&self, f: impl FnOnce() -> T) -> Result<T> {
        self.check()?;
        let device = &self.inner.device;
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let value = f();
        let validation = pollster::block_on(validation.pop());
        let oom = pollster::block_on(oom.pop());
        self.check()?;
        if let Some(e) = oom {
            return Err(Error::OutOfMemory(e.to_string()));
        }
        if let Some(e) = validation {
            return Err(Error::Gpu(e.to_string()));
        }
        Ok(value)
    }

    /// Reports a lost device or an error that escaped the error scopes.
    pub(crate) fn check(&self) -> Result<()> {
        if let Some(reason) = self.inner.lost.lock().ok().and_then(|l| l.clone()) {
            return Err(Error::DeviceLost(reason));
        }
        if let Ok(mut errors) = self.inner.uncaptured.lock() {
            if !errors.is_empty() {
                let all = errors.drain(..).collect::<Vec<_>>().join("; ");
                return Err(Error::Gpu(all));
            }
        }
        Ok(())
    }

    /// Submits `commands` and blocks until the GPU has finished them.
    pub(crate) fn submit_and_wait(&self, commands: wgpu::CommandBuffer) -> Result<()> {
        let index = self.scoped(|| self.inner.queue.submit([commands]))?;
        self.wait(index)
    }

    /// Blocks until submission `index` has completed.
    pub(crate) fn wait(&self, index: wgpu::SubmissionIndex) -> Result<()> {
        self.inner
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(index),
                timeout: None,
            })
            .map_err(|e| match (self.check(), e) {
                (Err(lost), _) => lost,
                (Ok(()), wgpu::PollError::Timeout) => Error::Gpu("timed out waiting for the GPU".into()),
                // The submission never reached the GPU: wgpu drops work for a lost or
                // destroyed device without a validation error.
                (Ok(()), e @ wgpu::PollError::WrongSubmissionIndex(..)) => {
                    let reason = format!(
                        "the work was not accepted by the GPU ({e}); create a new GpuContext or fall back to the CPU"
                    );
                    // Remembered, so every later call reports the loss instead of
                    // validation errors about invalid buffers.
                    if let Ok(mut lost) = self.inner.lost.lock() {
                        lost.get_or_insert_with(|| reason.clone());
                    }
                    Error::DeviceLost(reason)
                }
            })?;
        self.check()
    }
}
