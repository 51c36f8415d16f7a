//! IDX image files (raw or gzip) from arbitrary bytes: a data set or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = perforate::data::idx_images_from_bytes(data.to_vec(), std::path::Path::new("fuzz-idx"));
});
