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
        let last_use = super::slots::last_uses(&self.tensors, &self.steps, self.output);
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
            live.retain(|&t| last_use[t].is_some_and(|last| last > s));
        }
        let peak_bytes = rows.iter().map(|r| r.live_bytes).max().unwrap_or(0);
        let allocated_bytes = self.slot_sizes.iter().map(|&n| n as u64 * 4).sum();
        MemoryReport { rows, peak_bytes, allocated_bytes }
    }
}

impl MemoryReport {
    /// Per layer: bytes of its output (the last step carrying its name, so a gather
    /// counts for the layer that needed it) and the most bytes live during its steps.
    pub fn by_layer(&self) -> Vec<(String, u64, u64)> {
        let mut layers: Vec<(String, u64, u64)> = Vec::new();
        for r in &self.rows {
            match layers.last_mut() {
                Some((name, out, live)) if *name == r.layer => {
                    *out = r.output_bytes;
                    *live = (*live).max(r.live_bytes);
                }
                _ => layers.push((r.layer.clone(), r.output_bytes, r.live_bytes)),
            }
        }
        layers
    }

    /// Two reports side by side (typically dense and perforated plans of one network),
    /// one line per layer of `self`, then the peaks and their ratio.
    pub fn comparison_table(&self, other: &MemoryReport, names: [&str; 2]) -> String {
        use std::fmt::Write;
        let mb = |b: u64| b as f64 / 1e6;
        let theirs: std::collections::HashMap<String, (u64, u64)> =
            other.by_layer().into_iter().map(|(n, o, l)| (n, (o, l))).collect();
        let mut t = String::new();
        let [a, b] = names;
        let _ = writeln!(
            t,
            "{:<28} {:>12} {:>12} {:>12} {:>12}",
            "layer",
            format!("{a} out MB"),
            format!("{a} live MB"),
            format!("{b} out MB"),
            format!("{b} live MB")
        );
        for (name, out, live) in self.by_layer() {
            let (o, l) = theirs.get(&name).map_or(("-".to_string(), "-".to_string()), |&(o, l)| {
                (format!("{:.2}", mb(o)), format!("{:.2}", mb(l)))
            });
            let _ = writeln!(t, "{name:<28} {:>12.2} {:>12.2} {o:>12} {l:>12}", mb(out), mb(live));
        }
        let ratio = other.peak_bytes as f64 / self.peak_bytes.max(1) as f64;
        let _ = writeln!(
            t,
            "peak: {a} {:.2} MB, {b} {:.2} MB ({ratio:.2}x)",
            mb(self.peak_bytes),
            mb(other.peak_bytes)
        );
        t
    }
}
