//! The `perforate` command: a thin layer over the library (argument parsing, progress,
//! tables and JSON). Exit codes: 0 ok, 1 runtime failure, 2 usage error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use perforate::data::{self, Dataset};
use perforate::network::zoo::{self, ZooConfig};
use perforate::network::Network;
use perforate::train::{self, LrSchedule, TrainConfig};

/// Perforated convolutional networks: train, perforate, evaluate and benchmark.
#[derive(Parser)]
#[command(name = "perforate", version, about)]
struct Cli {
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a zoo network from scratch on Fashion-MNIST and save it as JSON.
    Train {
        /// Zoo network (fashion_nin, fashion_vgg, fashion_resnet, ...).
        zoo: String,
        /// Folder with the Fashion-MNIST IDX files (default: the Debian package's).
        #[arg(long)]
        data: Option<PathBuf>,
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
        /// Channel width multiplier of the zoo network.
        #[arg(long, default_value_t = 1.0)]
        width: f64,
        /// Train on the first N images only.
        #[arg(long)]
        limit: Option<usize>,
        /// Random-crop padding in pixels (0: off).
        #[arg(long, default_value_t = 2)]
        crop: usize,
        /// Random horizontal flips.
        #[arg(long, default_value_t = true)]
        flip: bool,
        /// Seed of weights, shuffling and augmentation.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// A failure with its exit code: 2 for bad usage or input, 1 for runtime failures.
struct Failure {
    code: u8,
    message: String,
}

fn usage(message: impl Into<String>) -> Failure {
    Failure { code: 2, message: message.into() }
}

fn runtime(e: perforate::Error) -> Failure {
    let code = match e {
        perforate::Error::Data(_) | perforate::Error::Model(_) | perforate::Error::InvalidArgument(_) => 2,
        _ => 1,
    };
    Failure { code, message: e.to_string() }
}

/// Fashion-MNIST train and test splits, normalised with the training statistics.
fn fashion(dir: Option<&std::path::Path>, limit: Option<usize>) -> Result<(Dataset, Dataset), Failure> {
    let mut tr = data::fashion_mnist(dir, true).map_err(runtime)?;
    let mut te = data::fashion_mnist(dir, false).map_err(runtime)?;
    if let Some(n) = limit {
        tr = tr.take(n);
    }
    let (mean, std) = tr.channel_stats();
    tr.normalize(&mean, &std).map_err(runtime)?;
    te.normalize(&mean, &std).map_err(runtime)?;
    Ok((tr, te))
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Train { zoo: name, data, out, epochs, batch, lr, width, limit, crop, flip, seed } => {
            let config = ZooConfig { width, resolution: Some(28), classes: Some(10), seed };
            let mut net: Network = zoo::build(&name, config).map_err(runtime)?;
            let (tr, te) = fashion(data.as_deref(), limit)?;
            let cfg = TrainConfig {
                epochs,
                batch_size: batch,
                lr,
                schedule: LrSchedule::Cosine,
                crop_padding: crop,
                flip,
                seed,
                checkpoint: Some(out.clone()),
                ..Default::default()
            };
            eprintln!("training {name} (width {width}) on {} images, testing on {}", tr.len(), te.len());
            let json = cli.json;
            let logs = train::train(&mut net, &tr, Some(&te), &cfg, |log| {
                if json {
                    println!("{}", serde_json::to_string(log).unwrap_or_default());
                } else {
                    let t = log.test.expect("test set given");
                    println!(
                        "epoch {:>3}  lr {:.4}  train loss {:.4}  train err {:5.2}%  test loss {:.4}  top-1 err {:5.2}%  top-5 err {:5.2}%  {:.0} img/s",
                        log.epoch,
                        log.lr,
                        log.train_loss,
                        100.0 * log.train_error,
                        t.loss,
                        100.0 * t.top1_error,
                        100.0 * t.top5_error,
                        log.images_per_second
                    );
                }
            })
            .map_err(runtime)?;
            std::fs::write(&out, net.to_json().map_err(runtime)?)
                .map_err(|e| usage(format!("{}: cannot write: {e}", out.display())))?;
            if let Some(last) = logs.last().and_then(|l| l.test) {
                eprintln!("saved {} (test accuracy {:.2}%)", out.display(), 100.0 * (1.0 - last.top1_error));
            }
            Ok(())
        }
    }
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
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
