//! `.npy` tensors of any numeric dtype, read as `f32`.
//!
//! numpy's default float is float64 and images are often uint8, so refusing everything but
//! float32 turned ordinary files away. Floats and integers are converted value by value
//! (`as f32`: uint8 images keep their 0–255 range; nothing is rescaled); float16 is decoded
//! here (the `ndarray-npy` reader has no half type); booleans, complex numbers, strings and
//! records are refused by name. C and Fortran order and either byte order are read as
//! stored.

use std::path::Path;

use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use ndarray_npy::{ReadNpyExt, ReadableElement};

use crate::error::{Error, Result};

/// Reads the `.npy` file at `path` as an `f32` array of its shape.
///
/// # Errors
/// [`Error::Data`] naming the file when it is not a readable `.npy` file or its dtype is
/// not a real number type.
// Converting to f32 is the point: wide values round to the nearest float.
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
pub fn read_npy_f32(path: impl AsRef<Path>) -> Result<ArrayD<f32>> {
    let path = path.as_ref();
    let bytes =
        std::fs::read(path).map_err(|e| Error::Data(format!("{}: cannot read: {e}", path.display())))?;
    npy_f32_from_bytes(&bytes, &path.display().to_string())
}

/// [`read_npy_f32`] on the bytes of a `.npy` file; `name` is what errors call it.
///
/// # Errors
/// As [`read_npy_f32`].
#[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
pub fn npy_f32_from_bytes(bytes: &[u8], name: &str) -> Result<ArrayD<f32>> {
    let fail = |what: String| Error::Data(format!("{name}: {what}"));
    let header = Header::parse(bytes).map_err(fail)?;
    let descr = header.descr.as_str();
    // The type code after the byte-order character ('<', '>', '|' or '=').
    let code = descr.trim_start_matches(['<', '>', '|', '=']);
    let via =
        |r: std::result::Result<ArrayD<f32>, String>| r.map_err(|e| fail(format!("dtype '{descr}': {e}")));
    match code {
        "f4" => via(read_as::<f32>(bytes, |v| v)),
        "f8" => via(read_as::<f64>(bytes, |v| v as f32)),
        "f2" => header.half(bytes).map_err(fail),
        "i1" => via(read_as::<i8>(bytes, f32::from)),
        "i2" => via(read_as::<i16>(bytes, f32::from)),
        "i4" => via(read_as::<i32>(bytes, |v| v as f32)),
        "i8" => via(read_as::<i64>(bytes, |v| v as f32)),
        "u1" => via(read_as::<u8>(bytes, f32::from)),
        "u2" => via(read_as::<u16>(bytes, f32::from)),
        "u4" => via(read_as::<u32>(bytes, |v| v as f32)),
        "u8" => via(read_as::<u64>(bytes, |v| v as f32)),
        _ => Err(fail(format!(
            "dtype '{descr}' is not a real number type (floats and integers are read; convert with \
             x.astype(np.float32))"
        ))),
    }
}

fn read_as<T: ReadableElement + Copy>(
    bytes: &[u8],
    f: impl Fn(T) -> f32,
) -> std::result::Result<ArrayD<f32>, String> {
    let a = ArrayD::<T>::read_npy(bytes).map_err(|e| e.to_string())?;
    Ok(a.mapv(f))
}

/// The fields of a `.npy` header that this reader needs, and where the data starts.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
    data_start: usize,
}

impl Header {
    fn parse(bytes: &[u8]) -> std::result::Result<Header, String> {
        if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
            return Err("not a .npy file (no \\x93NUMPY magic)".into());
        }
        let (len, start) = match bytes[6] {
            1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
            2 | 3 if bytes.len() >= 12 => {
                let n = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
                (usize::try_from(n).map_err(|_| "header length overflows")?, 12)
            }
            v => return Err(format!("unsupported .npy format version {v}")),
        };
        let text = bytes.get(start..start + len).ok_or("header runs past the end of the file")?;
        let text = std::str::from_utf8(text).map_err(|_| "header is not text")?;
        let field = |key: &str| -> std::result::Result<&str, String> {
            let at = text.find(&format!("'{key}'")).ok_or(format!("header has no '{key}'"))?;
            let rest = text[at + key.len() + 2..].trim_start();
            Ok(rest.strip_prefix(':').ok_or(format!("malformed '{key}' in the header"))?.trim_start())
        };
        let descr = field("descr")?;
        let descr = descr
            .strip_prefix('\'')
            .and_then(|d| d.split('\'').next())
            .ok_or("the dtype is not a simple type (a record or sub-array)")?
            .to_string();
        let fortran_order = field("fortran_order")?.starts_with("True");
        let shape = field("shape")?;
        let shape = shape.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or("malformed shape")?;
        let shape = shape
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<usize>().map_err(|_| format!("malformed shape entry '{s}'")))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Header { descr, fortran_order, shape, data_start: start + len })
    }

    /// A float16 array: the data decoded value by value.
    fn half(&self, bytes: &[u8]) -> std::result::Result<ArrayD<f32>, String> {
        let n = self.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("shape overflows")?;
        let data = bytes.get(self.data_start..).ok_or("no data")?;
        if data.len() / 2 < n {
            return Err(format!("{} bytes of float16 data for {n} values", data.len()));
        }
        let big = self.descr.starts_with('>');
        let values: Vec<f32> = data[..2 * n]
            .chunks_exact(2)
            .map(|b| {
                half_to_f32(if big {
                    u16::from_be_bytes([b[0], b[1]])
                } else {
                    u16::from_le_bytes([b[0], b[1]])
                })
            })
            .collect();
        let shape = IxDyn(&self.shape);
        let array = if self.fortran_order {
            ArrayD::from_shape_vec(shape.f(), values)
        } else {
            ArrayD::from_shape_vec(shape, values)
        };
        array.map_err(|e| e.to_string())
    }
}

/// An IEEE 754 binary16 value as f32 (exact: every half is a float).
fn half_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match (exp, mant) {
        (0, 0) => sign,
        // Subnormal: mant · 2^-24.
        (0, m) => {
            // Subnormal: m · 2^-24.
            let v = m as f32 / 16_777_216.0;
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, m) => sign | 0x7fc0_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}
