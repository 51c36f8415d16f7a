//! Mask strategies of METHOD.md §2 beyond the uniform one: the fractional-max-pooling
//! grid, the pooling structure of the next layer, user-supplied weights, and the
//! data-driven impact strategies (their weights come from `train::impact`).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::interp::MapKind;
use crate::mask::Mask;
use crate::rng::hash2;

/// How a perforated layer's mask is chosen.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum MaskStrategy {
    /// Seeded uniform-random positions.
    #[default]
    Uniform,
    /// The Cartesian product of two pseudorandom index sequences (Graham's fractional
    /// max-pooling): evenly spread rows and columns.
    Grid,
    /// Positions covered by the most windows of the pooling layer that reads the conv's
    /// output (ties broken by the seed); uniform when windows do not overlap.
    PoolingStructure,
    /// The positions with the largest user-supplied weights (one per output position,
    /// row-major).
    Weights {
        /// The weight of every output position.
        weights: Vec<f64>,
    },
    /// Impact (METHOD.md §2): the positions whose removal changes the loss least to first
    /// order, from `train::impact` on a data set. Applied like `Weights`.
    Impact {
        /// Mean Σ_t |∂L/∂V · V| of every output position.
        weights: Vec<f64>,
    },
    /// Iterative impact: impact recomputed on the current perforated network, positions
    /// already skipped weighted −1 so that each new mask is a subset of the previous one.
    IterativeImpact {
        /// Impact of every output position (−1 where already skipped).
        weights: Vec<f64>,
    },
}

impl MaskStrategy {
    /// The strategy's name, as plan files record it.
    pub fn name(&self) -> &'static str {
        match self {
            MaskStrategy::Uniform => "uniform",
            MaskStrategy::Grid => "grid",
            MaskStrategy::PoolingStructure => "pooling_structure",
            MaskStrategy::Weights { .. } => "weights",
            MaskStrategy::Impact { .. } => "impact",
            MaskStrategy::IterativeImpact { .. } => "iterative_impact",
        }
    }
}

/// What the skipped outputs of a perforated layer become.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interpolation {
    /// The value of the nearest computed position (METHOD.md §1).
    #[default]
    Nearest,
    /// The paper's *stride* baseline: no interpolation at all. With the grid strategy the
    /// computed positions form a `K_h × K_w` grid, which becomes the layer's (smaller)
    /// output map; later layers see that map.
    Stride,
    /// Skipped outputs are 0 (the reviewers' baseline: no interpolation, same map size).
    Zeros,
    /// The convex combination of the three vertices of the enclosing triangle of a
    /// Delaunay triangulation of the mask; nearest outside its convex hull.
    Barycentric,
}

impl Interpolation {
    /// The variant's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Interpolation::Nearest => "nearest",
            Interpolation::Stride => "stride",
            Interpolation::Zeros => "zeros",
            Interpolation::Barycentric => "barycentric",
        }
    }

    /// The interpolation map kind; `None` for the stride baseline (no map at all).
    pub fn map_kind(self) -> Option<MapKind> {
        match self {
            Interpolation::Nearest => Some(MapKind::Nearest),
            Interpolation::Stride => None,
            Interpolation::Zeros => Some(MapKind::Zeros),
            Interpolation::Barycentric => Some(MapKind::Barycentric),
        }
    }
}

/// The windows of a pooling layer over an `H×W` map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolWindows {
    /// Window `[height, width]`.
    pub kernel: [usize; 2],
    /// Stride `[height, width]`.
    pub stride: [usize; 2],
    /// Padding `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// Output size `[height, width]` (the number of windows along each axis).
    pub out: [usize; 2],
}

/// A seeded number in the open interval (0, 1).
fn unit(seed: u64, index: u64) -> f64 {
    ((hash2(seed, index) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// The pseudorandom index sequence `{⌈(size/k)(i + u)⌉ − 1 : i in 0..k}` of fractional
/// max-pooling: `k` distinct, increasing indices below `size`, one in each of `k` equal
/// intervals. Requires `1 <= k <= size` and `u` in (0, 1).
pub fn grid_sequence(size: usize, k: usize, u: f64) -> Vec<usize> {
    let step = size as f64 / k as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (0..k).map(|i| ((step * (i as f64 + u)).ceil() as usize).clamp(1, size) - 1).collect()
}

/// The offsets `(u, v)` a grid mask of `seed` uses for its rows and columns.
pub fn grid_offsets(seed: u64) -> (f64, f64) {
    (unit(seed, 0), unit(seed, 1))
}

impl Mask {
    /// The grid mask: rows `grid_sequence(H', K_h, u)` × columns `grid_sequence(W', K_w, v)`
    /// with `K_h = ⌊H'·√q⌋` and `K_w = ⌊W'·√q⌋` (at least 1), so `K = ⌊√(q·H'W')⌋` on square
    /// maps and proportional to the sides otherwise. The kept fraction is `K_h·K_w / H'W'`,
    /// within one row or column of `q`.
    pub fn grid(height: usize, width: usize, kept_fraction: f64, seed: u64) -> Result<Self> {
        crate::mask::kept_count(height, width, kept_fraction)?;
        let side = |n: usize| {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let k = (n as f64 * kept_fraction.sqrt() + 1e-9).floor() as usize;
            k.clamp(1, n)
        };
        let (u, v) = grid_offsets(seed);
        let rows = grid_sequence(height, side(height), u);
        let cols = grid_sequence(width, side(width), v);
        let positions = rows.iter().flat_map(|&y| cols.iter().map(move |&x| y * width + x));
        let positions = positions
            .map(|p| u32::try_from(p).map_err(|_| Error::TooLarge("map".into())))
            .collect::<Result<_>>()?;
        Mask::from_positions(height, width, positions)
    }

    /// The pooling-structure mask: the `⌊q·H'W'⌋` positions covered by the most windows of
    /// `pool`, ties broken by `seed`.
    pub fn pooling_structure(
        height: usize,
        width: usize,
        kept_fraction: f64,
        seed: u64,
        pool: &PoolWindows,
    ) -> Result<Self> {
        let weights = window_counts(height, width, pool)
            .into_iter()
            .enumerate()
            .map(|(p, count)| count as f64 + 0.5 * unit(seed, p as u64))
            .collect::<Vec<_>>();
        Mask::from_weights(height, width, kept_fraction, &weights)
    }
}

/// How many windows of `pool` contain each position of an `height×width` map.
pub fn window_counts(height: usize, width: usize, pool: &PoolWindows) -> Vec<u32> {
    let mut counts = vec![0u32; height * width];
    let [kh, kw] = pool.kernel;
    let [sh, sw] = pool.stride;
    let [pt, pl, _, _] = pool.pads;
    for oy in 0..pool.out[0] {
        let y0 = (oy * sh).saturating_sub(pt);
        let y1 = (oy * sh + kh).saturating_sub(pt).min(height);
        for ox in 0..pool.out[1] {
            let x0 = (ox * sw).saturating_sub(pl);
            let x1 = (ox * sw + kw).saturating_sub(pl).min(width);
            for y in y0..y1 {
                for c in &mut counts[y * width + x0..y * width + x1] {
                    *c += 1;
                }
            }
        }
    }
    counts
}
