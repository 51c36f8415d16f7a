//! The GPU executor of a whole [`Plan`]: every buffer, table, parameter block and bind
//! group is created once; a run uploads the input, submits one command buffer and reads
//! the output back.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::buffers::{check_binding_size, read_f32, staging, storage, storage_init};
use super::context::GpuContext;
use super::conv::{bytes_of_len, encode_run, gpu_settings, upload_input, ConvTables};
use super::kernels::{self, Command, LaunchBuilder};
use crate::error::{Error, Result};
use crate::layer::ConvSchedule;
use crate::plan::{Executor, Plan, StepOp};

/// Runs a [`Plan`] on a GPU. Cheap to clone (shared state); runs are serialised.
/// `Send + Sync`; several executors may share one [`GpuContext`] and run from different
/// threads at once (their submissions interleave on the context's queue).
#[derive(Clone)]
pub struct GpuExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: GpuContext,
    plan: Arc<Plan>,
    slots: Vec<wgpu::Buffer>,
    staging: wgpu::Buffer,
    commands: Vec<Command>,
    running: Mutex<()>,
}

impl std::fmt::Debug for GpuExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuExecutor")
            .field("network", &self.inner.plan.name())
            .field("commands", &self.inner.commands.len())
            .finish()
    }
}

fn table(ctx: &GpuContext, label: &str, data: &[u32]) -> Result<wgpu::Buffer> {
    storage_init(ctx, label, bytemuck::cast_slice(data))
}

/// The GPU memory an executor of a plan allocates, by kind (bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpuMemory {
    /// The activation slots (tensors share slots where their lifetimes do not overlap).
    pub activations: u64,
    /// The im2col workspace (the largest chunk of any conv).
    pub workspace: u64,
    /// Weights, biases, masks, interpolation maps and other tables.
    pub parameters: u64,
    /// The buffer the output is read back through.
    pub readback: u64,
}

impl GpuMemory {
    /// Everything together.
    pub fn total(&self) -> u64 {
        self.activations + self.workspace + self.parameters + self.readback
    }
}

impl std::fmt::Display for GpuMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = |b: u64| b as f64 / f64::from(1u32 << 20);
        write!(
            f,
            "{:.1} MiB (activations {:.1}, im2col workspace {:.1}, weights and tables {:.1}, readback {:.1})",
            mib(self.total()),
            mib(self.activations),
            mib(self.workspace),
            mib(self.parameters),
            mib(self.readback)
        )
    }
}

/// Bytes of a `u32`/`f32` table as uploaded (at least 16).
fn table_bytes(len: usize) -> u64 {
    bytes_of_len(len).max(16)
}

/// Weights, biases, masks and maps a step uploads (the uniform arena is not counted: a
/// few hundred bytes per launch).
fn parameter_bytes(step: &crate::plan::Step) -> u64 {
    match &step.op {
        StepOp::Conv { layer, .. } => {
            let g = layer.geometry();
            // The packed A matrix: rows of kh·kw·C/groups values padded to a multiple of 4.
            let lda = g.k_per_group().next_multiple_of(4);
            table_bytes(g.out_channels * lda)
                + table_bytes(layer.bias().len())
                + table_bytes(layer.mask().len())
                + table_bytes(layer.interpolation_map().table().len())
                + layer.input_map().map_or(0, |m| table_bytes(m.table().len()))
        }
        StepOp::Gather { map, .. } => table_bytes(map.table().len()),
        StepOp::Pool { in_map, .. } => in_map.as_ref().map_or(0, |m| table_bytes(m.table().len())),
        StepOp::Affine { scale, shift, .. } => table_bytes(scale.len()) + table_bytes(shift.len()),
        StepOp::SelectChannels { channels, .. } => table_bytes(channels.len()),
        StepOp::Resample { index, weight, .. } => table_bytes(index.len()) + table_bytes(weight.len()),
        _ => 0,
    }
}

impl GpuExecutor {
    /// The GPU memory an executor of `plan` on `ctx` allocates (the workspace depends on
    /// the context's binding limit, which sets the im2col chunk).
    ///
    /// # Errors
    /// [`Error::TooLarge`] when a conv's weights cannot be split to fit a binding.
    pub fn memory_needed(ctx: &GpuContext, plan: &Plan) -> Result<GpuMemory> {
        Ok(Self::memory_of(plan, &Self::schedules(ctx, plan)?))
    }

    /// The GPU schedule of every conv step of `plan`, in step order.
    fn schedules(ctx: &GpuContext, plan: &Plan) -> Result<Vec<ConvSchedule>> {
        plan.steps()
            .iter()
            .filter_map(|step| match &step.op {
                StepOp::Conv { layer, settings } => {
                    Some(ConvSchedule::new(layer, &gpu_settings(settings), ctx.max_binding_bytes()))
                }
                _ => None,
            })
            .collect()
    }

    /// Length of the im2col workspace: the largest chunk of any conv (4 when none has one).
    fn col_len(schedules: &[ConvSchedule]) -> usize {
        schedules.iter().map(|s| s.col_len).max().unwrap_or(4)
    }

    fn memory_of(plan: &Plan, schedules: &[ConvSchedule]) -> GpuMemory {
        GpuMemory {
            activations: plan.slot_sizes().iter().map(|&n| table_bytes(n)).sum(),
            workspace: table_bytes(Self::col_len(schedules)),
            parameters: plan.steps().iter().map(parameter_bytes).sum(),
            readback: table_bytes(plan.tensor(plan.output()).len()),
        }
    }

    /// Uploads every table of `plan` and records its commands.
    pub fn new(ctx: &GpuContext, plan: &Plan) -> Result<Self> {
        Self::from_shared(ctx, Arc::new(plan.clone()))
    }

    /// [`GpuExecutor::new`] on a plan shared with other executors (CPU or GPU), without
    /// copying it.
    pub fn from_shared(ctx: &GpuContext, shared: Arc<Plan>) -> Result<Self> {
        let plan = &*shared;
        // Activations past the binding limit first: their message says what shrinks them.
        for (i, &n) in plan.slot_sizes().iter().enumerate() {
            check_binding_size(ctx, &format!("activation slot {i}"), bytes_of_len(n))?;
        }
        let schedules = Self::schedules(ctx, plan)?;
        let need = Self::memory_of(plan, &schedules);
        if let Some(budget) = ctx.memory_budget() {
            if need.total() > budget {
                return Err(Error::OutOfMemory(format!(
                    "plan '{}' at batch {} needs {need}, but this context allows {:.1} MiB \
                     (GpuContext::with_memory_budget); a smaller batch needs less",
                    plan.name(),
                    plan.batch(),
                    budget as f64 / f64::from(1u32 << 20)
                )));
            }
        }
        Self::allocate(ctx, &shared, schedules).map_err(|e| match e {
            Error::OutOfMemory(m) => Error::OutOfMemory(format!(
                "{m}; plan '{}' at batch {} needs {need} in all; a smaller batch needs less",
                plan.name(),
                plan.batch()
            )),
            e => e,
        })
    }

    fn allocate(ctx: &GpuContext, shared: &Arc<Plan>, schedules: Vec<ConvSchedule>) -> Result<Self> {
        let plan = &**shared;
        let slots: Vec<wgpu::Buffer> = plan
            .slot_sizes()
            .iter()
            .enumerate()
            .map(|(i, &n)| storage(ctx, &format!("activation slot {i}"), bytes_of_len(n)))
            .collect::<Result<_>>()?;
        let col = storage(ctx, "im2col workspace", bytes_of_len(Self::col_len(&schedules)))?;
        let unused_map = table(ctx, "unused map", &[0; 4])?;

        let mut b = LaunchBuilder::new(ctx);
        let mut schedules = schedules.into_iter();
        for step in plan.steps() {
            let slot = |t| &slots[plan.slot(t)];
            let (x, out) = (slot(step.inputs[0]), slot(step.output));
            match &step.op {
                StepOp::Conv { layer, settings } => {
                    let schedule = schedules.next().expect("one schedule per conv step");
                    ConvTables::upload(ctx, layer)?.queue(
                        &mut b,
                        &schedule,
                        x,
                        &col,
                        out,
                        settings.gemm_tile,
                    );
                }
                StepOp::Gather { params, map } => {
                    let map = table(ctx, "interpolation map", map.table())?;
                    let addend = match step.inputs.get(1) {
                        Some(&t) => slot(t),
                        None => &unused_map,
                    };
                    kernels::gather_interp::gather_interp(&mut b, params, x, &map, addend, out);
                }
                StepOp::Pool { params, in_map } => {
                    let map = match in_map {
                        Some(m) => table(ctx, "pool input map", m.table())?,
                        None => unused_map.clone(),
                    };
                    kernels::pool2d::pool2d(&mut b, params, x, &map, out);
                }
                StepOp::Lrn(p) => kernels::lrn::lrn(&mut b, p, x, out),
                StepOp::Relu(p) => kernels::relu::relu(&mut b, p, x, out),
                StepOp::Clip(p) => kernels::clip::clip(&mut b, p, x, out),
                StepOp::Add(p) => kernels::add::add(&mut b, p, x, slot(step.inputs[1]), out),
                StepOp::Affine { params, scale, shift } => {
                    let scale = storage_init(ctx, "affine scale", bytemuck::cast_slice(scale))?;
                    let shift = storage_init(ctx, "affine shift", bytemuck::cast_slice(shift))?;
                    kernels::channel_affine::channel_affine(&mut b, params, x, &scale, &shift, out);
                }
                StepOp::Softmax(p) => kernels::softmax::softmax(&mut b, p, x, out),
                StepOp::StridedCopy(p) => kernels::strided_copy::strided_copy(&mut b, p, x, out),
                StepOp::Constant { params, values } => {
                    let values = storage_init(ctx, "constant values", bytemuck::cast_slice(values))?;
                    kernels::strided_copy::strided_copy(&mut b, params, &values, out);
                }
                StepOp::MatmulStrided(p) => {
                    kernels::matmul_strided::matmul_strided(&mut b, p, x, slot(step.inputs[1]), out)
                }
                StepOp::Unary(p) => kernels::unary::unary(&mut b, p, x, out),
                StepOp::Binary(p) => kernels::binary::binary(&mut b, p, x, slot(step.inputs[1]), out),
                StepOp::ReduceChannels(p) => kernels::reduce_channels::reduce_channels(&mut b, p, x, out),
                StepOp::SelectElements(p) => {
                    let (a, other) = (slot(step.inputs[1]), slot(step.inputs[2]));
                    kernels::select_elements::select_elements(&mut b, p, x, a, other, out);
                }
                StepOp::Resample { params, index, weight } => {
                    let index = table(ctx, "resample index", index)?;
                    let weight = storage_init(ctx, "resample weight", bytemuck::cast_slice(weight))?;
                    kernels::resample::resample(&mut b, params, x, &index, &weight, out);
                }
                StepOp::SelectChannels { params, channels } => {
                    let channels = table(ctx, "channel table", channels)?;
                    kernels::select_channels::select_channels(&mut b, params, x, &channels, out);
                }
                StepOp::Concat => {
                    let info = plan.tensor(step.output);
                    let image = bytes_of_len(info.channels * info.plane());
                    let mut offset = 0;
                    for &t in &step.inputs {
                        let part = bytes_of_len(plan.tensor(t).channels * info.plane());
                        for image_index in 0..info.batch as u64 {
                            b.copy(slot(t), image_index * part, out, image_index * image + offset, part);
                        }
                        offset += part;
                    }
                }
            }
        }
        let commands = b.finish("plan params")?;
        let staging = staging(ctx, "network output", plan.tensor(plan.output()).bytes())?;
        let inner = Inner {
            ctx: ctx.clone(),
            plan: Arc::clone(shared),
            slots,
            staging,
            commands,
            running: Mutex::new(()),
        };
        Ok(GpuExecutor { inner: Arc::new(inner) })
    }

    /// The plan being run.
    pub fn plan(&self) -> &Plan {
        &self.inner.plan
    }

    /// The plan, to share with another executor ([`GpuExecutor::from_shared`],
    /// [`crate::cpu::CpuExecutor::from_shared`]).
    pub fn shared_plan(&self) -> Arc<Plan> {
        Arc::clone(&self.inner.plan)
    }

    /// Runs the plan, blocking until the output is back.
    pub fn run(&self, input: ArrayViewD<'_, f32>) -> Result<ArrayD<f32>> {
        self.inner
            .run(input, true)
            .and_then(|out| out.ok_or_else(|| Error::Gpu("no output was read back".into())))
    }

    /// Uploads `input` and runs the plan without reading the output back (benchmarks).
    pub fn execute(&self, input: ArrayViewD<'_, f32>) -> Result<()> {
        self.inner.run(input, false).map(|_| ())
    }

    /// Runs the plan without blocking the caller: the GPU work and the wait happen on a
    /// helper thread, and the returned future resolves with the output.
    pub fn run_async(
        &self,
        input: ArrayViewD<'_, f32>,
    ) -> impl Future<Output = Result<ArrayD<f32>>> + Send + 'static {
        let shared = Arc::new(Mutex::new(Shared { result: None, waker: None }));
        let input = input.to_owned();
        let inner = Arc::clone(&self.inner);
        let done = Arc::clone(&shared);
        let spawned = std::thread::Builder::new().name("perforate-gpu-run".into()).spawn(move || {
            let result = inner
                .run(input.view(), true)
                .and_then(|out| out.ok_or_else(|| Error::Gpu("no output was read back".into())));
            if let Ok(mut s) = done.lock() {
                s.result = Some(result);
                if let Some(w) = s.waker.take() {
                    w.wake();
                }
            }
        });
        if let Err(e) = spawned {
            if let Ok(mut s) = shared.lock() {
                s.result = Some(Err(Error::Gpu(format!("could not start the GPU run thread: {e}"))));
            }
        }
        RunFuture { shared }
    }
}

impl Inner {
    fn run(&self, input: ArrayViewD<'_, f32>, readback: bool) -> Result<Option<ArrayD<f32>>> {
        let _guard = self.running.lock().map_err(|_| Error::Gpu("a previous run panicked".into()))?;
        let plan = &self.plan;
        let what = format!("input of network '{}'", plan.name());
        upload_input(&self.ctx, &self.slots[plan.slot(plan.input())], &plan.input_shape(), &what, input)?;
        let out = plan.tensor(plan.output());
        let output = &self.slots[plan.slot(plan.output())];
        let commands =
            encode_run(&self.ctx, &self.commands, readback.then_some((output, &self.staging, out.bytes())));
        self.ctx.submit_and_wait(commands)?;
        if !readback {
            return Ok(None);
        }
        let data = read_f32(&self.ctx, &self.staging, out.len())?;
        Ok(Some(ArrayD::from_shape_vec(IxDyn(&out.shape()), data).expect("output length matches its shape")))
    }
}

struct Shared {
    result: Option<Result<ArrayD<f32>>>,
    waker: Option<Waker>,
}

/// The future of [`GpuExecutor::run_async`].
struct RunFuture {
    shared: Arc<Mutex<Shared>>,
}

impl Future for RunFuture {
    type Output = Result<ArrayD<f32>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(mut s) = self.shared.lock() else {
            return Poll::Ready(Err(Error::Gpu("the GPU run thread panicked".into())));
        };
        match s.result.take() {
            Some(r) => Poll::Ready(r),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Executor for GpuExecutor {
    fn run(&self, input: ArrayViewD<'_, f32>) -> Result<ArrayD<f32>> {
        GpuExecutor::run(self, input)
    }

    fn describe(&self) -> String {
        format!("GPU: {}", self.inner.ctx.describe())
    }
}
