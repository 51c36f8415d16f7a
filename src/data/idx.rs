//! IDX files (MNIST, Fashion-MNIST): big-endian header, then unsigned bytes; gzip or raw.

use std::io::Read;
use std::path::Path;

use super::Dataset;
use crate::error::{Error, Result};

/// Reads a whole file, gunzipping it when it starts with the gzip magic bytes.
pub(super) fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw =
        std::fs::read(path).map_err(|e| Error::Data(format!("{}: cannot read: {e}", path.display())))?;
    gunzip_if_gzip(raw, path)
}

/// The bytes, gunzipped when they start with the gzip magic bytes.
fn gunzip_if_gzip(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| Error::Data(format!("{}: corrupt gzip data: {e}", path.display())))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Parses an IDX array of unsigned bytes: its dimensions and its data.
fn parse(path: &Path, bytes: &[u8]) -> Result<(Vec<usize>, Vec<u8>)> {
    let bad =
        |what: String| Error::Data(format!("{}: not an IDX file of unsigned bytes: {what}", path.display()));
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad("missing the 0x0000 magic prefix".into()));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!("element type 0x{:02x} (only 0x08, unsigned byte, is supported)", bytes[2])));
    }
    let rank = usize::from(bytes[3]);
    let header = 4 + 4 * rank;
    if rank == 0 || bytes.len() < header {
        return Err(bad(format!("header of rank {rank} is truncated")));
    }
    let dims: Vec<usize> = (0..rank)
        .map(|i| u32::from_be_bytes(bytes[4 + 4 * i..8 + 4 * i].try_into().expect("4 bytes")) as usize)
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad("size overflows".into()))?;
    if bytes.len() - header != count {
        return Err(bad(format!(
            "dimensions {dims:?} need {count} bytes of data, the file has {}",
            bytes.len() - header
        )));
    }
    Ok((dims, bytes[header..].to_vec()))
}

/// The images of an IDX image file alone (unlabelled: every label 0, one class), for
/// classifying them.
pub fn load_idx_images(images: &Path) -> Result<Dataset> {
    idx_images_from_bytes(read_maybe_gz(images)?, images)
}

/// [`load_idx_images`] on the bytes of an IDX image file (gzip-compressed or raw); `name`
/// is what errors call it.
///
/// # Errors
/// [`Error::Data`] when the bytes are not an IDX array of unsigned bytes of images.
pub fn idx_images_from_bytes(bytes: Vec<u8>, name: &Path) -> Result<Dataset> {
    let images = name;
    let (dims, pixels) = parse(images, &gunzip_if_gzip(bytes, images)?)?;
    let (n, c, h, w) = image_dims(images, &dims)?;
    Dataset::new(c, h, w, 1, pixels.iter().map(|&p| f32::from(p) / 255.0).collect(), vec![0; n])
}

fn image_dims(images: &Path, dims: &[usize]) -> Result<(usize, usize, usize, usize)> {
    let (n, c, h, w) = match dims[..] {
        [n, h, w] => (n, 1, h, w),
        [n, c, h, w] => (n, c, h, w),
        _ => {
            return Err(Error::Data(format!(
                "{}: images must be [n, h, w] or [n, c, h, w], got {dims:?}",
                images.display()
            )))
        }
    };
    // Empty images would let the count of images (and its labels) grow without data.
    if c == 0 || h == 0 || w == 0 {
        return Err(Error::Data(format!("{}: images of shape {dims:?} hold no pixels", images.display())));
    }
    Ok((n, c, h, w))
}

/// An IDX image file (`[n, h, w]` or `[n, c, h, w]`) and its IDX label file (`[n]`),
/// gzip-compressed or raw; pixels scaled to [0, 1], classes = largest label + 1 (at least 10).
pub fn load_idx(images: &Path, labels: &Path) -> Result<Dataset> {
    let (dims, pixels) = parse(images, &read_maybe_gz(images)?)?;
    let (ldims, labs) = parse(labels, &read_maybe_gz(labels)?)?;
    let (n, c, h, w) = image_dims(images, &dims)?;
    if ldims != [n] {
        return Err(Error::Data(format!(
            "{} holds {n} images but {} has shape {ldims:?}",
            images.display(),
            labels.display()
        )));
    }
    let classes = labs.iter().map(|&l| usize::from(l) + 1).max().unwrap_or(0).max(10);
    let images = pixels.iter().map(|&p| f32::from(p) / 255.0).collect();
    Dataset::new(c, h, w, classes, images, labs.iter().map(|&l| u32::from(l)).collect())
}
