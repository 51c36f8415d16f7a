//! Perforation plan files: arbitrary text parsed and applied to a zoo network (fashion_vgg,
//! the demo's architecture), then compiled: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perforate::network::PerforationPlan;
use perforate::network::zoo::{self, ZooConfig};
use perforate::plan::{Plan, PlanOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(plan) = PerforationPlan::from_json(text) else { return };
    let Ok(mut net) = zoo::build("fashion_vgg", ZooConfig::default()) else { return };
    if plan.apply(&mut net).is_ok() {
        let _ = Plan::compile(&net, 1, PlanOptions::default());
    }
});
