//! Whole zoo networks, dense and with every eligible conv perforated at q = 1/2 and 1/4.
//! CPU: native resolution, batch 1 and 8. GPU: on a CPU adapter (lavapipe) the scaled
//! variants (width 1/4, half resolution) at batch 1; on a real GPU, native sizes too.
//! The closing table prints theoretical speedup (cost model), measured speedup and
//! latency (best criterion sample), and peak activation memory, dense vs perforated.
//!
//! `cargo bench --bench network`; `PERFORATE_BENCH_QUICK=1` runs the scaled variants only;
//! a criterion filter narrows it (`cargo bench --bench network -- vgg16`).

mod support;

use std::time::Duration;

use criterion::{Criterion, Throughput};
use perforate::cpu::CpuExecutor;
use perforate::gpu::{GpuContext, GpuExecutor};
use perforate::network::zoo;
use perforate::network::Network;
use perforate::plan::{Plan, PlanOptions};
use support::{best, quick};

const KEEPS: [(f64, &str); 3] = [(1.0, "q1"), (0.5, "q0.5"), (0.25, "q0.25")];

/// A zoo network, perforated at `q` everywhere eligible.
fn network(name: &str, small: bool, q: f64) -> Network {
    let mut net = support::zoo_network(name, small);
    if q < 1.0 {
        net.perforate_all(q, 1).unwrap();
    }
    net
}

struct Case {
    executor: &'static str,
    name: &'static str,
    small: bool,
    batch: usize,
}

impl Case {
    fn id(&self, qname: &str) -> String {
        let size = if self.small { "small" } else { "native" };
        format!("{}/{}_{size}_b{}_{qname}", self.executor, self.name, self.batch)
    }
}

fn cases(gpu: Option<&GpuContext>) -> Vec<Case> {
    let mut cases = Vec::new();
    let cpu_small = quick();
    for name in zoo::NAMES {
        for batch in [1, 8] {
            cases.push(Case { executor: "cpu_network", name, small: cpu_small, batch });
        }
    }
    if let Some(ctx) = gpu {
        let real = ctx.adapter_info().device_type != wgpu::DeviceType::Cpu;
        for name in zoo::NAMES {
            cases.push(Case { executor: "gpu_network", name, small: true, batch: 1 });
            if real && !quick() {
                cases.push(Case { executor: "gpu_network", name, small: false, batch: 1 });
                cases.push(Case { executor: "gpu_network", name, small: false, batch: 8 });
            }
        }
    }
    cases
}

fn run_cases(c: &mut Criterion, gpu: Option<&GpuContext>, cases: &[Case]) {
    for case in cases {
        let mut group = c.benchmark_group(case.executor);
        group.sample_size(10).warm_up_time(Duration::from_millis(500));
        for (q, qname) in KEEPS {
            let key = case.id(qname);
            let plan = Plan::compile(&network(case.name, case.small, q), case.batch, PlanOptions::default())
                .unwrap();
            let x = support::input(&plan);
            if case.executor == "cpu_network" {
                let exec = CpuExecutor::new(&plan).unwrap();
                let id = key.split_once('/').map_or(key.clone(), |(_, id)| id.to_string());
                support::bench(&mut group, &id, key, Throughput::Elements(plan.flops()), || {
                    exec.run(x.view()).unwrap();
                });
            } else {
                let exec = match GpuExecutor::new(gpu.unwrap(), &plan) {
                    Ok(e) => e,
                    Err(e) => {
                        println!("{key}: skipped: {e}");
                        continue;
                    }
                };
                let id = key.split_once('/').map_or(key.clone(), |(_, id)| id.to_string());
                support::bench(&mut group, &id, key, Throughput::Elements(plan.flops()), || {
                    exec.execute(x.view()).unwrap()
                });
            }
        }
        group.finish();
    }
}

fn summary(gpu: Option<&GpuContext>, cases: &[Case]) {
    println!("\n=== whole networks: theoretical vs measured speedup, latency, peak activation memory ===");
    if let Some(ctx) = gpu {
        println!("GPU adapter: {}", ctx.describe());
    }
    println!(
        "{:<32} {:>10} {:>6} {:>11} {:>9} {:>6} {:>10} {:>10} {:>6}",
        "executor case",
        "latency ms",
        "q",
        "theoretical",
        "measured",
        "ratio",
        "peak MB",
        "dense MB",
        "mem x"
    );
    for case in cases {
        let Some(dense_time) = best(&case.id("q1")) else { continue };
        let dense_plan =
            Plan::compile(&network(case.name, case.small, 1.0), case.batch, PlanOptions::default()).unwrap();
        let dense_peak = dense_plan.memory_report().peak_bytes as f64 / 1e6;
        for (q, qname) in KEEPS {
            let Some(t) = best(&case.id(qname)) else { continue };
            let plan = Plan::compile(&network(case.name, case.small, q), case.batch, PlanOptions::default())
                .unwrap();
            let theoretical = dense_plan.flops() as f64 / plan.flops() as f64;
            let measured = dense_time / t;
            let peak = plan.memory_report().peak_bytes as f64 / 1e6;
            let verdict = match (case.executor, qname) {
                ("cpu_network", "q0.5") if measured / theoretical >= 0.85 => "  speed meets 0.85",
                ("cpu_network", "q0.5") => "  speed BELOW 0.85",
                _ => "",
            };
            let mem = if qname == "q0.5" {
                if peak / dense_peak < 0.7 {
                    "  memory meets 0.7"
                } else {
                    "  memory ABOVE 0.7"
                }
            } else {
                ""
            };
            println!(
                "{:<32} {:>10.2} {:>6} {theoretical:>11.2} {measured:>9.2} {:>6.2} {peak:>10.1} {dense_peak:>10.1} {:>6.2}{verdict}{mem}",
                case.id(qname).replace("_network/", " ").replace(&format!("_{qname}"), ""),
                t * 1e3,
                qname.trim_start_matches('q'),
                measured / theoretical,
                peak / dense_peak,
            );
        }
    }
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(if quick() { 1 } else { 3 }))
        .configure_from_args();
    let gpu = support::gpu();
    let cases = cases(gpu.as_ref());
    run_cases(&mut c, gpu.as_ref(), &cases);
    c.final_summary();
    summary(gpu.as_ref(), &cases);
}
