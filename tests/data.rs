//! Data sets: IDX (raw and gzip) and CIFAR files written by hand, corrupt files, the
//! installed Fashion-MNIST, normalisation, resizing and seeded shuffling.

use std::io::Write;
use std::path::PathBuf;

use perforate::data::{self, Dataset};
use perforate::Error;

fn temp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("perforate-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, u8::try_from(dims.len()).unwrap()];
    dims.iter().for_each(|d| b.extend_from_slice(&d.to_be_bytes()));
    b.extend_from_slice(data);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_files_raw_and_gzip() {
    let pixels: Vec<u8> = (0..12).map(|i| i * 20).collect();
    let images = idx(&[2, 2, 3], &pixels);
    let labels = idx(&[2], &[7, 3]);
    for (i, l) in [(images.clone(), labels.clone()), (gz(&images), gz(&labels))] {
        let d = data::load_idx(&temp("img", &i), &temp("lab", &l)).unwrap();
        assert_eq!((d.len(), d.channels, d.height, d.width, d.classes), (2, 1, 2, 3, 10));
        assert_eq!(d.labels, vec![7, 3]);
        assert_eq!(d.image(1)[0], 120.0 / 255.0);
        assert_eq!(d.image(1)[5], 220.0 / 255.0);
    }
}

#[test]
fn corrupt_idx_and_cifar_files_are_clear_errors() {
    let good_labels = temp("labels-ok", &idx(&[2], &[1, 2]));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("magic", vec![1, 2, 3, 4, 5], "magic"),
        (
            "type",
            {
                let mut b = idx(&[2, 2, 3], &[0; 12]);
                b[2] = 0x0d;
                b
            },
            "element type",
        ),
        ("truncated", idx(&[2, 2, 3], &[0; 11]), "need 12 bytes"),
        ("count", idx(&[3, 2, 2], &[0; 12]), "but"),
        ("gzip", vec![0x1f, 0x8b, 1, 2, 3], "corrupt gzip"),
        ("rank", idx(&[24], &[0; 24]), "must be [n, h, w]"),
    ];
    for (name, bytes, want) in cases {
        let e = data::load_idx(&temp(name, &bytes), &good_labels).unwrap_err();
        assert!(matches!(e, Error::Data(_)) && e.to_string().contains(want), "{name}: {e}");
    }
    let e = data::load_idx(&temp("missing-dir", &[]).with_file_name("nope"), &good_labels).unwrap_err();
    assert!(e.to_string().contains("cannot read"), "{e}");
    // CIFAR-10: one record of label 3, and a file cut mid-record.
    let mut record = vec![3u8];
    record.extend((0..3072).map(|i| u8::try_from(i % 256).unwrap()));
    let d = data::load_cifar(&[&temp("cifar", &record)], false).unwrap();
    assert_eq!((d.len(), d.channels, d.height, d.width, d.classes, d.labels[0]), (1, 3, 32, 32, 10, 3));
    assert_eq!(d.image(0)[1025], 1.0 / 255.0);
    let e = data::load_cifar(&[&temp("cifar-cut", &record[..3000])], false).unwrap_err();
    assert!(e.to_string().contains("whole number"), "{e}");
    record[0] = 12;
    let e = data::load_cifar(&[&temp("cifar-label", &record)], false).unwrap_err();
    assert!(e.to_string().contains("label 12"), "{e}");
}

#[test]
fn normalise_resize_shuffle_subset() {
    let mut d = Dataset::new(1, 2, 2, 2, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], vec![0, 1]).unwrap();
    let (mean, std) = d.channel_stats();
    assert!((mean[0] - 3.5).abs() < 1e-6 && (std[0] - 5.25f32.sqrt()).abs() < 1e-5);
    // Bilinear 2x2 -> 4x4 (half-pixel centres): the first row of image 0 is 0, .25, .75, 1.
    let r = d.resized(4, 4).unwrap();
    assert_eq!(&r.image(0)[..4], &[0.0, 0.25, 0.75, 1.0]);
    assert_eq!(r.image(0)[15], 3.0);
    d.normalize(&[1.0], &[2.0]).unwrap();
    assert_eq!(d.image(1), &[1.5, 2.0, 2.5, 3.0]);
    assert!(d.normalize(&[0.0], &[0.0]).is_err());
    let order = d.shuffled(5);
    assert_eq!(order, d.shuffled(5));
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![0, 1]);
    assert_eq!(d.subset(&[1]).labels, vec![1]);
    assert!(Dataset::new(1, 2, 2, 2, vec![0.0; 8], vec![0, 2]).unwrap_err().to_string().contains("label 2"));
    assert!(Dataset::new(1, 2, 2, 2, vec![0.0; 7], vec![0, 1]).is_err());
}

#[test]
fn fashion_mnist_when_installed() {
    if !std::path::Path::new(data::FASHION_MNIST_DIR).exists() {
        eprintln!("skipping: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)");
        return;
    }
    let test = data::fashion_mnist(None, false).unwrap();
    assert_eq!((test.len(), test.channels, test.height, test.width, test.classes), (10000, 1, 28, 28, 10));
    let mut counts = [0usize; 10];
    test.labels.iter().for_each(|&l| counts[l as usize] += 1);
    assert_eq!(counts, [1000; 10], "the test split is balanced");
    assert!(test.images.iter().all(|v| (0.0..=1.0).contains(v)));
    let e = data::fashion_mnist(Some(std::path::Path::new("/nonexistent")), true).unwrap_err();
    assert!(e.to_string().contains("dataset-fashion-mnist"), "{e}");
}

#[test]
fn image_folders_one_subfolder_per_class() {
    let root = temp("folder-root", b"").with_file_name("folder");
    for (class, value) in [("b_shoes", 200u8), ("a_shirts", 50u8)] {
        std::fs::create_dir_all(root.join(class)).unwrap();
        let img = image::GrayImage::from_pixel(4, 6, image::Luma([value]));
        img.save(root.join(class).join("one.png")).unwrap();
    }
    let (d, names) = data::load_image_folder(&root, 1, 3, 2).unwrap();
    assert_eq!(names, vec!["a_shirts", "b_shoes"], "classes in sorted order");
    assert_eq!((d.len(), d.channels, d.height, d.width, d.classes), (2, 1, 3, 2, 2));
    assert_eq!(d.labels, vec![0, 1]);
    assert!(d.image(0).iter().all(|&v| (v - 50.0 / 255.0).abs() < 1e-6));
    let (rgb, _) = data::load_image_folder(&root, 3, 2, 2).unwrap();
    assert_eq!(rgb.image(1).len(), 12);
    std::fs::write(root.join("a_shirts").join("broken.png"), b"not a png").unwrap();
    let e = data::load_image_folder(&root, 1, 3, 2).unwrap_err();
    assert!(e.to_string().contains("broken.png"), "{e}");
    assert!(data::load_image_folder(&root.join("nope"), 1, 3, 2).is_err());
}
