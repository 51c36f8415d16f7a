//! The C API (`capi/`): builds the library, compiles `examples/c/classify.c` with the
//! system C compiler, runs it and checks its class scores against the same network run
//! from Rust; the header declares every exported function.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use perforate::cpu::CpuExecutor;
use perforate::network::zoo::{self, ZooConfig};
use perforate::plan::{Plan, PlanOptions};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// The scores a `classify` output line holds after `label:`.
fn scores(stdout: &str, label: &str) -> Option<Vec<f32>> {
    let line = stdout.lines().find(|l| l.starts_with(&format!("{label}:")))?;
    line[label.len() + 1..].split_whitespace().map(|v| v.parse().ok()).collect()
}

#[test]
fn the_c_example_builds_runs_and_matches_rust() {
    // The library, in this test build's profile and with the library's default features,
    // so the `perforate` this test run already compiled is reused (the C API itself needs
    // none of them).
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "perforate-capi",
            "--features",
            "perforate/default",
            "--manifest-path",
        ])
        .arg(root().join("Cargo.toml"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building the C API failed");
    let lib_dir = target_dir().join("debug");
    let exe = std::env::temp_dir().join(format!("perforate-classify-{}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .arg(root().join("examples/c/classify.c"))
        .arg("-I")
        .arg(root().join("capi/include"))
        .arg("-L")
        .arg(&lib_dir)
        .args(["-lperforate_c", "-lm"])
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("the C compiler '{cc}' could not be started: {e}"));
    assert!(out.status.success(), "cc failed:\n{}", String::from_utf8_lossy(&out.stderr));

    let run = Command::new(&exe).arg("fashion_vgg").output().expect("classify runs");
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(run.status.success(), "classify failed:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("fashion_vgg: input 1x28x28"), "{stdout}");

    // The same network, perforation and input from Rust.
    let config = ZooConfig { resolution: Some(28), classes: Some(10), ..Default::default() };
    let mut net = zoo::build("fashion_vgg", config).unwrap();
    let perforated = net.perforate_all(0.5, 7).unwrap();
    assert!(stdout.contains(&format!("{} convs perforated", perforated.len())), "{stdout}");
    let plan = Plan::compile(&net, 1, PlanOptions::default()).unwrap();
    let n: usize = plan.input_shape().iter().product();
    #[allow(clippy::cast_possible_truncation)]
    let x: Vec<f32> = (0..n).map(|i| (0.01 * i as f64).sin() as f32).collect();
    let x = ndarray::ArrayD::from_shape_vec(plan.input_shape(), x).unwrap();
    let want = CpuExecutor::new(&plan).unwrap().run(x.view()).unwrap();
    let want = common::to_f64(want.as_slice().unwrap());
    // printf's %.6f: compare to its rounding.
    let cpu = scores(&stdout, "cpu").expect("a cpu line");
    common::assert_close("C API on the CPU vs Rust", &cpu, &want, 1e-5);
    if common::gpu_or_skip("the_c_example_builds_runs_and_matches_rust").is_some() {
        let gpu = scores(&stdout, "gpu").unwrap_or_else(|| panic!("a GPU exists but no gpu line:\n{stdout}"));
        common::assert_close("C API on the GPU vs Rust CPU", &gpu, &want, 1e-4);
    }
    let _ = std::fs::remove_file(&exe);
}

#[test]
fn the_header_declares_every_exported_function() {
    let source = std::fs::read_to_string(root().join("capi/src/lib.rs")).unwrap();
    let header = std::fs::read_to_string(root().join("capi/include/perforate.h")).unwrap();
    let exported: Vec<&str> = source
        .lines()
        .filter_map(|l| l.split("extern \"C\" fn ").nth(1))
        .filter_map(|rest| rest.split('(').next())
        .collect();
    assert!(exported.len() >= 10, "{exported:?}");
    for name in exported {
        assert!(header.contains(&format!("{name}(")), "capi/include/perforate.h lacks {name}: regenerate it");
    }
}
