//! Runs an ONNX model on a `.npy` input and writes the output as `.npy`: how a user checks
//! perforate's numbers against their own framework.
//!
//! ```sh
//! cargo run --release --example onnx_run -- MODEL.onnx INPUT.npy OUTPUT.npy [--device cpu|gpu] [--plan PLAN.json]
//! ```
//!
//! INPUT.npy is a float32 N×C×H×W array; the batch size N is taken from it. With
//! `--plan`, the perforation plan (as saved by `PerforationPlan::save`) is applied first.

use std::process::ExitCode;

use ndarray::ArrayD;
use perforate::cpu::CpuExecutor;
use perforate::gpu::{GpuContext, GpuExecutor};
use perforate::network::PerforationPlan;
use perforate::plan::{Executor, Plan, PlanOptions};

const USAGE: &str = "usage: onnx_run MODEL.onnx INPUT.npy OUTPUT.npy [--device cpu|gpu] [--plan PLAN.json]";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("onnx_run: {message}");
            ExitCode::from(code)
        }
    }
}

fn run() -> Result<(), (u8, String)> {
    // 1. Arguments: three paths, then options.
    let mut args = std::env::args().skip(1);
    let mut paths = Vec::new();
    let (mut device, mut plan_path) = ("cpu".to_string(), None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--device" => device = args.next().ok_or((2, format!("--device needs cpu or gpu\n{USAGE}")))?,
            "--plan" => plan_path = Some(args.next().ok_or((2, format!("--plan needs a file\n{USAGE}")))?),
            "-h" | "--help" => return Err((2, USAGE.into())),
            _ => paths.push(a),
        }
    }
    let [model_path, input_path, output_path] = &paths[..] else {
        return Err((2, format!("expected three paths, got {}\n{USAGE}", paths.len())));
    };
    let fail = |e: perforate::Error| (1, e.to_string());

    // 2. The model, and the perforation plan if one is given.
    let mut model = perforate::onnx::load(model_path).map_err(fail)?;
    if let Some(p) = plan_path {
        PerforationPlan::load(&p).and_then(|plan| plan.apply(&mut model.network)).map_err(fail)?;
    }

    // 3. The input: its batch size decides the plan's.
    let input: ArrayD<f32> = ndarray_npy::read_npy(input_path)
        .map_err(|e| (1, format!("{input_path}: cannot read a float32 .npy array: {e}")))?;
    if input.ndim() != 4 {
        return Err((1, format!("{input_path}: expected an N×C×H×W array, got shape {:?}", input.shape())));
    }
    let plan = Plan::compile(&model.network, input.shape()[0], PlanOptions::default()).map_err(fail)?;

    // 4. Run on the chosen executor and write the output.
    let executor: Box<dyn Executor> = match device.as_str() {
        "cpu" => Box::new(CpuExecutor::new(&plan).map_err(fail)?),
        "gpu" => Box::new(GpuExecutor::new(&GpuContext::new().map_err(fail)?, &plan).map_err(fail)?),
        other => return Err((2, format!("unknown device '{other}' (cpu or gpu)\n{USAGE}"))),
    };
    let mut output = executor.run(input.view()).map_err(fail)?;
    // A flat output is [N, C, 1, 1] here; give it the rank the model declares ([N, C]).
    if model.output_rank == Some(2) && output.shape()[2..] == [1, 1] {
        let shape = output.shape()[..2].to_vec();
        output =
            output.into_shape_with_order(shape).map_err(|e| (1, format!("reshaping the output: {e}")))?;
    }
    ndarray_npy::write_npy(output_path, &output)
        .map_err(|e| (1, format!("{output_path}: cannot write: {e}")))?;
    eprintln!("{}: {:?} -> {:?} on {}", model_path, input.shape(), output.shape(), executor.describe());
    Ok(())
}
