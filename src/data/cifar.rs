//! CIFAR-10 / CIFAR-100 binary batches: per record the label byte(s), then 3×32×32 bytes.

use std::path::Path;

use super::idx::read_maybe_gz;
use super::Dataset;
use crate::error::{Error, Result};

/// CIFAR binary batch files concatenated. `cifar100` selects the CIFAR-100 layout (a
/// coarse and a fine label byte; the fine label is used, 100 classes); otherwise
/// CIFAR-10 (one label byte, 10 classes). Pixels scaled to [0, 1].
pub fn load_cifar(files: &[&Path], cifar100: bool) -> Result<Dataset> {
    let (label_bytes, classes) = if cifar100 { (2, 100) } else { (1, 10) };
    let record = label_bytes + 3 * 32 * 32;
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for path in files {
        let bytes = read_maybe_gz(path)?;
        if bytes.is_empty() || bytes.len() % record != 0 {
            return Err(Error::Data(format!(
                "{}: {} bytes is not a whole number of {record}-byte CIFAR-{} records",
                path.display(),
                bytes.len(),
                classes
            )));
        }
        for (i, r) in bytes.chunks_exact(record).enumerate() {
            let label = r[label_bytes - 1];
            if usize::from(label) >= classes {
                return Err(Error::Data(format!(
                    "{}: record {i} has label {label}, not below {classes}",
                    path.display()
                )));
            }
            labels.push(u32::from(label));
            images.extend(r[label_bytes..].iter().map(|&p| f32::from(p) / 255.0));
        }
    }
    Dataset::new(3, 32, 32, classes, images, labels)
}
