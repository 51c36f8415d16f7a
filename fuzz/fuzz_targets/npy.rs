//! `.npy` reading of arbitrary bytes: an array or an error naming the problem, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = perforate::data::npy_f32_from_bytes(data, "fuzz.npy");
});
