//! What the benches share: criterion samples kept per case, the quick switch, and zoo
//! networks with their inputs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Throughput};
use ndarray::{ArrayD, IxDyn};
use perforate::network::zoo::{self, ZooConfig};
use perforate::network::Network;
use perforate::plan::Plan;
use perforate::rng::SeededRng;

/// Per-iteration seconds of every criterion sample, by case key.
static SAMPLES: Mutex<BTreeMap<String, Vec<f64>>> = Mutex::new(BTreeMap::new());

/// `PERFORATE_BENCH_QUICK=1`: small shapes, a smoke run.
pub fn quick() -> bool {
    std::env::var("PERFORATE_BENCH_QUICK").is_ok_and(|v| v == "1")
}

/// Benchmarks `f` as `id` in `group` and keeps every sample's per-iteration time under
/// `key` for the closing summary.
pub fn bench(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    key: String,
    throughput: Throughput,
    mut f: impl FnMut(),
) {
    group.throughput(throughput);
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            let elapsed = start.elapsed();
            SAMPLES
                .lock()
                .unwrap()
                .entry(key.clone())
                .or_default()
                .push(elapsed.as_secs_f64() / iters as f64);
            elapsed
        })
    });
}

/// The fastest sample of `key`, per iteration: on a shared machine noise only ever adds
/// time, so ratios of best samples are the most repeatable.
pub fn best(key: &str) -> Option<f64> {
    SAMPLES.lock().unwrap().get(key)?.iter().copied().reduce(f64::min)
}

/// A zoo network at its native size, or (`small`) the variant sized for lavapipe:
/// width 1/4, half resolution (at least 67).
pub fn zoo_network(name: &str, small: bool) -> Network {
    let config = if small {
        let native = match name {
            "nin" => 32,
            "alexnet" => 227,
            _ => 224,
        };
        ZooConfig { width: 0.25, resolution: Some((native / 2).max(67)), ..Default::default() }
    } else {
        ZooConfig::default()
    };
    zoo::build(name, config).unwrap()
}

/// A seeded random input for `plan`.
pub fn input(plan: &Plan) -> ArrayD<f32> {
    let shape = plan.input_shape();
    ArrayD::from_shape_vec(IxDyn(&shape), SeededRng::new(2).vec_f32(shape.iter().product(), -1.0, 1.0))
        .unwrap()
}

/// The GPU context, or `None` with the reason printed (GPU cases are then skipped).
pub fn gpu() -> Option<perforate::gpu::GpuContext> {
    match perforate::gpu::GpuContext::new() {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            println!("GPU benches skipped: {e}");
            None
        }
    }
}
