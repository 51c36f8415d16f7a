//! A folder of images per class (`root/<class>/<image>.png|jpg`), decoded with the
//! `image` crate and resized to a fixed size.

use std::path::Path;

use super::Dataset;
use crate::error::{Error, Result};

/// Images under `root`, one subfolder per class (classes in sorted name order, so the
/// labels are reproducible), each resized to `height × width` (bilinear) and converted to
/// `channels` (1: luminance, 3: RGB), pixels scaled to [0, 1]. Returns the data set and
/// the class names.
pub fn load_image_folder(
    root: &Path,
    channels: usize,
    height: usize,
    width: usize,
) -> Result<(Dataset, Vec<String>)> {
    if channels != 1 && channels != 3 {
        return Err(Error::InvalidArgument(format!("image folders load 1 or 3 channels, not {channels}")));
    }
    let read = |p: &Path| {
        std::fs::read_dir(p).map_err(|e| Error::Data(format!("{}: cannot list: {e}", p.display())))
    };
    let mut classes: Vec<(String, std::path::PathBuf)> = read(root)?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    classes.sort();
    if classes.is_empty() {
        return Err(Error::Data(format!("{}: no class subfolders", root.display())));
    }
    let (w32, h32) = (u32::try_from(width).unwrap_or(u32::MAX), u32::try_from(height).unwrap_or(u32::MAX));
    let (mut images, mut labels) = (Vec::new(), Vec::new());
    for (label, (_, dir)) in classes.iter().enumerate() {
        let mut files: Vec<_> =
            read(dir)?.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
        files.sort();
        for f in files {
            let img = image::open(&f)
                .map_err(|e| Error::Data(format!("{}: not a readable image: {e}", f.display())))?;
            let img = img.resize_exact(w32, h32, image::imageops::FilterType::Triangle);
            if channels == 1 {
                images.extend(img.to_luma8().pixels().map(|p| f32::from(p.0[0]) / 255.0));
            } else {
                let rgb = img.to_rgb8();
                for c in 0..3 {
                    images.extend(rgb.pixels().map(|p| f32::from(p.0[c]) / 255.0));
                }
            }
            labels.push(u32::try_from(label).unwrap_or(u32::MAX));
        }
    }
    let names = classes.into_iter().map(|c| c.0).collect::<Vec<_>>();
    Ok((Dataset::new(channels, height, width, names.len(), images, labels)?, names))
}
