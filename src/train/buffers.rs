//! Reuse of a training step's large buffers (activations on the tape, gradients, conv
//! scratch) from one step to the next.
//!
//! Each step allocates and frees the same few hundred megabytes. Freed blocks above the
//! allocator's mmap threshold go back to the operating system and come back as fresh
//! zero pages, and unmapping them shoots down TLBs on every core: measured at about a
//! third of a fashion_resnet training step at batch 64 (page faults, TLB flushes, lock
//! contention in the kernel). Buffers of at least [`MIN_LEN`] values are therefore kept in
//! a process-wide pool when released and handed out again, best fit first; the pool
//! holds at most [`MAX_BYTES`] and is emptied when a training run ends.

use std::sync::Mutex;

/// Buffers shorter than this are left to the allocator (128 KiB).
const MIN_LEN: usize = 1 << 15;
/// The most the pool keeps.
const MAX_BYTES: usize = 4 << 30;

static POOL: Mutex<Vec<Vec<f32>>> = Mutex::new(Vec::new());

/// `len` zeros, in a recycled buffer when one fits.
pub(crate) fn zeroed(len: usize) -> Vec<f32> {
    let mut v = scratch(len);
    v.fill(0.0);
    v
}

/// `len` values of no particular content (stale values of an earlier step, or zeros):
/// for outputs the caller overwrites whole. Recycled buffers keep their length, so
/// shortening one writes nothing.
pub(crate) fn scratch(len: usize) -> Vec<f32> {
    match recycled(len) {
        Some(mut v) => {
            v.resize(len, 0.0);
            v
        }
        None => vec![0.0; len],
    }
}

/// An empty buffer with room for `len` values (recycled when one fits).
pub(crate) fn take(len: usize) -> Vec<f32> {
    recycled(len).map_or_else(
        || Vec::with_capacity(len),
        |mut v| {
            v.clear();
            v
        },
    )
}

/// The pooled buffer that fits `len` best, if one holds `len` to `2·len` values (a much
/// larger one stays for a larger request).
fn recycled(len: usize) -> Option<Vec<f32>> {
    if len < MIN_LEN {
        return None;
    }
    let mut pool = POOL.lock().ok()?;
    let best = pool
        .iter()
        .enumerate()
        .filter(|(_, v)| v.capacity() >= len && v.capacity() <= 2 * len)
        .min_by_key(|(_, v)| v.capacity())
        .map(|(i, _)| i)?;
    Some(pool.swap_remove(best))
}

/// A copy of `values` in a recycled buffer when one fits.
pub(crate) fn copied(values: &[f32]) -> Vec<f32> {
    let mut v = take(values.len());
    v.extend_from_slice(values);
    v
}

/// Gives `v` back for reuse (small ones are freed).
pub(crate) fn recycle(v: Vec<f32>) {
    if v.capacity() < MIN_LEN {
        return;
    }
    if let Ok(mut pool) = POOL.lock() {
        let held: usize = pool.iter().map(|b| b.capacity() * 4).sum();
        if held + v.capacity() * 4 <= MAX_BYTES {
            pool.push(v);
        }
    }
}

/// Empties the pool when dropped: held for the length of a training run.
pub(crate) struct Release;

impl Drop for Release {
    fn drop(&mut self) {
        release();
    }
}

/// Frees every pooled buffer (the end of a training run).
pub(crate) fn release() {
    if let Ok(mut pool) = POOL.lock() {
        pool.clear();
        pool.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_zeroed_and_small_ones_are_not_kept() {
        let mut v = zeroed(MIN_LEN + 5);
        v.iter_mut().for_each(|x| *x = 3.0);
        let cap = v.capacity();
        recycle(v);
        let w = zeroed(MIN_LEN);
        assert!(w.iter().all(|&x| x == 0.0) && w.len() == MIN_LEN);
        assert!(w.capacity() >= MIN_LEN);
        let _ = cap;
        recycle(vec![1.0; 10]);
        release();
    }
}
