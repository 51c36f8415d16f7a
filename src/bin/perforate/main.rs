//! The `perforate` command: a thin layer over the library (argument parsing, progress,
//! tables, JSON and plots). Exit codes: 0 ok, 1 runtime failure, 2 usage or input error.

mod commands;
mod demo;
mod inputs;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use perforate::train::{Method, SearchStrategy};

/// Perforated convolutional networks: inspect, run, evaluate, perforate (greedy search),
/// fine-tune, train, benchmark and check CPU/GPU parity.
#[derive(Parser)]
#[command(name = "perforate", version, about)]
pub struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// The CPU executor.
    Cpu,
    /// The GPU executor (wgpu).
    Gpu,
    /// Both (bench only).
    All,
}

/// Cost model of the search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CostArg {
    /// Theoretical FLOPs.
    Flops,
    /// Measured CPU latency.
    Cpu,
    /// Measured GPU latency.
    Gpu,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Layers, shapes, FLOPs per layer, perforable convs, and the GPU adapter.
    Info {
        /// Model: .onnx, network .json, or a zoo name.
        model: String,
        /// Perforation plan to apply.
        #[arg(long)]
        plan: Option<PathBuf>,
    },
    /// Classify inputs: .npy tensors (N×C×H×W), IDX image files, PNG/JPEG images.
    Run {
        /// Model.
        model: String,
        /// Inputs. A .npy tensor of any float or integer dtype is converted to float32
        /// value by value, as the model sees it: uint8 images stay 0-255 (nothing is
        /// rescaled or normalised); bool, complex and string arrays are refused.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Perforation plan to apply.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Executor.
        #[arg(long, value_enum, default_value_t = Device::Cpu)]
        device: Device,
        /// Write the raw outputs here (.npy).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Classes to print per image.
        #[arg(long, default_value_t = 3)]
        top: usize,
    },
    /// Loss and top-1 / top-5 error on a labelled data set (CPU).
    Eval {
        /// Model.
        model: String,
        /// Perforation plan to apply.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Data set: `fashion`, `sample`, or a folder of IDX files (its test split).
        #[arg(long)]
        data: String,
        /// Evaluate the first N images only.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Greedy network-wide perforation to a target speedup; writes a plan and a log.
    Search {
        /// Model.
        model: String,
        /// Data set whose training split scores the loss.
        #[arg(long)]
        data: String,
        /// Target speedup.
        #[arg(long, default_value_t = 2.0)]
        target_speedup: f64,
        /// Mask strategy: uniform, grid, pooling_structure, impact, iterative_impact.
        #[arg(long, default_value = "impact", value_parser = parse_strategy)]
        strategy: SearchStrategy,
        /// Cost model.
        #[arg(long, value_enum, default_value_t = CostArg::Flops)]
        cost: CostArg,
        /// Images scoring the loss (from the end of the training split).
        #[arg(long, default_value_t = 1000)]
        images: usize,
        /// Where to write the perforation plan.
        #[arg(long, default_value = "plan.json")]
        plan_out: PathBuf,
        /// Where to write the per-step log (JSON).
        #[arg(long, default_value = "search-log.json")]
        log: PathBuf,
        /// Write the chosen kept fraction of every layer as a bar chart (SVG) here.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Fine-tune a perforated model with its masks fixed.
    Finetune {
        /// Model.
        model: String,
        /// Perforation plan.
        #[arg(long)]
        plan: PathBuf,
        /// Data set (training split for tuning, test split for reporting).
        #[arg(long)]
        data: String,
        /// Epochs.
        #[arg(long, default_value_t = 1)]
        epochs: usize,
        /// Learning rate.
        #[arg(long, default_value_t = 1e-3)]
        lr: f32,
        /// Tune on the first N training images only.
        #[arg(long)]
        limit: Option<usize>,
        /// Where to write the tuned network (JSON; apply the same plan to it).
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Train a zoo network from scratch on Fashion-MNIST.
    Train {
        /// Zoo network (fashion_nin, fashion_vgg, fashion_resnet).
        zoo: String,
        /// Data set.
        #[arg(long, default_value = "fashion")]
        data: String,
        /// Where to write the trained network (JSON).
        #[arg(long, short)]
        out: PathBuf,
        /// Epochs.
        #[arg(long, default_value_t = 10)]
        epochs: usize,
        /// Images per step.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Base learning rate (cosine schedule).
        #[arg(long, default_value_t = 0.05)]
        lr: f32,
        /// Channel width multiplier.
        #[arg(long, default_value_t = 1.0)]
        width: f64,
        /// Train on the first N images only.
        #[arg(long)]
        limit: Option<usize>,
        /// Random-crop padding in pixels (0: off).
        #[arg(long, default_value_t = 2)]
        crop: usize,
        /// Seed of weights, shuffling and augmentation.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Every mask strategy and baseline at 2x/3x/4x, before and after fine-tuning:
    /// table, JSON and an SVG plot in OUT.
    Experiment {
        /// Trained model.
        model: String,
        /// Data set.
        #[arg(long, default_value = "fashion")]
        data: String,
        /// Output folder.
        #[arg(long, short)]
        out: PathBuf,
        /// Methods (default: all): uniform, grid, pooling_structure, impact,
        /// iterative_impact, stride, zeros, resize.
        #[arg(long, value_delimiter = ',', value_parser = parse_method)]
        methods: Vec<Method>,
        /// Fine-tuning images.
        #[arg(long, default_value_t = 5000)]
        finetune_images: usize,
        /// Do not run: redraw the table and plot from this rows.json.
        #[arg(long)]
        rows: Option<PathBuf>,
    },
    /// Portable benchmark: dense vs perforated latency, theoretical vs measured speedup.
    Bench {
        /// Model (default: the standard suite).
        #[arg(conflicts_with = "suite")]
        model: Option<String>,
        /// A named suite: `standard` is NIN, AlexNet, VGG-16, ResNet-18 and ResNet-50 at
        /// width 1/4 and about half resolution, so it runs on any adapter in seconds.
        #[arg(long)]
        suite: Option<String>,
        /// Executors.
        #[arg(long, value_enum, default_value_t = Device::All)]
        device: Device,
        /// Kept fraction of every perforable conv.
        #[arg(long, default_value_t = 0.5)]
        q: f64,
        /// Images per run.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Timed runs per case (best is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Write a latency bar chart (SVG) here.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// The executor's fp32 peak in GFLOP/s: adds percent-of-peak to every row.
        #[arg(long)]
        peak_gflops: Option<f64>,
    },
    /// CPU vs GPU on the same input, per layer: max and mean absolute difference.
    Parity {
        /// Model.
        model: String,
        /// Perforation plan to apply.
        #[arg(long)]
        plan: Option<PathBuf>,
        /// Images.
        #[arg(long, default_value_t = 2)]
        batch: usize,
    },
    /// The README's main job: a trained Fashion-MNIST model, perforated to 2x; accuracy,
    /// speedup and parity, dense vs perforated, on CPU and GPU.
    Demo {
        /// Data set (default: Fashion-MNIST when installed, else the committed sample).
        #[arg(long)]
        data: Option<String>,
    },
}

/// A failure with its exit code: 2 for bad usage or input, 1 for runtime failures.
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// What went wrong and what to do next.
    pub message: String,
}

impl Failure {
    /// A usage or input error (exit code 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure { code: 2, message: message.into() }
    }

    /// A library error: bad input (data, model, argument, shape) is 2, anything else 1;
    /// `hint` says what to do next.
    pub fn input(e: perforate::Error, hint: &str) -> Self {
        use perforate::Error as E;
        let code = match e {
            E::Data(_)
            | E::Model(_)
            | E::InvalidArgument(_)
            | E::Shape { .. }
            | E::Mask(_)
            | E::Geometry(_) => 2,
            _ => 1,
        };
        let message = if hint.is_empty() { e.to_string() } else { format!("{e} ({hint})") };
        Failure { code, message }
    }

    /// A runtime failure (exit code 1).
    pub fn runtime(e: impl std::fmt::Display, hint: &str) -> Self {
        let message = if hint.is_empty() { e.to_string() } else { format!("{e} ({hint})") };
        Failure { code: 1, message }
    }
}

/// `--strategy`: a mask strategy by name (the error lists the known ones).
fn parse_strategy(name: &str) -> Result<SearchStrategy, String> {
    name.parse().map_err(|e: perforate::Error| e.to_string())
}

/// One entry of `--methods`.
fn parse_method(name: &str) -> Result<Method, String> {
    name.parse().map_err(|e: perforate::Error| e.to_string())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            e.print().ok();
            return ExitCode::from(code);
        }
    };
    let json = cli.json;
    let result = match cli.command {
        Command::Demo { data } => demo::demo(data.as_deref(), json),
        Command::Bench { model, suite, device, q, batch, runs, plot, peak_gflops } => {
            match suite.as_deref() {
                Some(s) if s != "standard" => {
                    Err(Failure::usage(format!("unknown suite '{s}'; the one suite is 'standard'")))
                }
                _ if peak_gflops.is_some_and(|p| !(p > 0.0 && p.is_finite())) => {
                    Err(Failure::usage("--peak-gflops must be a positive number".to_string()))
                }
                _ => {
                    let case = demo::BenchCase { q, batch, runs, peak_gflops };
                    demo::bench(model.as_deref(), device, case, plot.as_deref(), json)
                }
            }
        }
        Command::Parity { model, plan, batch } => demo::parity(&model, plan.as_deref(), batch, json),
        Command::Info { model, plan } => commands::info(&model, plan.as_deref(), json),
        Command::Run { model, inputs, plan, device, output, top } => {
            commands::classify(&model, &inputs, plan.as_deref(), device, output.as_deref(), top, json)
        }
        Command::Eval { model, plan, data, limit } => {
            commands::eval(&model, plan.as_deref(), &data, limit, json)
        }
        Command::Search { model, data, target_speedup, strategy, cost, images, plan_out, log, plot } => {
            let args = commands::SearchArgs { target_speedup, strategy, cost, images, plan_out, log, plot };
            commands::search(&model, &data, args, json)
        }
        Command::Finetune { model, plan, data, epochs, lr, limit, out } => {
            commands::finetune(&model, &plan, &data, (epochs, lr, limit), &out, json)
        }
        Command::Train { zoo, data, out, epochs, batch, lr, width, limit, crop, seed } => {
            let args = commands::TrainArgs { epochs, batch, lr, width, limit, crop, seed };
            commands::train_zoo(&zoo, &data, &out, args, json)
        }
        Command::Experiment { model, data, out, methods, finetune_images, rows } => {
            commands::experiment(&model, &data, &out, (methods, finetune_images), rows.as_deref(), json)
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
