//! The CPU executor of a whole [`Plan`].

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use super::conv::{conv_forward, CPU_DEFAULT_CHUNK_BYTES};
use super::fast::elementwise::{gather_pair_fast, gathers_pair};
use super::fast::FastConv;
use super::gemm::Microkernel;
use super::step::{concat, run_op};
use crate::error::{Error, Result};
use crate::layer::ConvSchedule;
use crate::plan::{Executor, Plan, StepOp, TensorId};

/// A conv step's CPU-side state: the fast kernel, or the twins' schedule and packed
/// weights (the reference executor).
#[derive(Debug)]
enum ConvState {
    Fast(Box<FastConv>),
    Twin { schedule: Box<ConvSchedule>, packed: Vec<f32> },
}

/// Runs a [`Plan`] on the CPU. Convolutions run on the fast path ([`FastConv`]: implicit
/// GEMM on SIMD microkernels, direct depthwise) unless the executor is built with
/// [`CpuExecutor::reference`], which runs every step on the `cpu::` kernel twins. Buffer
/// slots and workspaces are allocated on the first run and reused; runs are serialised.
///
/// `Send + Sync`: share one executor between threads (their runs take turns on its one
/// set of buffers, each getting exactly its single-threaded result) or build one per
/// thread from the same [`Plan`] to run in parallel.
#[derive(Debug)]
pub struct CpuExecutor {
    plan: Arc<Plan>,
    convs: Vec<Option<ConvState>>,
    /// Whether steps run on the fast path (false: the reference twins).
    fast: bool,
    /// Per step: it is a plain `gather_interp` whose result the next step, an in-place
    /// residual gather of the same shape, adds to; the fast path runs the two as one pass
    /// (`gather_pair_fast`: a residual Add of two compact operands with different maps),
    /// and the second step's view (`run_with`) is the pair's sum, as the first's is.
    paired: Vec<bool>,
    /// Where each tensor's storage lives: `(buffer, offset)`, the buffers being the plan's
    /// slots and then one per concat at batch 1 whose parts are written straight into it
    /// (see [`concat_in_place`]).
    locations: Vec<(usize, usize)>,
    /// Per step: for a concat, which of its inputs its producers already wrote in place.
    concat_parts: Vec<Vec<bool>>,
    /// Floats of each buffer.
    buffer_sizes: Vec<usize>,
    buffers: Mutex<Buffers>,
}

#[derive(Debug, Default)]
struct Buffers {
    slots: Vec<Vec<f32>>,
    col: Vec<f32>,
}

impl CpuExecutor {
    /// Prepares `plan` for the CPU: every conv on the fast path, with the microkernel
    /// family [`Microkernel::detect`] picks.
    pub fn new(plan: &Plan) -> Result<Self> {
        Self::build(Arc::new(plan.clone()), Some(Microkernel::detect()))
    }

    /// [`CpuExecutor::new`] on a plan shared with other executors (CPU or GPU): the plan
    /// and its weights are not copied (the executor keeps its own packed copies of the
    /// conv weights only).
    pub fn from_shared(plan: Arc<Plan>) -> Result<Self> {
        Self::build(plan, Some(Microkernel::detect()))
    }

    /// Prepares `plan` to run every step on the reference twins (`im2col_masked`,
    /// `matmul_tiled`, ...), the CPU counterparts of the WGSL kernels.
    pub fn reference(plan: &Plan) -> Result<Self> {
        Self::build(Arc::new(plan.clone()), None)
    }

    fn build(shared: Arc<Plan>, fast: Option<Microkernel>) -> Result<Self> {
        let plan = &*shared;
        let convs = plan
            .steps()
            .iter()
            .map(|s| match &s.op {
                StepOp::Conv { layer, settings } => {
                    // Resolving the schedule also validates the layer for either path (for
                    // example a barycentric conv with a fused ReLU has no compact output).
                    let schedule = ConvSchedule::new(layer, settings, CPU_DEFAULT_CHUNK_BYTES)?;
                    Ok(Some(match fast {
                        Some(kern) => ConvState::Fast(Box::new(FastConv::new(layer, kern))),
                        None => {
                            ConvState::Twin { schedule: Box::new(schedule), packed: layer.packed_weights().0 }
                        }
                    }))
                }
                _ => Ok(None),
            })
            .collect::<Result<_>>()?;
        let steps = plan.steps();
        let paired: Vec<bool> = (0..steps.len())
            .map(|i| {
                fast.is_some()
                    && steps.get(i + 1).is_some_and(|next| match (&steps[i].op, &next.op) {
                        (StepOp::Gather { params: p1, .. }, StepOp::Gather { params: p2, .. }) => {
                            gathers_pair(p1, p2) && plan.slot(next.output) == plan.slot(steps[i].output)
                        }
                        _ => false,
                    })
            })
            .collect();
        let Placement { locations, concat_parts, buffer_sizes } =
            if fast.is_some() { concat_in_place(plan, &paired) } else { Placement::plain(plan) };
        Ok(CpuExecutor {
            plan: shared.clone(),
            convs,
            paired,
            locations,
            concat_parts,
            buffer_sizes,
            fast: fast.is_some(),
            buffers: Mutex::new(Buffers::default()),
        })
    }

    /// The fast kernel family that runs step `step` when it is a conv on the fast path
    /// (`implicit_gemm`, `depthwise`, `gemv`, `hwc_conv`; for benches and profiles).
    pub fn conv_kernel(&self, step: usize) -> Option<&'static str> {
        match self.convs.get(step)? {
            Some(ConvState::Fast(k)) => Some(k.name()),
            _ => None,
        }
    }

    /// The plan being run.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The plan, to share with another executor ([`CpuExecutor::from_shared`],
    /// `GpuExecutor::from_shared`).
    pub fn shared_plan(&self) -> Arc<Plan> {
        Arc::clone(&self.plan)
    }

    /// Runs the plan and returns the output.
    pub fn run(&self, input: ArrayViewD<'_, f32>) -> Result<ArrayD<f32>> {
        self.run_with(input, |_, _| ())
    }

    /// Runs the plan, handing every layer's output tensor (in plan order, with its layer
    /// name) to `inspect` as soon as it is computed: per-layer parity checks and debugging.
    pub fn run_with(
        &self,
        input: ArrayViewD<'_, f32>,
        mut inspect: impl FnMut(&str, ArrayViewD<'_, f32>) + Send,
    ) -> Result<ArrayD<f32>> {
        let plan = &self.plan;
        let expected = plan.input_shape();
        if input.shape() != expected.as_slice() {
            return Err(Error::shape(
                format!("input of network '{}'", plan.name()),
                format!("{expected:?}"),
                format!("{:?}", input.shape()),
            ));
        }
        let mut guard =
            self.buffers.lock().map_err(|_| Error::InvalidArgument("a previous run panicked".into()))?;
        let buffers = &mut *guard;
        if buffers.slots.is_empty() {
            buffers.slots = self.buffer_sizes.iter().map(|&n| vec![0.0; n]).collect();
        }
        let input = input.as_standard_layout();
        let x = input.as_slice().expect("standard layout is contiguous");
        let (b, o) = self.locations[plan.input()];
        buffers.slots[b][o..o + x.len()].copy_from_slice(x);

        // The steps run on a pool thread: each step's parallel region is then a local join
        // that the other workers steal from, not a job injected from outside the pool
        // with the caller asleep until it completes (two wake-ups per step).
        //
        // The other workers spin for the run, taking the steps' parallel work as it appears
        // (`rayon::yield_now` steals), instead of sleeping between steps: a sleeping worker
        // takes tens of microseconds to wake, which at batch 1 was most of a small layer.
        spinning(|| self.run_steps(buffers, &mut inspect));
        let out = plan.tensor(plan.output());
        let (b, o) = self.locations[plan.output()];
        let data = buffers.slots[b][o..o + out.len()].to_vec();
        Ok(ArrayD::from_shape_vec(IxDyn(&out.shape()), data).expect("output length matches its shape"))
    }

    fn run_steps(&self, buffers: &mut Buffers, inspect: &mut (impl FnMut(&str, ArrayViewD<'_, f32>) + Send)) {
        let plan = &self.plan;
        let steps = plan.steps();
        for (i, (step, conv)) in steps.iter().zip(&self.convs).enumerate() {
            let out_info = plan.tensor(step.output);
            let (out_slot, out_at) = self.locations[step.output];
            // The output buffer is never one of the step's input buffers (see assign_slots
            // and `concat_in_place`).
            let mut out = std::mem::take(&mut buffers.slots[out_slot]);
            let at = |t: TensorId| {
                let (b, o) = self.locations[t];
                &buffers.slots[b][o..o + plan.tensor(t).len()]
            };
            let arg = |k: usize| at(step.inputs[k]);
            let dst = &mut out[out_at..out_at + out_info.len()];
            match &step.op {
                // Done with the previous step, which it is paired with.
                _ if i > 0 && self.paired[i - 1] => {}
                StepOp::Gather { params, map } if self.paired[i] => {
                    let next = &steps[i + 1];
                    let StepOp::Gather { params: p2, map: m2 } = &next.op else {
                        unreachable!("`paired` holds only for two gathers")
                    };
                    let b = at(next.inputs[0]);
                    gather_pair_fast((params, arg(0), map.table()), (p2, b, m2.table()), dst);
                }
                StepOp::Conv { layer, .. } => {
                    match conv.as_ref().expect("conv state exists for conv steps") {
                        ConvState::Fast(f) => f.run(arg(0), dst),
                        ConvState::Twin { schedule, packed } => {
                            conv_forward(layer, schedule, packed, arg(0), &mut buffers.col, dst)
                        }
                    }
                }
                StepOp::Concat => {
                    let len = |k: usize| plan.tensor(step.inputs[k]).len();
                    concat(step.inputs.len(), &arg, &len, out_info.batch, &self.concat_parts[i], dst);
                }
                op => {
                    run_op(op, step.inputs.len(), &arg, out_info.batch, dst, self.fast);
                }
            }
            inspect(
                &step.layer,
                ArrayViewD::from_shape(IxDyn(&out_info.shape()), &out[out_at..out_at + out_info.len()])
                    .expect("shape"),
            );
            buffers.slots[out_slot] = out;
        }
    }
}

/// Concats at batch 1 whose parts are written straight into their output: the executor
/// gives each such concat a buffer of its own (no liveness to share with the plan's slots)
/// and places the storage of every input that only the concat reads, produced by a step
/// that is not half of a gather pair, at its channel offset in it; the concat then copies
/// only the other inputs. (At batch 1 a part's `[1, C_k, H, W]` is one contiguous run of
/// the output; at larger batches each image's part would need a stride.) SqueezeNet's
/// eight concats were 9% of its batch-1 time.
///
/// Where a step would then read a buffer it writes, nothing is placed (every tensor in its
/// plan slot).
fn concat_in_place(plan: &Plan, paired: &[bool]) -> Placement {
    let (tensors, steps) = (plan.tensors(), plan.steps());
    let root = |t: TensorId| tensors[t].storage;
    let mut sizes = plan.slot_sizes().to_vec();
    let mut parts = vec![Vec::new(); steps.len()];
    // Per storage: the steps that read it, the steps that write it, its last writer.
    let (mut readers, mut writers, mut producer) =
        (vec![0usize; tensors.len()], vec![0usize; tensors.len()], vec![usize::MAX; tensors.len()]);
    for (i, s) in steps.iter().enumerate() {
        for &t in &s.inputs {
            readers[root(t)] += 1;
        }
        writers[root(s.output)] += 1;
        producer[root(s.output)] = i;
    }
    let in_pair = |p: usize| paired[p] || (p > 0 && paired[p - 1]);
    let mut place: Vec<(usize, usize)> = (0..tensors.len()).map(|r| (plan.slot(r), 0)).collect();
    for (i, s) in steps.iter().enumerate() {
        if !matches!(s.op, StepOp::Concat) || tensors[s.output].batch != 1 {
            continue;
        }
        let buffer = sizes.len();
        let mut offset = 0;
        let mut here = vec![false; s.inputs.len()];
        for (k, &t) in s.inputs.iter().enumerate() {
            let r = root(t);
            let movable = readers[r] == 1
                && writers[r] == 1
                && producer[r] < i
                && !in_pair(producer[r])
                && r != root(plan.input())
                && r != root(plan.output());
            if movable {
                place[r] = (buffer, offset);
                here[k] = true;
            }
            offset += tensors[t].len();
        }
        if here.contains(&true) {
            place[root(s.output)] = (buffer, 0);
            sizes.push(tensors[s.output].len());
            parts[i] = here;
        }
    }
    let locations: Vec<(usize, usize)> = (0..tensors.len()).map(|t| place[root(t)]).collect();
    // A concat does not read the parts already in place.
    let overlaps = steps.iter().zip(&parts).any(|(s, here)| {
        let read = |k: usize| !here.get(k).is_some_and(|&h| h);
        s.inputs.iter().enumerate().any(|(k, &t)| read(k) && locations[t].0 == locations[s.output].0)
    });
    if overlaps {
        return Placement::plain(plan);
    }
    Placement { locations, concat_parts: parts, buffer_sizes: sizes }
}

/// Where an executor keeps each tensor (see [`concat_in_place`]).
struct Placement {
    /// Per tensor: `(buffer, offset)`.
    locations: Vec<(usize, usize)>,
    /// Per step: for a concat, which inputs are already in place.
    concat_parts: Vec<Vec<bool>>,
    /// Floats of each buffer: the plan's slots, then the concats'.
    buffer_sizes: Vec<usize>,
}

impl Placement {
    /// Every tensor in its plan slot.
    fn plain(plan: &Plan) -> Placement {
        Placement {
            locations: (0..plan.tensors().len()).map(|t| (plan.slot(t), 0)).collect(),
            concat_parts: vec![Vec::new(); plan.steps().len()],
            buffer_sizes: plan.slot_sizes().to_vec(),
        }
    }
}

thread_local! {
    /// Whether this thread is running a plan's steps (further down its stack, when a wait
    /// inside them made it take other work).
    static IN_RUN: Cell<bool> = const { Cell::new(false) };
}

/// Marks this thread as running steps until dropped; then restores the mark and ends the
/// run's spinning.
struct Running<'a> {
    done: &'a AtomicBool,
    outer: bool,
}

impl<'a> Running<'a> {
    fn start(done: &'a AtomicBool) -> Self {
        Running { done, outer: IN_RUN.replace(true) }
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        IN_RUN.set(self.outer);
        self.done.store(true, Ordering::Release);
    }
}

/// Runs `f` on a pool thread while the pool's other workers spin (see [`spin_until`]):
/// for a sequence of short parallel regions (a network's steps, a training step's
/// layers), whose workers would otherwise sleep and wake between them.
pub(crate) fn spinning<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let done = AtomicBool::new(false);
    let mut out = None;
    rayon::scope(|s| {
        for _ in 1..rayon::current_num_threads() {
            s.spawn(|_| spin_until(&done));
        }
        // Ends the spinning however `f` ends (a panic included: the scope waits for the
        // spinners before it passes the panic on).
        let _running = Running::start(&done);
        out = Some(f());
    });
    out.expect("the scope ran f")
}

/// A pool worker's share of a run: until `done`, take and run whatever parallel work the
/// pool has, spinning between pieces. Returns at once on a thread that is itself inside a
/// run (a run waiting at a join may pick this job up): spinning there would hold that run
/// until this one ends, and two runs could then wait on each other.
fn spin_until(done: &AtomicBool) {
    if IN_RUN.get() {
        return;
    }
    while !done.load(Ordering::Acquire) {
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            std::hint::spin_loop();
        }
    }
}

impl Executor for CpuExecutor {
    fn run(&self, input: ArrayViewD<'_, f32>) -> Result<ArrayD<f32>> {
        CpuExecutor::run(self, input)
    }

    fn describe(&self) -> String {
        format!("CPU ({} threads)", rayon::current_num_threads())
    }
}
