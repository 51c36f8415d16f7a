//! Labelled image data sets held in memory as `f32` NCHW: IDX (MNIST, Fashion-MNIST),
//! CIFAR-10/100 binary, folders of images per class, with normalisation, resizing, subsets and seeded shuffling.

mod cifar;
#[cfg(feature = "images")]
mod folder;
mod idx;
mod npy;

use std::path::{Path, PathBuf};

pub use cifar::load_cifar;
#[cfg(feature = "images")]
pub use folder::load_image_folder;
pub use idx::{idx_images_from_bytes, load_idx, load_idx_images};
pub use npy::{npy_f32_from_bytes, read_npy_f32};

use crate::error::{Error, Result};
use crate::rng::hash2;

/// Where the Debian package `dataset-fashion-mnist` installs Fashion-MNIST.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Fashion-MNIST's ten class names, by label.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// Images `[n, channels, height, width]` with one label each.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// Channels per image.
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Number of classes (labels lie in `0..classes`).
    pub classes: usize,
    /// Pixel values, image after image, NCHW.
    pub images: Vec<f32>,
    /// One label per image.
    pub labels: Vec<u32>,
}

impl Dataset {
    /// A data set from parts; checks that the sizes and labels agree.
    pub fn new(
        channels: usize,
        height: usize,
        width: usize,
        classes: usize,
        images: Vec<f32>,
        labels: Vec<u32>,
    ) -> Result<Self> {
        let per = channels.checked_mul(height).and_then(|v| v.checked_mul(width)).unwrap_or(0);
        if per == 0 || classes == 0 {
            return Err(Error::Data(format!(
                "image shape {channels}x{height}x{width} is empty or overflows, or there are no classes"
            )));
        }
        if Some(images.len()) != per.checked_mul(labels.len()) {
            return Err(Error::Data(format!(
                "{} labels need {} pixel values of {channels}x{height}x{width} images, got {}",
                labels.len(),
                per.saturating_mul(labels.len()),
                images.len()
            )));
        }
        if let Some((i, &l)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= classes) {
            return Err(Error::Data(format!("label {l} of image {i} is not below {classes} classes")));
        }
        Ok(Dataset { channels, height, width, classes, images, labels })
    }

    /// Checks that the images have the shape `net` takes.
    pub fn check_fits(&self, net: &crate::network::Network) -> Result<()> {
        let s = &net.input;
        if [s.channels, s.height, s.width] != [self.channels, self.height, self.width] {
            return Err(Error::Data(format!(
                "the data has {}x{}x{} images but '{}' takes {}x{}x{}",
                self.channels, self.height, self.width, net.name, s.channels, s.height, s.width
            )));
        }
        Ok(())
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Image `i`, CHW.
    pub fn image(&self, i: usize) -> &[f32] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// The images at `indices` (in that order) and their labels, ready for a batch.
    pub fn gather(&self, indices: &[usize]) -> (Vec<f32>, Vec<u32>) {
        let mut x = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            x.extend_from_slice(self.image(i));
        }
        (x, indices.iter().map(|&i| self.labels[i]).collect())
    }

    /// The images at `indices` as a new data set.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let (images, labels) = self.gather(indices);
        Dataset { images, labels, ..self.empty_like() }
    }

    /// The first `n` images (all when fewer).
    pub fn take(&self, n: usize) -> Dataset {
        self.subset(&(0..n.min(self.len())).collect::<Vec<_>>())
    }

    fn empty_like(&self) -> Dataset {
        Dataset { images: Vec::new(), labels: Vec::new(), ..*self }
    }

    /// A seeded permutation of `0..len` (the same for the same seed on every machine).
    pub fn shuffled(&self, seed: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by_key(|&i| hash2(seed, i as u64));
        order
    }

    /// Per-channel mean and standard deviation over all images.
    pub fn channel_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let plane = self.height * self.width;
        let mut sums = vec![(0.0f64, 0.0f64); self.channels];
        for img in self.images.chunks_exact(self.image_len()) {
            for (c, s) in sums.iter_mut().enumerate() {
                for &v in &img[c * plane..(c + 1) * plane] {
                    s.0 += f64::from(v);
                    s.1 += f64::from(v) * f64::from(v);
                }
            }
        }
        let n = (self.len() * plane).max(1) as f64;
        #[allow(clippy::cast_possible_truncation)]
        sums.iter()
            .map(|&(s, q)| {
                let mean = s / n;
                ((mean) as f32, (q / n - mean * mean).max(0.0).sqrt().max(1e-6) as f32)
            })
            .unzip()
    }

    /// `x ← (x − mean[c]) / std[c]` per channel.
    pub fn normalize(&mut self, mean: &[f32], std: &[f32]) -> Result<()> {
        if mean.len() != self.channels || std.len() != self.channels {
            return Err(Error::shape("normalisation mean/std", self.channels, mean.len().max(std.len())));
        }
        if let Some(s) = std.iter().find(|s| s.is_nan() || **s <= 0.0) {
            return Err(Error::InvalidArgument(format!("standard deviation {s} is not positive")));
        }
        let plane = self.height * self.width;
        let n = self.image_len();
        for img in self.images.chunks_exact_mut(n) {
            for c in 0..self.channels {
                img[c * plane..(c + 1) * plane].iter_mut().for_each(|v| *v = (*v - mean[c]) / std[c]);
            }
        }
        Ok(())
    }

    /// Every image resized to `height × width` (bilinear, align-corners off, as
    /// PyTorch's `interpolate(mode="bilinear")`).
    pub fn resized(&self, height: usize, width: usize) -> Result<Dataset> {
        if height == 0 || width == 0 {
            return Err(Error::InvalidArgument(format!("cannot resize to {height}x{width}")));
        }
        let (h, w) = (self.height, self.width);
        let src = |o: usize, out: usize, inp: usize| {
            let s = ((o as f64 + 0.5) * inp as f64 / out as f64 - 0.5).max(0.0);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let i0 = (s.floor() as usize).min(inp - 1);
            let i1 = (i0 + 1).min(inp - 1);
            #[allow(clippy::cast_possible_truncation)]
            let f = (s - i0 as f64) as f32;
            (i0, i1, f)
        };
        let ys: Vec<_> = (0..height).map(|y| src(y, height, h)).collect();
        let xs: Vec<_> = (0..width).map(|x| src(x, width, w)).collect();
        let mut images = Vec::with_capacity(self.len() * self.channels * height * width);
        for plane in self.images.chunks_exact(h * w) {
            for &(y0, y1, fy) in &ys {
                for &(x0, x1, fx) in &xs {
                    let top = plane[y0 * w + x0] * (1.0 - fx) + plane[y0 * w + x1] * fx;
                    let bottom = plane[y1 * w + x0] * (1.0 - fx) + plane[y1 * w + x1] * fx;
                    images.push(top * (1.0 - fy) + bottom * fy);
                }
            }
        }
        Ok(Dataset { images, labels: self.labels.clone(), height, width, ..self.empty_like() })
    }
}

/// Fashion-MNIST's training or test split from `dir` (the Debian package's folder when
/// `None`), pixels scaled to [0, 1].
pub fn fashion_mnist(dir: Option<&Path>, train: bool) -> Result<Dataset> {
    let dir: PathBuf = dir.map_or_else(|| PathBuf::from(FASHION_MNIST_DIR), Path::to_path_buf);
    let prefix = if train { "train" } else { "t10k" };
    let find = |kind: &str| -> Result<PathBuf> {
        let name = format!("{prefix}-{kind}");
        [dir.join(format!("{name}.gz")), dir.join(&name)].into_iter().find(|p| p.exists()).ok_or_else(|| {
            Error::Data(format!(
                "{}: no {name}[.gz]; install Fashion-MNIST (Debian: apt-get install dataset-fashion-mnist) \
                     or pass the folder holding the IDX files",
                dir.display()
            ))
        })
    };
    load_idx(&find("images-idx3-ubyte")?, &find("labels-idx1-ubyte")?)
}
