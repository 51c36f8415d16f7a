//! Activation memory of a plan: what each step produces and how much is live.

use super::{Form, Plan};

/// One row of a [`MemoryReport`]: a step, its output, and the bytes live while it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryRow {
    /// Layer name.
    pub layer: String,
    /// Kernel name.
    pub kernel: &'static str,
    /// Output shape (`[B, C, N]` when compact).
    pub shape: Vec<usize>,
    /// Whether the output is compact.
    pub compact: bool,
    /// Bytes of the output.
    pub output_bytes: u64,
    /// Bytes of all activations live while the step runs (inputs, output and every
    /// tensor still needed later).
    pub live_bytes: u64,
}

/// Activation memory of one run: per step, the peak, and the bytes of the buffer slots
/// actually allocated (slots are reused across tensors whose lifetimes do not overlap).
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryReport {
    /// One row per step.
    pub rows: Vec<MemoryRow>,
    /// Largest `live_bytes`.
    pub peak_bytes: u64,
    /// Sum of the buffer slots.
    pub allocated_bytes: u64,
}

impl Plan {
    /// Bytes of activations held during each step and at the peak (the input counts
    /// until its last reader; workspace such as the im2col buffer does not count).
    pub fn memory_report(&self) -> MemoryReport {
        let root = |t: usize| self.tensors[t].storage;
        let mut last_use = vec![0usize; self.tensors.len()];
        for (s, step) in self.steps.iter().enumerate() {
            for &i in &step.inputs {
                last_use[root(i)] = s;
            }
        }
        last_use[root(self.output)] = usize::MAX;
        let mut live: Vec<usize> = vec![root(self.input)];
        let mut rows = Vec::with_capacity(self.steps.len());
        for (s, step) in self.steps.iter().enumerate() {
            let out = root(step.output);
            if !live.contains(&out) {
                live.push(out);
            }
            let live_bytes = live.iter().map(|&t| self.tensors[t].bytes()).sum();
            let info = &self.tensors[step.output];
            rows.push(MemoryRow {
                layer: step.layer.clone(),
                kernel: step.op.kernel(),
                shape: info.shape(),
                compact: matches!(info.form, Form::Compact(_)),
                output_bytes: info.bytes(),
                live_bytes,
            });
            live.retain(|&t| last_use[t] > s);
        }
        let peak_bytes = rows.iter().map(|r| r.live_bytes).max().unwrap_or(0);
        let allocated_bytes = self.slot_sizes.iter().map(|&n| n as u64 * 4).sum();
        MemoryReport { rows, peak_bytes, allocated_bytes }
    }
}
