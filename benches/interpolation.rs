//! What each interpolation costs on a whole network: VGG-16 and AlexNet with every
//! eligible conv perforated at q = 1/2, skipped outputs filled by nearest, barycentric
//! or zeros. CPU: native size, batch 1. GPU: on a CPU adapter (lavapipe) the scaled
//! variants (width 1/4, half resolution); on a real GPU, native sizes too.
//!
//! The closing table gives each variant's latency (best criterion sample) as a ratio to
//! nearest (target: barycentric at most 1.15), and how long building the plan's maps took.
//!
//! `cargo bench --bench interpolation`; `PERFORATE_BENCH_QUICK=1` runs the scaled variants
//! only.

mod support;

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use perforate::cpu::CpuExecutor;
use perforate::gpu::GpuExecutor;
use perforate::network::Network;
use perforate::plan::{Plan, PlanOptions};
use perforate::Interpolation;
use support::{best, quick};

const VARIANTS: [Interpolation; 3] =
    [Interpolation::Nearest, Interpolation::Barycentric, Interpolation::Zeros];
const Q: f64 = 0.5;

fn network(name: &str, small: bool, interpolation: Interpolation) -> Network {
    let mut net = support::zoo_network(name, small);
    net.perforate_all(Q, 1).unwrap();
    net.set_interpolation(interpolation);
    net
}

struct Case {
    executor: &'static str,
    name: &'static str,
    small: bool,
}

impl Case {
    fn id(&self, v: Interpolation) -> String {
        let size = if self.small { "small" } else { "native" };
        format!("{}/{}_{size}_b1_q0.5_{}", self.executor, self.name, v.name())
    }
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(if quick() { 1 } else { 3 }))
        .configure_from_args();
    let gpu = support::gpu();
    let mut cases = Vec::new();
    for name in ["vgg16", "alexnet"] {
        cases.push(Case { executor: "cpu_interp", name, small: quick() });
        if let Some(ctx) = &gpu {
            cases.push(Case { executor: "gpu_interp", name, small: true });
            if ctx.adapter_info().device_type != wgpu::DeviceType::Cpu && !quick() {
                cases.push(Case { executor: "gpu_interp", name, small: false });
            }
        }
    }
    let mut compile_ms = Vec::new();

    for case in &cases {
        let mut group = c.benchmark_group(case.executor);
        group.sample_size(10).warm_up_time(Duration::from_millis(500));
        for v in VARIANTS {
            let key = case.id(v);
            let net = network(case.name, case.small, v);
            let start = Instant::now();
            let plan = Plan::compile(&net, 1, PlanOptions::default()).unwrap();
            compile_ms.push((key.clone(), start.elapsed().as_secs_f64() * 1e3));
            let x = support::input(&plan);
            let id = key.split_once('/').map_or(key.clone(), |(_, id)| id.to_string());
            if case.executor == "cpu_interp" {
                let exec = CpuExecutor::new(&plan).unwrap();

                support::bench(&mut group, &id, key, Throughput::Elements(plan.flops()), || {
                    exec.run(x.view()).unwrap();
                });
            } else {
                let exec = match GpuExecutor::new(gpu.as_ref().unwrap(), &plan) {
                    Ok(e) => e,
                    Err(e) => {
                        println!("{key}: skipped: {e}");
                        continue;
                    }
                };
                support::bench(&mut group, &id, key, Throughput::Elements(plan.flops()), || {
                    exec.execute(x.view()).unwrap()
                });
            }
        }
        group.finish();
    }
    c.final_summary();

    println!("\n=== interpolation cost at q = 1/2: latency relative to nearest ===");
    if let Some(ctx) = &gpu {
        println!("GPU adapter: {}", ctx.describe());
    }
    println!("{:<44} {:>10} {:>9} {:>11}", "case", "latency ms", "x nearest", "compile ms");
    for case in &cases {
        let Some(nearest) = best(&case.id(Interpolation::Nearest)) else { continue };
        for v in VARIANTS {
            let key = case.id(v);
            let Some(t) = best(&key) else { continue };
            let compile = compile_ms.iter().find(|(k, _)| *k == key).map_or(f64::NAN, |c| c.1);
            let verdict = match v {
                Interpolation::Barycentric if t / nearest <= 1.15 => "  meets 1.15",
                Interpolation::Barycentric => "  ABOVE 1.15",
                _ => "",
            };
            println!("{key:<44} {:>10.2} {:>9.3} {compile:>11.1}{verdict}", t * 1e3, t / nearest);
        }
    }
}
