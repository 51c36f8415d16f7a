//! The native half of the `perforate` Python package (PyO3): a `Model` class over a
//! [`Network`], with the numpy conversions done in `perforate/__init__.py`. Arrays cross
//! as buffers (no copy of the input; one copy of the output into the array Python made),
//! and the GIL is released while a network runs, searches or trains.
#![allow(unsafe_code)]

use std::path::Path;
use std::sync::{Mutex, OnceLock};

use ndarray::ArrayViewD;
use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;

use perforate::cpu::CpuExecutor;
use perforate::data::Dataset;
use perforate::gpu::{GpuContext, GpuExecutor};
use perforate::network::{Network, PerforationPlan, PerforationReport};
use perforate::plan::{Plan, PlanOptions};
use perforate::train::{self, Cost, SearchConfig, SearchStrategy, TrainConfig};
use perforate::{Interpolation, MaskStrategy};

create_exception!(_native, PerforateError, PyException, "An error from perforate, with its message.");

fn err(e: perforate::Error) -> PyErr {
    PerforateError::new_err(e.to_string())
}

/// The process's GPU context, created on first use (its error kept, so each use reports it).
fn gpu() -> PyResult<GpuContext> {
    static CTX: OnceLock<Result<GpuContext, String>> = OnceLock::new();
    CTX.get_or_init(|| GpuContext::new().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| PerforateError::new_err(format!("no GPU: {e}; use device='cpu'")))
}

enum Runner {
    Cpu(Box<CpuExecutor>),
    Gpu(GpuExecutor),
}

/// A compiled executor and what it was compiled for.
struct Compiled {
    batch: usize,
    gpu: bool,
    version: u64,
    plan: Plan,
    runner: Runner,
}

/// A raw pointer into a Python buffer that the GIL-free part may read: the buffer is held
/// (and not resized) by the caller for the whole call.
struct Shared<T>(*const T, usize);
// SAFETY: the pointee outlives the call that holds the PyBuffer; it is only read.
unsafe impl<T> Send for Shared<T> {}

/// A network (loaded from ONNX, a perforate JSON model or the zoo) and its perforation.
#[pyclass(module = "perforate._native")]
struct Model {
    net: Network,
    /// Bumped on every change, so a cached executor is rebuilt.
    version: u64,
    compiled: Mutex<Option<Compiled>>,
}

impl Model {
    fn changed(&mut self) {
        self.version += 1;
    }
}

fn dataset(model: &Model, images: &Bound<'_, PyAny>, labels: &Bound<'_, PyAny>) -> PyResult<Dataset> {
    let x = PyBuffer::<f32>::get(images)?;
    let y = PyBuffer::<u32>::get(labels)?;
    let (Some(xs), Some(ys)) = (x.to_vec(images.py()).ok(), y.to_vec(labels.py()).ok()) else {
        return Err(PyValueError::new_err("images and labels must be readable buffers"));
    };
    let s = &model.net.input;
    let classes = (ys.iter().copied().max().unwrap_or(0) as usize + 1).max(model_classes(&model.net));
    Dataset::new(s.channels, s.height, s.width, classes, xs, ys).map_err(err)
}

/// Classes of the network's output (at least 1): what labels may range over.
fn model_classes(net: &Network) -> usize {
    Plan::compile(net, 1, PlanOptions::default())
        .map_or(1, |p| p.output_shape().iter().skip(1).product::<usize>().max(1))
}

#[pymethods]
impl Model {
    /// The input of one image: (channels, height, width).
    #[getter]
    fn input_shape(&self) -> (usize, usize, usize) {
        let s = &self.net.input;
        (s.channels, s.height, s.width)
    }

    /// The network's name.
    #[getter]
    fn name(&self) -> String {
        self.net.name.clone()
    }

    /// Dense FLOPs / perforated FLOPs.
    #[getter]
    fn theoretical_speedup(&self) -> PyResult<f64> {
        self.net.theoretical_speedup().map_err(err)
    }

    /// Perforates every perforable conv at kept fraction `q` with `strategy`
    /// ("uniform", "grid", "pooling_structure"); returns the names of the convs.
    #[pyo3(signature = (q, strategy = "uniform", seed = 1, interpolation = "nearest"))]
    fn perforate(&mut self, q: f64, strategy: &str, seed: u64, interpolation: &str) -> PyResult<Vec<String>> {
        let strategy = match strategy {
            "uniform" => MaskStrategy::Uniform,
            "grid" => MaskStrategy::Grid,
            "pooling_structure" => MaskStrategy::PoolingStructure,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown strategy '{other}' (uniform, grid, pooling_structure; for impact masks use search())"
                )))
            }
        };
        let interpolation = match interpolation {
            "nearest" => Interpolation::Nearest,
            "zeros" => Interpolation::Zeros,
            "barycentric" => Interpolation::Barycentric,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown interpolation '{other}' (nearest, zeros, barycentric)"
                )))
            }
        };
        let names = self.net.perforate_all_with(q, seed, &strategy).map_err(err)?;
        self.net.set_interpolation(interpolation);
        self.changed();
        Ok(names)
    }

    /// Greedy network-wide search to `target_speedup` (the model becomes the result);
    /// returns the steps as dicts.
    #[pyo3(signature = (images, labels, target_speedup = 2.0, strategy = "impact", cost = "flops", seed = 1, batch = 250, max_steps = 200))]
    #[allow(clippy::too_many_arguments)]
    fn search(
        &mut self,
        py: Python<'_>,
        images: &Bound<'_, PyAny>,
        labels: &Bound<'_, PyAny>,
        target_speedup: f64,
        strategy: &str,
        cost: &str,
        seed: u64,
        batch: usize,
        max_steps: usize,
    ) -> PyResult<Py<PyAny>> {
        let data = dataset(self, images, labels)?;
        let cost = match cost {
            "flops" => Cost::Flops,
            "cpu" => Cost::Cpu { batch: 1 },
            "gpu" => Cost::Gpu { context: gpu()?, batch: 1 },
            other => return Err(PyValueError::new_err(format!("unknown cost '{other}' (flops, cpu, gpu)"))),
        };
        let config = SearchConfig {
            target_speedup,
            strategy: SearchStrategy::parse(strategy).map_err(err)?,
            interpolation: Interpolation::Nearest,
            cost,
            batch,
            seed,
            max_steps,
        };
        let net = &self.net;
        let (found, steps) = py.detach(|| train::greedy_search(net, &data, &config)).map_err(err)?;
        self.net = found;
        self.changed();
        json_to_py(py, &serde_json::to_value(&steps).unwrap_or_default())
    }

    /// Fine-tunes the weights with the masks fixed (SGD with momentum); returns the epoch
    /// logs as dicts.
    #[pyo3(signature = (images, labels, epochs = 1, lr = 1e-3, batch_size = 64, seed = 1))]
    #[allow(clippy::too_many_arguments)]
    fn finetune(
        &mut self,
        py: Python<'_>,
        images: &Bound<'_, PyAny>,
        labels: &Bound<'_, PyAny>,
        epochs: usize,
        lr: f32,
        batch_size: usize,
        seed: u64,
    ) -> PyResult<Py<PyAny>> {
        let data = dataset(self, images, labels)?;
        let config = TrainConfig {
            epochs,
            lr,
            batch_size,
            seed,
            schedule: train::LrSchedule::Constant,
            ..Default::default()
        };
        let net = &mut self.net;
        let logs = py.detach(|| train::train(net, &data, None, &config, |_| {})).map_err(err)?;
        self.changed();
        json_to_py(py, &serde_json::to_value(&logs).unwrap_or_default())
    }

    /// Loss, top-1 and top-5 error on labelled images.
    #[pyo3(signature = (images, labels, batch = 250))]
    fn evaluate(
        &self,
        py: Python<'_>,
        images: &Bound<'_, PyAny>,
        labels: &Bound<'_, PyAny>,
        batch: usize,
    ) -> PyResult<Py<PyAny>> {
        let data = dataset(self, images, labels)?;
        let net = &self.net;
        let e = py.detach(|| train::evaluate(net, &data, batch)).map_err(err)?;
        json_to_py(py, &serde_json::to_value(e).unwrap_or_default())
    }

    /// Writes the perforation (masks, seeds, weights hash) to a plan file.
    fn save_plan(&self, path: &str) -> PyResult<()> {
        PerforationPlan::from_network(&self.net).and_then(|p| p.save(path)).map_err(err)
    }

    /// Applies a plan file written by `save_plan` or `perforate search`.
    fn load_plan(&mut self, path: &str) -> PyResult<()> {
        PerforationPlan::load(path).and_then(|p| p.apply(&mut self.net)).map_err(err)?;
        self.changed();
        Ok(())
    }

    /// Writes the network (weights included) as a perforate JSON model.
    fn save(&self, path: &str) -> PyResult<()> {
        let json = self.net.to_json().map_err(err)?;
        std::fs::write(path, json).map_err(|e| PerforateError::new_err(format!("{path}: {e}")))
    }

    /// Per-layer kept fraction and FLOPs, and the theoretical speedup, as a dict.
    fn report(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let r = PerforationReport::new(&self.net).map_err(err)?;
        let json = r.to_json().map_err(err)?;
        let value: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| PerforateError::new_err(e.to_string()))?;
        json_to_py(py, &value)
    }

    /// Runs the network on a C-contiguous float32 buffer of shape (N, C, H, W) and writes
    /// the output into `out` (float32, C-contiguous, shape `output_shape(N)`). The
    /// executor for (N, device) is compiled on first use and kept until the model changes.
    fn run_into(
        &self,
        py: Python<'_>,
        x: &Bound<'_, PyAny>,
        out: &Bound<'_, PyAny>,
        device: &str,
    ) -> PyResult<()> {
        let gpu_run = match device {
            "cpu" => false,
            "gpu" => true,
            other => return Err(PyValueError::new_err(format!("unknown device '{other}' (cpu, gpu)"))),
        };
        let xb = PyBuffer::<f32>::get(x)?;
        let ob = PyBuffer::<f32>::get(out)?;
        if !xb.is_c_contiguous() || !ob.is_c_contiguous() || ob.readonly() {
            return Err(PyValueError::new_err("x and out must be C-contiguous float32 arrays, out writable"));
        }
        let shape = xb.shape().to_vec();
        let batch = *shape.first().ok_or_else(|| PyValueError::new_err("x has no batch dimension"))?;
        let input = Shared(xb.buf_ptr().cast::<f32>().cast_const(), xb.item_count());
        let output = Shared(ob.buf_ptr().cast::<f32>().cast_const(), ob.item_count());
        let ctx = if gpu_run { Some(gpu()?) } else { None };
        let net = &self.net;
        let version = self.version;
        let compiled = &self.compiled;
        py.detach(move || -> PyResult<()> {
            let (input, output) = (input, output);
            let mut cache =
                compiled.lock().map_err(|_| PerforateError::new_err("a previous run panicked"))?;
            let fresh =
                !matches!(&*cache, Some(c) if c.batch == batch && c.gpu == gpu_run && c.version == version);
            if fresh {
                let plan = Plan::compile(net, batch, PlanOptions::default()).map_err(err)?;
                let runner = match &ctx {
                    Some(ctx) => Runner::Gpu(GpuExecutor::new(ctx, &plan).map_err(err)?),
                    None => Runner::Cpu(Box::new(CpuExecutor::new(&plan).map_err(err)?)),
                };
                *cache = Some(Compiled { batch, gpu: gpu_run, version, plan, runner });
            }
            let c = cache.as_ref().expect("compiled above");
            if shape != c.plan.input_shape() {
                return Err(PyValueError::new_err(format!(
                    "x has shape {shape:?}; this model takes {:?}",
                    c.plan.input_shape()
                )));
            }
            let out_len: usize = c.plan.output_shape().iter().product();
            if output.1 != out_len {
                return Err(PyValueError::new_err(format!(
                    "out holds {} floats, the output {out_len}",
                    output.1
                )));
            }
            // SAFETY: the PyBuffers held by the caller keep both arrays alive and in place
            // for this call; x is read only, out written only here.
            let xs = unsafe { std::slice::from_raw_parts(input.0, input.1) };
            let view = ArrayViewD::from_shape(shape.clone(), xs)
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            let y = match &c.runner {
                Runner::Cpu(r) => r.run(view),
                Runner::Gpu(r) => r.run(view),
            }
            .map_err(err)?;
            // SAFETY: as above; out holds out_len floats (checked).
            let os = unsafe { std::slice::from_raw_parts_mut(output.0.cast_mut(), output.1) };
            for (o, v) in os.iter_mut().zip(y.iter()) {
                *o = *v;
            }
            Ok(())
        })
    }

    /// The output shape for a batch of `n` images.
    fn output_shape(&self, n: usize) -> PyResult<Vec<usize>> {
        Ok(Plan::compile(&self.net, n, PlanOptions::default()).map_err(err)?.output_shape())
    }

    fn __repr__(&self) -> String {
        let s = &self.net.input;
        format!("<perforate.Model '{}' {}x{}x{}>", self.net.name, s.channels, s.height, s.width)
    }
}

fn json_to_py(py: Python<'_>, v: &serde_json::Value) -> PyResult<Py<PyAny>> {
    let json = py.import("json")?;
    Ok(json.call_method1("loads", (v.to_string(),))?.unbind())
}

/// Loads a model: an `.onnx` file, a perforate `.json` network, or a zoo name
/// (`"resnet18"`, `"fashion_vgg"`, ...: random weights).
#[pyfunction]
fn load(py: Python<'_>, spec: &str) -> PyResult<Model> {
    let spec = spec.to_string();
    let net = py.detach(move || perforate::network::load(&spec)).map_err(err)?;
    Ok(Model { net, version: 0, compiled: Mutex::new(None) })
}

/// The GPU adapters wgpu can see, one line each ("" when there are none).
#[pyfunction]
fn adapters(py: Python<'_>) -> Vec<String> {
    py.detach(|| GpuContext::new().map(|c| vec![c.describe()]).unwrap_or_default())
}

/// Fashion-MNIST from the Debian package (or `directory`), normalised as the shipped
/// models expect: (images float32 [N, 1, 28, 28], labels uint32 [N]) as flat lists of
/// bytes for `perforate.fashion_mnist` to wrap.
#[pyfunction]
#[pyo3(signature = (train, directory = None))]
fn fashion_mnist_raw(
    py: Python<'_>,
    train: bool,
    directory: Option<String>,
) -> PyResult<(Vec<u8>, Vec<u8>, usize)> {
    let d = py
        .detach(|| perforate::data::fashion_mnist(directory.as_deref().map(Path::new), train))
        .map_err(err)?;
    let (mean, std) = (0.286_040_6f32, 0.353_024_24f32);
    let images: Vec<u8> = d.images.iter().flat_map(|v| ((v - mean) / std).to_ne_bytes()).collect();
    let labels: Vec<u8> = d.labels.iter().flat_map(|l| l.to_ne_bytes()).collect();
    Ok((images, labels, d.len()))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(adapters, m)?)?;
    m.add_function(wrap_pyfunction!(fashion_mnist_raw, m)?)?;
    m.add("PerforateError", m.py().get_type::<PerforateError>())?;
    Ok(())
}
