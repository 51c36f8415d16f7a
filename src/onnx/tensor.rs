//! Initializer tensors: dims and values as f32 (or i64 for shapes), from typed fields,
//! raw little-endian bytes, or external data files.

// Double-precision initializers are narrowed to f32 on purpose: every kernel computes in f32.
#![allow(clippy::cast_possible_truncation)]

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::proto::{data_type, TensorProto, EXTERNAL};
use crate::error::{Error, Result};

/// A constant tensor of the graph (an initializer, a Constant node, or a value folded at
/// import). Integer tensors keep `ints` (with [`BATCH`] and [`UNKNOWN`] for dimensions that
/// depend on the batch size) and mirror them in `floats`.
#[derive(Clone, Debug)]
pub(crate) struct Constant {
    pub dims: Vec<usize>,
    pub floats: Vec<f32>,
    pub ints: Vec<i64>,
    pub int: bool,
    /// For an integer tensor computed from the batch index (torch.export's whole-batch
    /// gathers): its first axis is the batch (size 1 in `dims`), and image n holds
    /// `ints + n · stride`.
    pub batch_stride: Option<i64>,
}

/// An integer element equal to the (symbolic) batch size: a folded `Shape` of an
/// activation holds it in place of the first dimension.
pub(crate) const BATCH: i64 = i64::MIN;
/// An integer element computed from the batch size in a way the importer does not track.
pub(crate) const UNKNOWN: i64 = i64::MIN + 1;
/// `k · N` for `k ≥ 2` is `MULTIPLES + k` (attention merges the batch with the heads).
const MULTIPLES: i64 = i64::MIN + 2;
/// Largest tracked factor of a batch multiple.
const MAX_FACTOR: i64 = 1 << 40;

/// The element for `k · N` (`k ≥ 1`; [`UNKNOWN`] past the tracked range).
pub(crate) fn batch_times(k: i64) -> i64 {
    match k {
        1 => BATCH,
        2..MAX_FACTOR => MULTIPLES + k,
        _ => UNKNOWN,
    }
}

/// `Some(k)` when `v` is `k · N`.
pub(crate) fn batch_factor(v: i64) -> Option<i64> {
    match v {
        BATCH => Some(1),
        _ if (MULTIPLES + 2..MULTIPLES + MAX_FACTOR).contains(&v) => Some(v - MULTIPLES),
        _ => None,
    }
}

/// Whether `v` depends on the batch size ([`BATCH`], a multiple of it, or [`UNKNOWN`]).
pub(crate) fn symbolic(v: i64) -> bool {
    v < MULTIPLES + MAX_FACTOR
}

impl Constant {
    /// An integer tensor.
    pub(crate) fn from_ints(dims: Vec<usize>, ints: Vec<i64>) -> Self {
        let floats = ints.iter().map(|&v| if symbolic(v) { f32::NAN } else { v as f32 }).collect();
        Constant { dims, floats, ints, int: true, batch_stride: None }
    }

    /// A floating-point tensor.
    pub(crate) fn from_floats(dims: Vec<usize>, floats: Vec<f32>) -> Self {
        Constant { dims, floats, ints: Vec::new(), int: false, batch_stride: None }
    }

    /// The values as integers (a float tensor's truncated; symbolic sizes kept).
    pub(crate) fn to_ints(&self) -> Vec<i64> {
        if self.int {
            self.ints.clone()
        } else {
            self.floats.iter().map(|&f| f as i64).collect()
        }
    }

    /// Elements.
    pub(crate) fn len(&self) -> usize {
        self.floats.len()
    }
}

fn fail(name: &str, message: impl std::fmt::Display) -> Error {
    Error::Model(format!("initializer '{name}': {message}"))
}

/// Reads `length` bytes at `offset` of the external file `location` (relative to `dir`,
/// which it may not leave).
fn external(t: &TensorProto, dir: Option<&Path>) -> Result<Vec<u8>> {
    let entries: HashMap<&str, &str> =
        t.external_data.iter().map(|e| (e.key.as_str(), e.value.as_str())).collect();
    let location =
        entries.get("location").ok_or_else(|| fail(&t.name, "external data without a location"))?;
    let dir = dir.ok_or_else(|| {
        fail(&t.name, "external data needs the model's folder (load the model from a file)")
    })?;
    let relative = Path::new(location);
    if relative.is_absolute() || relative.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(fail(&t.name, format!("external data location '{location}' leaves the model's folder")));
    }
    let parse = |key: &str| -> Result<Option<u64>> {
        entries
            .get(key)
            .map(|v| v.parse::<u64>().map_err(|_| fail(&t.name, format!("bad external {key} '{v}'"))))
            .transpose()
    };
    let (offset, length) = (parse("offset")?.unwrap_or(0), parse("length")?);
    let path = dir.join(relative);
    let mut file = std::fs::File::open(&path)
        .map_err(|e| fail(&t.name, format!("cannot open external data {}: {e}", path.display())))?;
    let size = file.metadata().map_err(|e| fail(&t.name, e))?.len();
    let length = length.unwrap_or(size.saturating_sub(offset));
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(fail(
            &t.name,
            format!(
                "external data {}..+{length} lies past the end of {} ({size} bytes)",
                offset,
                path.display()
            ),
        ));
    }
    file.seek(SeekFrom::Start(offset)).map_err(|e| fail(&t.name, e))?;
    let mut bytes = vec![0u8; usize::try_from(length).map_err(|_| fail(&t.name, "external data too large"))?];
    file.read_exact(&mut bytes).map_err(|e| fail(&t.name, e))?;
    Ok(bytes)
}

impl Constant {
    /// Decodes an initializer (float, double, int32 or int64 data).
    pub(crate) fn from_proto(t: &TensorProto, dir: Option<&Path>) -> Result<Self> {
        let dims: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| fail(&t.name, format!("negative dimension {d}"))))
            .collect::<Result<_>>()?;
        let count = dims
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| fail(&t.name, "too many elements"))?;
        let raw = if t.data_location == EXTERNAL { external(t, dir)? } else { t.raw_data.clone() };
        let (mut floats, mut ints) = (Vec::new(), Vec::new());
        let width = match t.data_type {
            data_type::FLOAT | data_type::INT32 => 4,
            data_type::INT64 | data_type::DOUBLE => 8,
            data_type::BOOL => 1,
            other => {
                return Err(fail(
                    &t.name,
                    format!("data type {other} is not supported (float, double, int32, int64, bool are)"),
                ))
            }
        };
        if !raw.is_empty() {
            if raw.len() != count * width {
                return Err(fail(
                    &t.name,
                    format!("{} data bytes for {count} elements of {width} bytes", raw.len()),
                ));
            }
            match t.data_type {
                data_type::FLOAT => {
                    floats =
                        raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
                }
                data_type::DOUBLE => {
                    floats = raw
                        .chunks_exact(8)
                        .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32)
                        .collect()
                }
                data_type::BOOL => ints = raw.iter().map(|&b| i64::from(b != 0)).collect(),
                data_type::INT32 => {
                    ints = raw
                        .chunks_exact(4)
                        .map(|b| i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                        .collect()
                }
                _ => {
                    ints = raw
                        .chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")))
                        .collect()
                }
            }
        } else {
            match t.data_type {
                data_type::FLOAT => floats = t.float_data.clone(),
                data_type::DOUBLE => floats = t.double_data.iter().map(|&v| v as f32).collect(),
                data_type::INT32 | data_type::BOOL => {
                    ints = t.int32_data.iter().map(|&v| i64::from(v)).collect()
                }
                _ => ints = t.int64_data.clone(),
            }
            let got = floats.len().max(ints.len());
            if got != count {
                return Err(fail(&t.name, format!("{got} values for dims {dims:?} ({count} elements)")));
            }
        }
        let int = !matches!(t.data_type, data_type::FLOAT | data_type::DOUBLE);
        if int {
            floats = ints.iter().map(|&v| v as f32).collect();
        }
        Ok(Constant { dims, floats, ints, int, batch_stride: None })
    }
}
