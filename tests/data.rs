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

#[cfg(feature = "images")]
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

/// A version-1 `.npy` file written by hand (an independent writer for the reader's tests).
fn npy(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let order = if fortran { "True" } else { "False" };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&u16::try_from(header.len()).unwrap().to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    b
}

#[test]
fn npy_tensors_of_every_real_dtype_read_as_f32() {
    let read = |name: &str, bytes: Vec<u8>| data::read_npy_f32(temp(name, &bytes));
    let f8: Vec<u8> = [0.5f64, -1.25, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let a = read("f8.npy", npy("<f8", false, &[2, 3], &f8)).unwrap();
    assert_eq!(a.shape(), &[2, 3]);
    assert_eq!(a.iter().copied().collect::<Vec<_>>(), [0.5, -1.25, 3.0, 4.0, 5.0, 6.0]);
    // uint8 images keep their range: nothing is rescaled.
    let a = read("u1.npy", npy("|u1", false, &[3], &[0, 255, 7])).unwrap();
    assert_eq!(a.as_slice().unwrap(), [0.0, 255.0, 7.0]);
    let i4: Vec<u8> = [-3i32, 70000].iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(read("i4.npy", npy("<i4", false, &[2], &i4)).unwrap().as_slice().unwrap(), [-3.0, 70000.0]);
    let be: Vec<u8> = [1.5f32, -2.0].iter().flat_map(|v| v.to_be_bytes()).collect();
    assert_eq!(read("be.npy", npy(">f4", false, &[2], &be)).unwrap().as_slice().unwrap(), [1.5, -2.0]);
    // float16: normal, negative, the largest, the smallest subnormal, infinity.
    let halves: Vec<u8> =
        [0x3C00u16, 0xC000, 0x3800, 0x7BFF, 0x0001, 0x7C00].iter().flat_map(|v| v.to_le_bytes()).collect();
    let a = read("f2.npy", npy("<f2", false, &[6], &halves)).unwrap();
    assert_eq!(a.as_slice().unwrap(), [1.0, -2.0, 0.5, 65504.0, 2f32.powi(-24), f32::INFINITY]);
    let big: Vec<u8> = [0x3C00u16, 0xC000].iter().flat_map(|v| v.to_be_bytes()).collect();
    assert_eq!(read("f2be.npy", npy(">f2", false, &[2], &big)).unwrap().as_slice().unwrap(), [1.0, -2.0]);
    // Fortran order: element (i, j) is stored at i + 2j.
    let f4: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    for (descr, data) in [
        ("<f4", f4.clone()),
        (
            "<f2",
            [0x3C00u16, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
    ] {
        let a = read("fortran.npy", npy(descr, true, &[2, 3], &data)).unwrap();
        assert_eq!((a[[0, 1]], a[[1, 0]], a[[1, 2]]), (3.0, 2.0, 6.0), "{descr} in Fortran order");
    }
}

#[test]
fn npy_files_that_are_not_real_tensors_are_refused_by_name() {
    let err = |name: &str, bytes: Vec<u8>| data::read_npy_f32(temp(name, &bytes)).unwrap_err().to_string();
    for (descr, what) in [("|b1", "'|b1'"), ("<c8", "'<c8'"), ("<U3", "'<U3'")] {
        let e = err("bad.npy", npy(descr, false, &[2], &[0; 24]));
        assert!(e.contains("bad.npy") && e.contains(what) && e.contains("not a real number type"), "{e}");
    }
    let e = err("magic.npy", b"PK\x03\x04 not numpy".to_vec());
    assert!(e.contains("magic.npy") && e.contains("magic"), "{e}");
    let e = err("short.npy", npy("<f2", false, &[4], &[0, 0]));
    assert!(e.contains("float16") && e.contains("4 values"), "{e}");
    let e = err("shortf4.npy", npy("<f4", false, &[4], &[0, 0, 0, 0]));
    assert!(e.contains("shortf4.npy") && e.contains("'<f4'"), "{e}");
}
