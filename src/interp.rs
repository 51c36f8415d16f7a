//! Interpolation maps: how each of the H'×W' positions of a perforated output is read
//! from the N computed (compact) values. Nearest neighbour (METHOD.md §1), zeros (the
//! skipped outputs are 0) and barycentric (the convex combination of the three vertices of
//! the enclosing triangle of a Delaunay triangulation of the mask).
//!
//! One table layout serves the CPU twins and the shaders (`shaders/read_mapped.wgsl`,
//! [`crate::cpu::read_mapped`]); [`MapKind::code`] tells them which layout it is.

// Positions and compact indices are u32: `check_map_size` bounds every map by 2^32.
#![allow(clippy::cast_possible_truncation)]

use std::any::Any;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use spade::{DelaunayTriangulation, HasPosition, Point2, Triangulation};

use crate::error::{Error, Result};
use crate::mask::{check_map_size, Mask};

/// A table entry of a [`MapKind::Zeros`] map for a skipped position: it reads as 0.
pub const ZERO_TAP: u32 = u32::MAX;

/// How skipped positions are filled, and so the layout of [`InterpMap::table`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MapKind {
    /// One word per position: the compact index of the nearest kept position.
    #[default]
    Nearest,
    /// One word per position: its own compact index when kept, else [`ZERO_TAP`].
    Zeros,
    /// Six words per position: three compact indices, then the bits of their three `f32`
    /// weights (non-negative, summing to 1).
    Barycentric,
}

impl MapKind {
    /// The kind's code in the kernels' `Params` (0 there means "no map": a dense input).
    pub fn code(self) -> u32 {
        match self {
            MapKind::Nearest => 1,
            MapKind::Zeros => 2,
            MapKind::Barycentric => 3,
        }
    }

    /// Table words per position.
    pub fn words(self) -> usize {
        match self {
            MapKind::Nearest | MapKind::Zeros => 1,
            MapKind::Barycentric => 6,
        }
    }

    /// The kind's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            MapKind::Nearest => "nearest",
            MapKind::Zeros => "zeros",
            MapKind::Barycentric => "barycentric",
        }
    }
}

/// An interpolation map ℓ over an H'×W' output reading from a compact tensor of N
/// values per plane.
#[derive(Clone, Debug, PartialEq)]
pub struct InterpMap {
    height: usize,
    width: usize,
    compact_len: usize,
    kind: MapKind,
    table: Vec<u32>,
    /// Tables kernels derive from this map ([`InterpMap::derived`]).
    derived: Derived,
}

/// Tables a kernel builds from a map once and reuses on every run, keyed by the kernel's
/// name and parameter bytes. They live and die with their map, so none is ever read for
/// another map; a clone of the map starts empty; maps compare equal whatever they hold.
#[derive(Default)]
struct Derived(Mutex<Vec<(Vec<u8>, DerivedTable)>>);

/// One derived table, of whatever type its kernel made.
type DerivedTable = Arc<dyn Any + Send + Sync>;

/// Derived tables kept per map: a few layers read one map, at a few batch sizes.
const DERIVED_MAX: usize = 16;

impl Clone for Derived {
    fn clone(&self) -> Self {
        Derived::default()
    }
}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.0.lock().map_or(0, |d| d.len());
        write!(f, "{n} derived tables")
    }
}

impl PartialEq for Derived {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl InterpMap {
    /// What `build` makes of this map for `key` (a kernel's name and parameter bytes):
    /// built on the first call with that key, shared by every later one (the oldest dropped
    /// past [`DERIVED_MAX`] keys). For tables that cost more to build than a run of the
    /// kernel that reads them (a pooling layer's windows through the map: 0.9 ms per call
    /// for VGG-11's first pool at q = 1/2, batch 1).
    pub(crate) fn derived<T: Any + Send + Sync>(&self, key: &[u8], build: impl FnOnce() -> T) -> Arc<T> {
        let mut entries = self.derived.0.lock().unwrap_or_else(PoisonError::into_inner);
        let found = entries.iter().find(|(k, _)| k == key).map(|(_, v)| Arc::clone(v));
        if let Some(v) = found.and_then(|v| v.downcast::<T>().ok()) {
            return v;
        }
        let v = Arc::new(build());
        entries.retain(|(k, _)| k != key);
        if entries.len() >= DERIVED_MAX {
            entries.remove(0);
        }
        entries.push((key.to_vec(), Arc::clone(&v) as DerivedTable));
        v
    }

    /// Internal constructor; the caller guarantees the table's layout and bounds.
    #[track_caller]
    pub(crate) fn new(
        height: usize,
        width: usize,
        compact_len: usize,
        kind: MapKind,
        table: Vec<u32>,
    ) -> Self {
        assert_eq!(table.len(), height * width * kind.words(), "interpolation table length");
        InterpMap { height, width, compact_len, kind, table, derived: Derived::default() }
    }

    /// A nearest-style map from explicit indices; every entry must be below `compact_len`.
    pub fn from_indices(height: usize, width: usize, compact_len: usize, index: Vec<u32>) -> Result<Self> {
        check_map_size(height, width)?;
        if index.len() != height * width {
            return Err(Error::shape("interpolation map", height * width, index.len()));
        }
        if let Some((p, &i)) = index.iter().enumerate().find(|(_, &i)| i as usize >= compact_len) {
            return Err(Error::Mask(format!(
                "interpolation map entry {p} points to compact index {i}, but only {compact_len} exist"
            )));
        }
        Ok(InterpMap::new(height, width, compact_len, MapKind::Nearest, index))
    }

    /// Map height.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Map width.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Length N of the compact tensor the map reads from.
    pub fn compact_len(&self) -> usize {
        self.compact_len
    }

    /// How skipped positions are filled.
    pub fn kind(&self) -> MapKind {
        self.kind
    }

    /// The raw table the kernels read, laid out as [`MapKind`] describes.
    pub fn table(&self) -> &[u32] {
        &self.table
    }

    /// The one-word-per-position table of a nearest map (its compact indices); `None`
    /// for other kinds.
    pub fn indices(&self) -> Option<&[u32]> {
        (self.kind == MapKind::Nearest).then_some(&self.table[..])
    }

    /// The compact indices and weights that make up position `p` (row-major): one tap of
    /// weight 1 (nearest, kept zeros), none (skipped zeros) or three (barycentric, as
    /// stored: a tap of weight 0 is listed but contributes nothing, in every kernel).
    pub fn taps(&self, p: usize) -> Vec<(usize, f32)> {
        match self.kind {
            MapKind::Nearest => vec![(self.table[p] as usize, 1.0)],
            MapKind::Zeros if self.table[p] == ZERO_TAP => vec![],
            MapKind::Zeros => vec![(self.table[p] as usize, 1.0)],
            MapKind::Barycentric => {
                let t = &self.table[6 * p..6 * p + 6];
                (0..3).map(|k| (t[k] as usize, f32::from_bits(t[3 + k]))).collect()
            }
        }
    }

    /// The dense plane this map makes of one compact plane (a reference for tests and
    /// small tools; the kernels use the table directly).
    pub fn expand(&self, compact: &[f32]) -> Vec<f32> {
        (0..self.height * self.width)
            .map(|p| self.taps(p).iter().filter(|t| t.1 != 0.0).map(|&(i, w)| w * compact[i]).sum())
            .collect()
    }
}

/// A mask position as a triangulation vertex, carrying its compact index.
struct Vertex {
    y: i64,
    x: i64,
    index: u32,
}

impl HasPosition for Vertex {
    type Scalar = f64;

    #[allow(clippy::cast_precision_loss)]
    fn position(&self) -> Point2<f64> {
        Point2::new(self.x as f64, self.y as f64)
    }
}

impl Mask {
    /// The interpolation map of kind `kind` for this mask (`tie_seed` resolves equidistant
    /// neighbours of nearest maps and of barycentric positions outside the hull).
    pub fn map(&self, kind: MapKind, tie_seed: u64) -> Result<InterpMap> {
        match kind {
            MapKind::Nearest => Ok(self.interpolation_map(tie_seed)),
            MapKind::Zeros => Ok(self.zeros_map()),
            MapKind::Barycentric => self.barycentric_map(tie_seed),
        }
    }

    /// The map that leaves every skipped position 0.
    pub fn zeros_map(&self) -> InterpMap {
        let mut table = vec![ZERO_TAP; self.height() * self.width()];
        for (i, &p) in self.positions().iter().enumerate() {
            table[p as usize] = i as u32;
        }
        InterpMap::new(self.height(), self.width(), self.len(), MapKind::Zeros, table)
    }

    /// The barycentric map: each position inside the convex hull of the kept positions
    /// is the convex combination of the vertices of its enclosing triangle in a Delaunay
    /// triangulation (spade) of the kept positions; positions outside the hull (and every
    /// position when the kept positions are collinear) take their nearest kept value.
    ///
    /// Containment is decided with exact integer arithmetic on the lattice, so a position
    /// on an edge belongs to a triangle and its weights are never negative.
    pub fn barycentric_map(&self, tie_seed: u64) -> Result<InterpMap> {
        let (h, w) = (self.height(), self.width());
        let vertices: Vec<Vertex> = self
            .positions()
            .iter()
            .enumerate()
            .map(|(i, &p)| Vertex { y: (p as usize / w) as i64, x: (p as usize % w) as i64, index: i as u32 })
            .collect();
        let tri = DelaunayTriangulation::<Vertex>::bulk_load(vertices)
            .map_err(|e| Error::Mask(format!("triangulating the mask failed: {e:?}")))?;
        let mut table = vec![0u32; 6 * h * w];
        let mut covered = vec![false; h * w];
        for face in tri.inner_faces() {
            let [a, b, c] = face.vertices();
            let [a, b, c] = [a.data(), b.data(), c.data()];
            let det = (b.y - c.y) * (a.x - c.x) + (c.x - b.x) * (a.y - c.y);
            if det == 0 {
                continue;
            }
            let sign = det.signum();
            let (y0, y1) = (a.y.min(b.y).min(c.y), a.y.max(b.y).max(c.y));
            let (x0, x1) = (a.x.min(b.x).min(c.x), a.x.max(b.x).max(c.x));
            for y in y0..=y1 {
                for x in x0..=x1 {
                    let p = y as usize * w + x as usize;
                    if covered[p] {
                        continue;
                    }
                    let l1 = sign * ((b.y - c.y) * (x - c.x) + (c.x - b.x) * (y - c.y));
                    let l2 = sign * ((c.y - a.y) * (x - c.x) + (a.x - c.x) * (y - c.y));
                    let l3 = sign * det - l1 - l2;
                    if l1 < 0 || l2 < 0 || l3 < 0 {
                        continue;
                    }
                    #[allow(clippy::cast_precision_loss)]
                    let weight = |l: i64| ((l as f64) / (sign * det) as f64) as f32;
                    table[6 * p..6 * p + 6].copy_from_slice(&[
                        a.index,
                        b.index,
                        c.index,
                        weight(l1).to_bits(),
                        weight(l2).to_bits(),
                        weight(l3).to_bits(),
                    ]);
                    covered[p] = true;
                }
            }
        }
        if covered.iter().any(|&c| !c) {
            let nearest = self.interpolation_map(tie_seed);
            for p in (0..h * w).filter(|&p| !covered[p]) {
                let i = nearest.table()[p];
                table[6 * p..6 * p + 6].copy_from_slice(&[i, i, i, 1f32.to_bits(), 0, 0]);
            }
        }
        Ok(InterpMap::new(h, w, self.len(), MapKind::Barycentric, table))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A derived table is built once per key and shared; another key builds its own; a
    /// clone of the map starts without them and still equals the map.
    #[test]
    fn derived_tables_are_built_once_per_key() {
        let map = InterpMap::from_indices(1, 3, 2, vec![0, 1, 1]).unwrap();
        let builds = std::cell::Cell::new(0);
        let build = |v: u32| {
            builds.set(builds.get() + 1);
            v
        };
        let a = map.derived(b"k1", || build(7));
        let b = map.derived(b"k1", || build(8));
        assert!(Arc::ptr_eq(&a, &b) && *b == 7 && builds.get() == 1);
        assert_eq!(*map.derived(b"k2", || build(9)), 9);
        assert_eq!(builds.get(), 2);
        assert_eq!(*map.clone().derived(b"k1", || build(10)), 10);
        assert_eq!(map.clone(), map);
    }
}
