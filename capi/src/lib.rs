//! The C API of perforate: opaque handles for a GPU context, a model and a compiled
//! executor; caller-owned float buffers; status codes plus a per-thread message.
//!
//! Every function returns a [`PerforateStatus`] (0 is success) and never unwinds into C:
//! a panic inside the library becomes `PERFORATE_STATUS_INTERNAL` with its message. The header
//! `include/perforate.h` is written by cbindgen from this file (`build.rs`).
//!
//! Thread safety: a context and a compiled executor may be used from several threads at
//! once (runs of one executor take turns); a model must not be changed (`apply_plan`,
//! `perforate_all`) while another thread reads it. Errors are kept per thread.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use ndarray::ArrayViewD;
use perforate::cpu::CpuExecutor;
use perforate::gpu::{GpuContext, GpuExecutor};
use perforate::network::{Network, PerforationPlan};
use perforate::plan::{Plan, PlanOptions};
use perforate::Error;

/// What a call returned: 0 for success, otherwise the kind of failure
/// ([`perforate_last_error`] has the message).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PerforateStatus {
    /// Success.
    Ok = 0,
    /// A null pointer, a non-UTF-8 string or an argument out of range.
    InvalidArgument = 1,
    /// A model or plan file that cannot be read, is malformed or uses something unsupported.
    Model = 2,
    /// A buffer of the wrong length or a tensor of the wrong shape.
    Shape = 3,
    /// No GPU adapter, or the device could not be created.
    NoGpu = 4,
    /// The GPU failed, was lost or ran out of memory (create a new context to carry on).
    Gpu = 5,
    /// Something does not fit the device or an index range.
    TooLarge = 6,
    /// A bug in perforate (a panic caught at the boundary); please report it.
    Internal = 7,
}

/// A GPU device and its compiled kernels, shared by executors.
pub struct PerforateContext(GpuContext);

/// A network: loaded from an ONNX file, a perforate JSON model or a zoo name.
pub struct PerforateModel(Network);

/// A network compiled for one batch size, ready to run on the CPU or the GPU.
pub struct PerforateExecutor {
    plan: Plan,
    run: Runner,
}

enum Runner {
    Cpu(Box<CpuExecutor>),
    Gpu(GpuExecutor),
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_error(message: &str) {
    let text = CString::new(message.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = text);
}

fn status_of(e: &Error) -> PerforateStatus {
    match e.root() {
        Error::Geometry(_) | Error::Mask(_) | Error::InvalidArgument(_) => PerforateStatus::InvalidArgument,
        Error::Shape { .. } => PerforateStatus::Shape,
        Error::TooLarge(_) => PerforateStatus::TooLarge,
        Error::NoAdapter(_) | Error::DeviceRequest(_) => PerforateStatus::NoGpu,
        Error::DeviceLost(_) | Error::OutOfMemory(_) | Error::Gpu(_) => PerforateStatus::Gpu,
        Error::Model(_) | Error::Data(_) => PerforateStatus::Model,
        // `root` unwraps every layer wrapper.
        Error::Layer { .. } => PerforateStatus::InvalidArgument,
    }
}

/// Runs `f`, recording its error message, and turns a panic into `Internal`.
fn guard(f: impl FnOnce() -> Result<(), (PerforateStatus, String)>) -> PerforateStatus {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_error("");
            PerforateStatus::Ok
        }
        Ok(Err((status, message))) => {
            set_error(&message);
            status
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            set_error(&format!("internal error (please report): {what}"));
            PerforateStatus::Internal
        }
    }
}

fn lib(e: Error) -> (PerforateStatus, String) {
    (status_of(&e), e.to_string())
}

fn invalid(message: impl Into<String>) -> (PerforateStatus, String) {
    (PerforateStatus::InvalidArgument, message.into())
}

/// A UTF-8 string argument, or an error naming it.
///
/// # Safety
/// `s` is null or a NUL-terminated string.
unsafe fn text<'a>(s: *const c_char, what: &str) -> Result<&'a str, (PerforateStatus, String)> {
    if s.is_null() {
        return Err(invalid(format!("{what} is null")));
    }
    // SAFETY: the caller passes a NUL-terminated string.
    unsafe { CStr::from_ptr(s) }.to_str().map_err(|_| invalid(format!("{what} is not UTF-8")))
}

/// A reference behind a handle, or an error naming it.
///
/// # Safety
/// `p` is null or a live handle of this type.
unsafe fn handle<'a, T>(p: *const T, what: &str) -> Result<&'a T, (PerforateStatus, String)> {
    // SAFETY: the caller passes null or a live handle.
    unsafe { p.as_ref() }.ok_or_else(|| invalid(format!("{what} is null")))
}

/// The message of the last failed call on this thread ("" after a success). Valid until
/// the next call on this thread; never null.
#[no_mangle]
pub extern "C" fn perforate_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Loads a model: a `.onnx` file, a perforate `.json` network, or a zoo name such as
/// `"resnet18"` or `"fashion_vgg"` (random weights). Free it with [`perforate_model_free`].
///
/// # Safety
/// `spec` is a NUL-terminated string; `out` points to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn perforate_model_load(
    spec: *const c_char,
    out: *mut *mut PerforateModel,
) -> PerforateStatus {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let spec = unsafe { text(spec, "spec") }?;
        if out.is_null() {
            return Err(invalid("out is null"));
        }
        let net = perforate::network::load(spec).map_err(lib)?;
        // SAFETY: out was checked non-null; the caller owns the storage.
        unsafe { *out = Box::into_raw(Box::new(PerforateModel(net))) };
        Ok(())
    })
}

/// Frees a model (null is allowed).
///
/// # Safety
/// `model` is null or a handle from [`perforate_model_load`], not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn perforate_model_free(model: *mut PerforateModel) {
    if !model.is_null() {
        // SAFETY: the handle came from Box::into_raw and is freed once.
        drop(unsafe { Box::from_raw(model) });
    }
}

/// The input of one image: channels, height and width.
///
/// # Safety
/// `model` is a live handle; the three pointers are writable.
#[no_mangle]
pub unsafe extern "C" fn perforate_model_input(
    model: *const PerforateModel,
    channels: *mut usize,
    height: *mut usize,
    width: *mut usize,
) -> PerforateStatus {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let m = unsafe { handle(model, "model") }?;
        if channels.is_null() || height.is_null() || width.is_null() {
            return Err(invalid("an output pointer is null"));
        }
        let i = &m.0.input;
        // SAFETY: checked non-null; the caller owns the storage.
        unsafe {
            *channels = i.channels;
            *height = i.height;
            *width = i.width;
        }
        Ok(())
    })
}

/// Applies a perforation plan file (written by `perforate search`) to the model.
///
/// # Safety
/// `model` is a live handle no other thread uses; `plan_path` a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn perforate_model_apply_plan(
    model: *mut PerforateModel,
    plan_path: *const c_char,
) -> PerforateStatus {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let path = unsafe { text(plan_path, "plan_path") }?;
        // SAFETY: the caller passes a live handle used by no other thread.
        let m = unsafe { model.as_mut() }.ok_or_else(|| invalid("model is null"))?;
        let plan = PerforationPlan::load(path).map_err(lib)?;
        plan.apply(&mut m.0).map_err(lib)
    })
}

/// Perforates every perforable conv uniformly, keeping `kept_fraction` of its outputs
/// (0 < q ≤ 1; masks drawn from `seed`); writes how many convs were perforated.
///
/// # Safety
/// `model` is a live handle no other thread uses; `perforated` is null or writable.
#[no_mangle]
pub unsafe extern "C" fn perforate_model_perforate_all(
    model: *mut PerforateModel,
    kept_fraction: f64,
    seed: u64,
    perforated: *mut usize,
) -> PerforateStatus {
    guard(|| {
        // SAFETY: the caller passes a live handle used by no other thread.
        let m = unsafe { model.as_mut() }.ok_or_else(|| invalid("model is null"))?;
        let names = m.0.perforate_all(kept_fraction, seed).map_err(lib)?;
        if !perforated.is_null() {
            // SAFETY: checked non-null; the caller owns the storage.
            unsafe { *perforated = names.len() };
        }
        Ok(())
    })
}

/// The model's theoretical speedup from perforation (dense FLOPs / perforated FLOPs).
///
/// # Safety
/// `model` is a live handle; `speedup` is writable.
#[no_mangle]
pub unsafe extern "C" fn perforate_model_speedup(
    model: *const PerforateModel,
    speedup: *mut f64,
) -> PerforateStatus {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let m = unsafe { handle(model, "model") }?;
        if speedup.is_null() {
            return Err(invalid("speedup is null"));
        }
        let s = m.0.theoretical_speedup().map_err(lib)?;
        // SAFETY: checked non-null.
        unsafe { *speedup = s };
        Ok(())
    })
}

/// Creates a GPU context on the best adapter (`PERFORATE_STATUS_NO_GPU` when there is none).
///
/// # Safety
/// `out` points to writable storage for a handle.
#[no_mangle]
pub unsafe extern "C" fn perforate_context_new(out: *mut *mut PerforateContext) -> PerforateStatus {
    guard(|| {
        if out.is_null() {
            return Err(invalid("out is null"));
        }
        let ctx = GpuContext::new().map_err(lib)?;
        // SAFETY: checked non-null.
        unsafe { *out = Box::into_raw(Box::new(PerforateContext(ctx))) };
        Ok(())
    })
}

/// Frees a context (null is allowed); executors built on it keep the device alive.
///
/// # Safety
/// `ctx` is null or a handle from [`perforate_context_new`], not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn perforate_context_free(ctx: *mut PerforateContext) {
    if !ctx.is_null() {
        // SAFETY: the handle came from Box::into_raw and is freed once.
        drop(unsafe { Box::from_raw(ctx) });
    }
}

/// Compiles the model for `batch` images: on the GPU of `ctx`, or on the CPU when `ctx` is
/// null. The executor holds its own copy of the weights: the model may be freed after.
///
/// # Safety
/// `model` is a live handle; `ctx` is null or a live handle; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn perforate_compile(
    model: *const PerforateModel,
    batch: usize,
    ctx: *const PerforateContext,
    out: *mut *mut PerforateExecutor,
) -> PerforateStatus {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let m = unsafe { handle(model, "model") }?;
        if out.is_null() {
            return Err(invalid("out is null"));
        }
        let plan = Plan::compile(&m.0, batch, PlanOptions::default()).map_err(lib)?;
        // SAFETY: null or a live handle, as the caller promises.
        let run = match unsafe { ctx.as_ref() } {
            Some(c) => Runner::Gpu(GpuExecutor::new(&c.0, &plan).map_err(lib)?),
            None => Runner::Cpu(Box::new(CpuExecutor::new(&plan).map_err(lib)?)),
        };
        // SAFETY: checked non-null.
        unsafe { *out = Box::into_raw(Box::new(PerforateExecutor { plan, run })) };
        Ok(())
    })
}

/// Frees an executor (null is allowed).
///
/// # Safety
/// `exec` is null or a handle from [`perforate_compile`], not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn perforate_executor_free(exec: *mut PerforateExecutor) {
    if !exec.is_null() {
        // SAFETY: the handle came from Box::into_raw and is freed once.
        drop(unsafe { Box::from_raw(exec) });
    }
}

/// The number of floats a run reads (`input_len`: batch·C·H·W) and writes (`output_len`).
///
/// # Safety
/// `exec` is a live handle; the two pointers are writable.
#[no_mangle]
pub unsafe extern "C" fn perforate_executor_lengths(
    exec: *const PerforateExecutor,
    input_len: *mut usize,
    output_len: *mut usize,
) -> PerforateStatus {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let e = unsafe { handle(exec, "executor") }?;
        if input_len.is_null() || output_len.is_null() {
            return Err(invalid("an output pointer is null"));
        }
        // SAFETY: checked non-null.
        unsafe {
            *input_len = e.plan.input_shape().iter().product();
            *output_len = e.plan.output_shape().iter().product();
        }
        Ok(())
    })
}

/// Runs the network on `input` (`input_len` floats, NCHW) and writes `output_len` floats
/// (the lengths [`perforate_executor_lengths`] gives; others are `PERFORATE_STATUS_SHAPE`).
/// Non-finite inputs are allowed and travel as in onnxruntime.
///
/// # Safety
/// `exec` is a live handle; `input` holds `input_len` floats; `output` has room for
/// `output_len` floats.
#[no_mangle]
pub unsafe extern "C" fn perforate_run(
    exec: *const PerforateExecutor,
    input: *const f32,
    input_len: usize,
    output: *mut f32,
    output_len: usize,
) -> PerforateStatus {
    guard(|| {
        // SAFETY: forwarded from the caller.
        let e = unsafe { handle(exec, "executor") }?;
        if input.is_null() || output.is_null() {
            return Err(invalid("input or output is null"));
        }
        let shape = e.plan.input_shape();
        let want_in: usize = shape.iter().product();
        let want_out: usize = e.plan.output_shape().iter().product();
        if input_len != want_in || output_len != want_out {
            return Err((
                PerforateStatus::Shape,
                format!(
                    "input holds {input_len} floats and output {output_len}; this executor reads \
                     {want_in} ({shape:?}) and writes {want_out}"
                ),
            ));
        }
        // SAFETY: the caller promises input_len readable floats.
        let x = unsafe { std::slice::from_raw_parts(input, input_len) };
        let x = ArrayViewD::from_shape(shape, x).map_err(|err| invalid(err.to_string()))?;
        let y = match &e.run {
            Runner::Cpu(r) => r.run(x),
            Runner::Gpu(r) => r.run(x),
        }
        .map_err(lib)?;
        // SAFETY: the caller promises room for output_len floats.
        let out = unsafe { std::slice::from_raw_parts_mut(output, output_len) };
        for (o, v) in out.iter_mut().zip(y.iter()) {
            *o = *v;
        }
        Ok(())
    })
}
