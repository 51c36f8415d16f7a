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
//! as taps ([`MappedWindows::dense`]).

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
        Self { offsets, taps, divisors, avg, compact: compact as usize }
    }

    /// Pools one compact plane `src` (`in_plane` values) into `dst` (every output): the
    /// average in the twin's order; the maximum as `v > m ? v : m` from −inf, which drops
    /// NaN (the caller pools a plane holding one on the twin).
    pub(super) fn pool(&self, src: &[f32], dst: &mut [f32]) {
        let n = self.offsets.len() - 1;
        assert!(dst.len() >= n, "pool2d: output plane shorter than the windows");
        assert!(src.len() >= self.compact, "pool2d: compact plane shorter than its map's indices");
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
