//! Perforation masks and interpolation maps (METHOD.md §1), computed on the CPU with
//! integer arithmetic.

// Positions and indices are stored as u32: `check_map_size` guarantees every map has at
// most 2^32 positions before any cast below happens.
#![allow(clippy::cast_possible_truncation)]

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::interp::{InterpMap, MapKind};
use crate::rng::hash2;

/// The sorted, distinct linear positions `p = y·W' + x` of an `H'×W'` output map at
/// which a perforated convolution is evaluated ("non-perforated positions").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    height: usize,
    width: usize,
    positions: Vec<u32>,
}

/// Number of kept positions for a kept fraction: N = ⌊q·H'W'⌋, at least one.
///
/// `kept_fraction` must lie in (0, 1]. A tiny tolerance absorbs floating-point
/// representation error, so that q = 1/3 of a 9-position map keeps 3 positions.
pub fn kept_count(height: usize, width: usize, kept_fraction: f64) -> Result<usize> {
    check_map_size(height, width)?;
    if !(kept_fraction > 0.0 && kept_fraction <= 1.0) {
        return Err(Error::InvalidArgument(format!("kept fraction must lie in (0, 1], got {kept_fraction}")));
    }
    let total = height * width;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = (kept_fraction * total as f64 + 1e-9).floor() as usize;
    Ok(n.clamp(1, total))
}

pub(crate) fn check_map_size(height: usize, width: usize) -> Result<()> {
    if height == 0 || width == 0 {
        return Err(Error::Mask(format!("map size {height}x{width} is empty")));
    }
    if height.checked_mul(width).is_none_or(|n| n > u32::MAX as usize) {
        return Err(Error::TooLarge(format!("map {height}x{width} has more than 2^32 positions")));
    }
    Ok(())
}

impl Mask {
    /// Every position of an `height×width` map (no perforation).
    pub fn dense(height: usize, width: usize) -> Result<Self> {
        check_map_size(height, width)?;
        let total = u32::try_from(height * width).map_err(|_| Error::TooLarge("map".into()))?;
        Ok(Mask { height, width, positions: (0..total).collect() })
    }

    /// A seeded uniform-random mask keeping `⌊q·H'W'⌋` positions (at least one).
    pub fn uniform(height: usize, width: usize, kept_fraction: f64, seed: u64) -> Result<Self> {
        let n = kept_count(height, width, kept_fraction)?;
        let mut keyed: Vec<(u64, u32)> =
            (0..height * width).map(|p| (hash2(seed, p as u64), p as u32)).collect();
        Ok(Self::top_n(height, width, n, &mut keyed, |a, b| b.0.cmp(&a.0)))
    }

    /// The `⌊q·H'W'⌋` positions with the largest weights (ties: lower position first).
    ///
    /// `weights` has one entry per position in row-major order; every mask strategy of
    /// METHOD.md §2 reduces to this.
    pub fn from_weights(height: usize, width: usize, kept_fraction: f64, weights: &[f64]) -> Result<Self> {
        let n = kept_count(height, width, kept_fraction)?;
        if weights.len() != height * width {
            return Err(Error::shape("mask weights", height * width, weights.len()));
        }
        if let Some(p) = weights.iter().position(|w| w.is_nan()) {
            return Err(Error::Mask(format!("weight of position {p} is NaN")));
        }
        let mut keyed: Vec<(f64, u32)> = weights.iter().enumerate().map(|(p, &w)| (w, p as u32)).collect();
        Ok(Self::top_n(height, width, n, &mut keyed, |a, b| b.0.total_cmp(&a.0)))
    }

    fn top_n<K: Copy>(
        height: usize,
        width: usize,
        n: usize,
        keyed: &mut [(K, u32)],
        by_weight_desc: impl Fn(&(K, u32), &(K, u32)) -> std::cmp::Ordering,
    ) -> Self {
        let order = |a: &(K, u32), b: &(K, u32)| by_weight_desc(a, b).then(a.1.cmp(&b.1));
        if n < keyed.len() {
            keyed.select_nth_unstable_by(n, order);
        }
        let mut positions: Vec<u32> = keyed[..n].iter().map(|k| k.1).collect();
        positions.sort_unstable();
        Mask { height, width, positions }
    }

    /// A mask from explicit positions (any order); rejects duplicates and out-of-range entries.
    pub fn from_positions(height: usize, width: usize, mut positions: Vec<u32>) -> Result<Self> {
        check_map_size(height, width)?;
        if positions.is_empty() {
            return Err(Error::Mask("a mask must keep at least one position".into()));
        }
        positions.sort_unstable();
        if let Some(w) = positions.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::Mask(format!("position {} appears twice", w[0])));
        }
        let last = positions[positions.len() - 1] as usize;
        if last >= height * width {
            return Err(Error::Mask(format!(
                "position {last} is outside the {height}x{width} map ({} positions)",
                height * width
            )));
        }
        Ok(Mask { height, width, positions })
    }

    /// Map height H'.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Map width W'.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The kept positions, sorted ascending.
    pub fn positions(&self) -> &[u32] {
        &self.positions
    }

    /// Number of kept positions N.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Always false: a mask keeps at least one position.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Whether every position is kept.
    pub fn is_dense(&self) -> bool {
        self.len() == self.height * self.width
    }

    /// Kept fraction q = N / (H'W').
    pub fn kept_fraction(&self) -> f64 {
        self.len() as f64 / (self.height * self.width) as f64
    }

    /// The nearest-neighbour interpolation map of this mask.
    ///
    /// Entry `y·W' + x` holds the index (into the compact output, 0..N) of the kept
    /// position nearest to (y, x) in Euclidean distance; kept positions map to
    /// themselves. Equidistant candidates are chosen by a hash of `(tie_seed, position)`,
    /// so the map is reproducible and independent of evaluation order.
    pub fn interpolation_map(&self, tie_seed: u64) -> InterpMap {
        let (h, w) = (self.height, self.width);
        if self.is_dense() {
            // Every position is its own nearest (the positions are sorted and distinct), so
            // the map is the identity: no search (every conv layer starts out dense, and
            // training builds its layers every step).
            return InterpMap::new(h, w, self.len(), MapKind::Nearest, (0..self.len() as u32).collect());
        }
        // Kept columns of each row, and the compact index of each row's first entry.
        let mut row_start = vec![0usize; h + 1];
        for &p in &self.positions {
            row_start[p as usize / w + 1] += 1;
        }
        for y in 0..h {
            row_start[y + 1] += row_start[y];
        }
        let cols: Vec<u32> = self.positions.iter().map(|&p| p % w as u32).collect();
        let row = |y: usize| &cols[row_start[y]..row_start[y + 1]];

        let index = (0..h * w)
            .into_par_iter()
            .with_min_len(1024)
            .map(|p| {
                let (y, x) = (p / w, (p % w) as u32);
                let mut best = u64::MAX;
                let mut ties: Vec<u32> = Vec::new();
                let mut dy = 0usize;
                while dy < h && (dy as u64) * (dy as u64) <= best {
                    let rows = [y.checked_sub(dy), if dy > 0 { Some(y + dy) } else { None }];
                    for yy in rows.into_iter().flatten().filter(|&yy| yy < h) {
                        let xs = row(yy);
                        let at = xs.partition_point(|&c| c < x);
                        for k in [at.checked_sub(1), Some(at)].into_iter().flatten() {
                            let Some(&c) = xs.get(k) else { continue };
                            let dx = u64::from(c.abs_diff(x));
                            let d = (dy * dy) as u64 + dx * dx;
                            let idx = (row_start[yy] + k) as u32;
                            if d < best {
                                best = d;
                                ties.clear();
                                ties.push(idx);
                            } else if d == best && !ties.contains(&idx) {
                                ties.push(idx);
                            }
                        }
                    }
                    dy += 1;
                }
                if ties.len() == 1 {
                    ties[0]
                } else {
                    ties.sort_unstable();
                    ties[(hash2(tie_seed, p as u64) % ties.len() as u64) as usize]
                }
            })
            .collect();
        InterpMap::new(h, w, self.len(), MapKind::Nearest, index)
    }
}
