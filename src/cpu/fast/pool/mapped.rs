//! Pooling a compact input through its nearest map without expanding it: each window's
//! taps are resolved once per call into compact indices (for the maximum, each distinct
//! one once: neighbouring positions often map to the same kept value), and every plane is
//! pooled by reading those. The expansion writes a dense plane per input plane and pools
//! it again (2-2.6x the dense pooling's time on the 28x28 networks at q = 1/2), but it
//! costs one gather per input position, then vector loops, where this costs one scalar
//! load per tap: it is taken where the layer's windows hold no more taps in all than its
//! input has positions (decided before the table is built: building it per call for a
//! layer that then expands cost SqueezeNet's 111x111 pool tens of microseconds).
//! Measured at batch 64, q = 1/2 (best of 4-6, alternated, both orders): the 28x28 VGG's
//! 2x2 stride-2 max pools 0.61-0.84 -> 0.15-0.61 ms with every tap, and 0.68-0.83x that
//! with distinct taps; NIN's 3x3 stride-2 pools (2.25 taps per position, more than one
//! distinct) 0.68-0.81 -> 0.87-1.18 ms (max) and 0.39-0.46 -> 0.46-0.57 (average), hence
//! the rule. Dense planes narrower than a vector use the same table with plane positions
//! as taps ([`MappedWindows::dense`]). On AVX-512 the table is also regrouped for one
//! gather per tap slot of 16 outputs (`Lanes`). The executor builds a map's table once
//! per layer and keeps it with the map ([`crate::interp::InterpMap::derived`]): built per
//! call, VGG-11's first pool at q = 1/2 and batch 1 spent 0.9 ms of its 4.7-6.5 in it.

use crate::cpu::pool2d::pool_windows;
use crate::params::Pool2dParams;

/// The windows of one pooling layer over a compact input read through a nearest map: per
/// output position, the compact indices of its taps inside the input in the twin's (y, x)
/// order (so an average sums in the twin's order: the same value; a maximum keeps each
/// index once), and the average's divisor.
pub(super) struct MappedWindows {
    /// `offsets[o]..offsets[o + 1]` are output `o`'s entries of `taps`.
    offsets: Vec<u32>,
    taps: Vec<u32>,
    divisors: Vec<f32>,
    avg: bool,
    /// Every tap is below this: the compact plane's length.
    compact: usize,
    /// The same windows for 16 outputs at a time (AVX-512 CPUs only).
    lanes: Option<Lanes>,
}

/// [`MappedWindows`] regrouped for 16-lane gathers: per group of 16 consecutive outputs,
/// as many slots as its largest window has taps, slot `k` holding each output's `k`-th tap
/// (a maximum's shorter windows repeat their first tap, which changes no maximum; an
/// average's are masked off and add nothing), outputs past the plane on index 0.
struct Lanes {
    /// `starts[g]..starts[g + 1]` are group `g`'s slots.
    starts: Vec<u32>,
    /// `[slot][16]` compact indices.
    index: Vec<u32>,
    /// Per slot, the lanes whose window has that tap (averages only).
    masks: Vec<u16>,
}

impl MappedWindows {
    /// The windows of `p` through `in_map` (a table of `in_h · in_w` compact indices into
    /// planes of `p.in_plane` values), or `None` where the expansion stays: other map
    /// kinds, global pooling, windows of more taps in all than input positions.
    ///
    /// # Panics
    /// A map shorter than the plane, or an index outside the compact plane (the plan built
    /// both; a broken one is an internal error).
    #[track_caller]
    pub(super) fn new(p: &Pool2dParams, in_map: &[u32]) -> Option<Self> {
        let global = p.out_h * p.out_w == 1;
        if p.in_map_kind != 1 || global {
            return None;
        }
        let in_plane = (p.in_h * p.in_w) as usize;
        assert!(in_map.len() >= in_plane, "pool2d: nearest map shorter than the input plane");
        let windows = pool_windows(p);
        // One scalar load per tap here against one gather per position and the dense
        // plane's vector pooling there. Decided on the windows' sizes before the table is
        // built (distinct taps make the maximum cheaper still, not the choice).
        let sizes: usize = windows
            .iter()
            .map(|&(h0, h1, w0, w1, _)| (h1.saturating_sub(h0) * w1.saturating_sub(w0)) as usize)
            .sum();
        if sizes > in_plane {
            return None;
        }
        Some(Self::build(p, &windows, |s| in_map[s]))
    }

    /// The windows of `p` over a dense input (`p.in_map_kind` 0): taps are plane
    /// positions. For planes narrower than a vector, where the row kernels' loads are all
    /// masked: the 28x28 VGG's last pool (7x7 -> 3x3, 2x2 windows, 6144 planes at batch
    /// 64) ran 0.36 ms on them, its compact twin on this table 0.11-0.15.
    pub(super) fn dense(p: &Pool2dParams) -> Self {
        debug_assert_eq!(p.in_map_kind, 0);
        #[allow(clippy::cast_possible_truncation)]
        Self::build(p, &pool_windows(p), |s| s as u32)
    }

    /// The table of `windows` (`pool_windows(p)`), each tap's plane position `s` read as
    /// `index(s)`; a maximum keeps each index of a window once (positions that map to the
    /// same kept one hold the same value).
    #[track_caller]
    fn build(p: &Pool2dParams, windows: &[(u32, u32, u32, u32, f32)], index: impl Fn(usize) -> u32) -> Self {
        let in_w = p.in_w as usize;
        let mut offsets = Vec::with_capacity(windows.len() + 1);
        let mut taps = Vec::with_capacity(windows.len() * (p.kernel_h * p.kernel_w) as usize);
        offsets.push(0);
        let avg = p.mode == 1;
        let mut divisors = Vec::with_capacity(if avg { windows.len() } else { 0 });
        for &(h0, h1, w0, w1, divisor) in windows {
            let start = taps.len();
            for y in h0..h1 {
                let row = (y - p.pad_top) as usize * in_w;
                for x in w0..w1 {
                    let tap = index(row + (x - p.pad_left) as usize);
                    if avg || !taps[start..].contains(&tap) {
                        taps.push(tap);
                    }
                }
            }
            offsets.push(u32::try_from(taps.len()).expect("pool2d: window table past u32"));
            if avg {
                divisors.push(divisor);
            }
        }
        let compact = p.in_plane;
        assert!(taps.iter().all(|&i| i < compact), "pool2d: map index outside the compact plane");
        let mut windows = Self { offsets, taps, divisors, avg, compact: compact as usize, lanes: None };
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") && compact <= i32::MAX as u32 {
            windows.lanes = Some(windows.regroup());
        }
        windows
    }

    /// The table as [`Lanes`].
    fn regroup(&self) -> Lanes {
        let n = self.offsets.len() - 1;
        let (mut starts, mut index, mut masks) = (vec![0u32], Vec::new(), Vec::new());
        for o0 in (0..n).step_by(16) {
            let window = |o: usize| &self.taps[self.offsets[o] as usize..self.offsets[o + 1] as usize];
            let slots = (o0..(o0 + 16).min(n)).map(|o| window(o).len()).max().unwrap_or(0);
            for k in 0..slots {
                let mut mask = 0u16;
                for lane in 0..16 {
                    let o = o0 + lane;
                    let w = if o < n { window(o) } else { &[] };
                    index.push(match (w.get(k), w.first()) {
                        (Some(&t), _) => {
                            mask |= 1 << lane;
                            t
                        }
                        (None, Some(&first)) if !self.avg => first,
                        _ => 0,
                    });
                }
                masks.push(mask);
            }
            starts.push(u32::try_from(masks.len()).expect("pool2d: window table past u32"));
        }
        Lanes { starts, index, masks }
    }

    /// Pools one compact plane `src` (`in_plane` values) into `dst` (every output): the
    /// average in the twin's order; the maximum as `v > m ? v : m` from −inf, which drops
    /// NaN (the caller pools a plane holding one on the twin).
    pub(super) fn pool(&self, src: &[f32], dst: &mut [f32]) {
        let n = self.offsets.len() - 1;
        assert!(dst.len() >= n, "pool2d: output plane shorter than the windows");
        assert!(src.len() >= self.compact, "pool2d: compact plane shorter than its map's indices");
        #[cfg(target_arch = "x86_64")]
        if let Some(lanes) = &self.lanes {
            // SAFETY: `lanes` exists only where AVX-512F was detected; its indices are taps
            // (below `compact`, which src covers) or 0; dst holds the n outputs.
            return unsafe { self.pool_avx512(lanes, src, &mut dst[..n]) };
        }
        for (o, d) in dst[..n].iter_mut().enumerate() {
            let (a, b) = (self.offsets[o] as usize, self.offsets[o + 1] as usize);
            // SAFETY: offsets rise to taps.len() (built so); every tap is below `compact`
            // (checked in `new`), which src covers (checked above). Unchecked: this is a
            // scalar gather, bounds checks doubled it.
            let at = |j: usize| unsafe { *src.get_unchecked(*self.taps.get_unchecked(j) as usize) };
            *d = if self.avg {
                let mut acc = 0.0f32;
                for j in a..b {
                    acc += at(j);
                }
                acc / self.divisors[o]
            } else {
                let mut best = f32::NEG_INFINITY;
                for j in a..b {
                    let v = at(j);
                    best = if v > best { v } else { best };
                }
                best
            };
        }
    }

    /// [`MappedWindows::pool`] 16 outputs at a time: one gather per slot, the maximum as
    /// `v > m ? v : m` from −inf and the average summed slot by slot (each lane in its
    /// window's tap order, masked-off lanes adding nothing: the scalar loop's values).
    ///
    /// # Safety
    /// AVX-512F is available; every index of `lanes` is below `src.len()`; `dst` holds the
    /// windows' outputs.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn pool_avx512(&self, lanes: &Lanes, src: &[f32], dst: &mut [f32]) {
        use std::arch::x86_64::*;
        for (g, out) in dst.chunks_mut(16).enumerate() {
            let (a, b) = (lanes.starts[g] as usize, lanes.starts[g + 1] as usize);
            let outputs = crate::cpu::gemm::lane_mask(out.len());
            let mut acc = _mm512_set1_ps(if self.avg { 0.0 } else { f32::NEG_INFINITY });
            for k in a..b {
                // SAFETY: 16 indices per slot, each below src.len() (the contract).
                unsafe {
                    let idx = _mm512_loadu_si512(lanes.index.as_ptr().add(16 * k).cast());
                    if self.avg {
                        let v = _mm512_mask_i32gather_ps::<4>(
                            _mm512_setzero_ps(),
                            lanes.masks[k],
                            idx,
                            src.as_ptr(),
                        );
                        acc = _mm512_add_ps(acc, v);
                    } else {
                        acc = _mm512_max_ps(_mm512_i32gather_ps::<4>(idx, src.as_ptr()), acc);
                    }
                }
            }
            if self.avg {
                let o0 = 16 * g;
                // SAFETY: divisors holds one per output; the group's outputs are o0..o0 + out.len().
                let divisors = unsafe { _mm512_maskz_loadu_ps(outputs, self.divisors.as_ptr().add(o0)) };
                acc = _mm512_div_ps(acc, divisors);
            }
            // SAFETY: out holds out.len() ≤ 16 floats.
            unsafe { _mm512_mask_storeu_ps(out.as_mut_ptr(), outputs, acc) };
        }
    }
}

/// Global pooling (one window over the whole unpadded plane) of a compact input through a
/// nearest map, without expanding it: every dense position reads one compact value, so the
/// average is `Σ countᵢ · vᵢ / divisor` over the compact plane (`countᵢ` the positions
/// reading value i) and the maximum is over the values some position reads. A plane costs
/// its compact length, not a gather per dense position and a pass over the expansion.
pub(super) struct MappedGlobal {
    /// Positions reading each compact value.
    counts: Vec<f32>,
    /// Whether every compact value is read (a map built from a mask: kept positions read
    /// themselves).
    every: bool,
    avg: bool,
}

impl MappedGlobal {
    /// The counts of `in_map` (`in_h · in_w` indices into planes of `p.in_plane` values),
    /// or `None` for maps other than nearest.
    ///
    /// # Panics
    /// A map shorter than the plane, or an index outside the compact plane (internal
    /// errors: the plan built both).
    #[track_caller]
    pub(super) fn new(p: &Pool2dParams, in_map: &[u32]) -> Option<Self> {
        if p.in_map_kind != 1 {
            return None;
        }
        let in_plane = (p.in_h * p.in_w) as usize;
        assert!(in_map.len() >= in_plane, "pool2d: nearest map shorter than the input plane");
        let mut counts = vec![0.0f32; p.in_plane as usize];
        for &i in &in_map[..in_plane] {
            *counts.get_mut(i as usize).expect("pool2d: nearest map index outside the compact plane") += 1.0;
        }
        let every = counts.iter().all(|&c| c > 0.0);
        Some(Self { counts, every, avg: p.mode == 1 })
    }

    /// The pooled value of one compact plane: the count-weighted sum over `divisor` (in
    /// interleaved lanes: a different order from the twin's, equal up to rounding), or
    /// the maximum of the values read (`v > m ? v : m`: the caller pools a plane holding a
    /// NaN on the twin).
    pub(super) fn pool(&self, src: &[f32], divisor: f32) -> f32 {
        const LANES: usize = 16;
        let src = &src[..self.counts.len()];
        if !self.every {
            // Values no position reads take no part (an unread NaN must not leak in).
            let read = src.iter().zip(&self.counts).filter(|(_, &c)| c > 0.0);
            return if self.avg {
                read.map(|(&v, &c)| c * v).sum::<f32>() / divisor
            } else {
                read.fold(f32::NEG_INFINITY, |m, (&v, _)| if v > m { v } else { m })
            };
        }
        if self.avg {
            let mut acc = [0.0f32; LANES];
            let (chunks, counts) = (src.chunks_exact(LANES), self.counts.chunks_exact(LANES));
            let tail: f32 = chunks.remainder().iter().zip(counts.remainder()).map(|(&v, &c)| c * v).sum();
            for (v, c) in chunks.zip(counts) {
                for ((a, &v), &c) in acc.iter_mut().zip(v).zip(c) {
                    *a += c * v;
                }
            }
            (acc.iter().sum::<f32>() + tail) / divisor
        } else {
            super::max_lanes(src)
        }
    }
}
