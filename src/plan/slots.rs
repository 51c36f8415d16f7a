//! Buffer lifetimes: when each storage tensor is last read, residual gathers rewritten to
//! run in place, and buffer slots assigned by liveness.

use super::{Step, StepOp, TensorId, TensorInfo};

/// For each storage tensor, the last step that reads it (`usize::MAX` for the output,
/// which lives to the end; `None` for a tensor nothing reads). Shared by slot assignment
/// and the memory report, so both agree on every lifetime.
pub(super) fn last_uses(tensors: &[TensorInfo], steps: &[Step], output: TensorId) -> Vec<Option<usize>> {
    let root = |t: TensorId| tensors[t].storage;
    let mut last_use = vec![None; tensors.len()];
    for (s, step) in steps.iter().enumerate() {
        for &i in &step.inputs {
            last_use[root(i)] = Some(s);
        }
    }
    last_use[root(output)] = Some(usize::MAX);
    last_use
}

/// Runs residual gathers in place where liveness allows: when a `gather_interp` step's dense
/// addend is read for the last time there (and is not the network input), the step writes
/// its sum into the addend's own storage (`residual = 2`, one input fewer), so the sum of a
/// dense shortcut and a compact branch costs no second dense tensor.
pub(super) fn residual_in_place(
    tensors: &mut [TensorInfo],
    steps: &mut [Step],
    input: TensorId,
    output: TensorId,
) {
    for s in 0..steps.len() {
        let StepOp::Gather { params, .. } = &steps[s].op else { continue };
        if params.residual != 1 {
            continue;
        }
        let (addend, out) = (steps[s].inputs[1], steps[s].output);
        let r = tensors[addend].storage;
        // Liveness as the steps stand now (earlier rewrites moved storages).
        let last_use = last_uses(tensors, steps, output);
        if r == tensors[input].storage
            || last_use[r] != Some(s)
            || tensors[addend].len() != tensors[out].len()
        {
            continue;
        }
        let old = tensors[out].storage;
        for t in tensors.iter_mut().filter(|t| t.storage == old) {
            t.storage = r;
        }
        if let StepOp::Gather { params, .. } = &mut steps[s].op {
            params.residual = 2;
        }
        steps[s].inputs.truncate(1);
    }
}

/// Assigns buffer slots: each storage tensor gets a slot when produced, and its slot is
/// released after the last step reading it (never before the step's own output is
/// placed, so a step never writes a buffer it reads).
pub(super) fn assign_slots(
    tensors: &[TensorInfo],
    steps: &[Step],
    input: TensorId,
    output: TensorId,
    reuse: bool,
) -> (Vec<usize>, Vec<usize>) {
    let root = |t: TensorId| tensors[t].storage;
    let last_use = last_uses(tensors, steps, output);
    let mut slot_of = vec![usize::MAX; tensors.len()];
    let mut sizes: Vec<usize> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let place = |t: TensorId, slot_of: &mut Vec<usize>, sizes: &mut Vec<usize>, free: &mut Vec<usize>| {
        let need = tensors[t].len().max(4);
        let pick = if reuse {
            let fitting =
                free.iter().enumerate().filter(|(_, &s)| sizes[s] >= need).min_by_key(|(_, &s)| sizes[s]);
            let largest = free.iter().enumerate().max_by_key(|(_, &s)| sizes[s]);
            fitting.or(largest).map(|(i, _)| i)
        } else {
            None
        };
        let slot = match pick {
            Some(i) => free.swap_remove(i),
            None => {
                sizes.push(0);
                sizes.len() - 1
            }
        };
        sizes[slot] = sizes[slot].max(need);
        slot_of[t] = slot;
    };
    place(root(input), &mut slot_of, &mut sizes, &mut free);
    for (s, step) in steps.iter().enumerate() {
        let out = root(step.output);
        if slot_of[out] == usize::MAX {
            place(out, &mut slot_of, &mut sizes, &mut free);
        }
        let mut done: Vec<usize> =
            step.inputs.iter().map(|&i| root(i)).filter(|&r| last_use[r] == Some(s)).collect();
        if last_use[out].is_none() {
            done.push(out);
        }
        done.sort_unstable();
        done.dedup();
        free.extend(done.into_iter().map(|r| slot_of[r]));
    }
    (slot_of, sizes)
}
