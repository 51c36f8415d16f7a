//! ONNX import of arbitrary bytes: an error or a network, never a panic; a network that
//! loads also compiles (or refuses to) for batch 1 without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perforate::plan::{Plan, PlanOptions};

fuzz_target!(|data: &[u8]| {
    if let Ok(model) = perforate::onnx::load_bytes(data, None) {
        let _ = Plan::compile(&model.network, 1, PlanOptions::default());
    }
});
