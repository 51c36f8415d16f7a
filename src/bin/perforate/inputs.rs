//! Reading what the user names on the command line: models, data sets, input tensors.

use std::path::{Path, PathBuf};

use perforate::data::{self, Dataset};
use perforate::network::zoo::{self, ZooConfig};
use perforate::network::{Network, PerforationPlan};

use crate::Failure;

/// Fashion-MNIST's training-set mean and standard deviation; every Fashion model of this
/// tool is trained and evaluated on images normalised with them.
pub const FASHION_MEAN: f32 = 0.286_040_6;
/// See [`FASHION_MEAN`].
pub const FASHION_STD: f32 = 0.353_024_24;

/// The folder of the 1,000-image sample committed with the repository.
pub fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/fashion-mnist-sample")
}

/// A model: an ONNX file, a network JSON file (as `train` writes), or a zoo name.
pub fn model(spec: &str) -> Result<Network, Failure> {
    model_and_rank(spec).map(|(net, _)| net)
}

/// [`model`], with the output rank an ONNX model declares (`None` for other models).
pub fn model_and_rank(spec: &str) -> Result<(Network, Option<usize>), Failure> {
    let path = Path::new(spec);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "onnx" {
        return perforate::onnx::load(path)
            .map(|m| (m.network, m.output_rank))
            .map_err(|e| Failure::input(e, "check the model path"));
    }
    if ext == "json" {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("{spec}: cannot read: {e}; check the model path")))?;
        return Network::from_json(&text)
            .map(|net| (net, None))
            .map_err(|e| Failure::input(e, "is it a network written by `perforate train`?"));
    }
    if zoo::NAMES.contains(&spec) || zoo::FASHION.contains(&spec) {
        let config = if zoo::FASHION.contains(&spec) {
            ZooConfig { resolution: Some(28), classes: Some(10), ..Default::default() }
        } else {
            ZooConfig::default()
        };
        return zoo::build(spec, config).map(|net| (net, None)).map_err(|e| Failure::input(e, ""));
    }
    Err(Failure::usage(format!(
        "'{spec}' is not a .onnx or .json model file nor a zoo network ({}, {})",
        zoo::NAMES.join(", "),
        zoo::FASHION.join(", ")
    )))
}

/// `model` with the perforation plan at `plan` applied, when given.
pub fn model_with_plan(spec: &str, plan: Option<&Path>) -> Result<Network, Failure> {
    let mut net = model(spec)?;
    apply_plan(&mut net, plan)?;
    Ok(net)
}

/// Applies the perforation plan at `plan`, when given.
pub fn apply_plan(net: &mut Network, plan: Option<&Path>) -> Result<(), Failure> {
    if let Some(p) = plan {
        let plan = PerforationPlan::load(p).map_err(|e| Failure::input(e, "check the plan path"))?;
        plan.apply(net).map_err(|e| Failure::input(e, "was the plan made for this model?"))?;
    }
    Ok(())
}

/// Which split of a data set.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// A labelled data set: `fashion` (the Debian package's Fashion-MNIST), `sample` (the
/// committed sample; its one split serves both), or a folder of IDX files. Normalised
/// with the Fashion statistics.
pub fn dataset(spec: &str, split: Split) -> Result<Dataset, Failure> {
    let dir = match spec {
        "fashion" => PathBuf::from(data::FASHION_MNIST_DIR),
        "sample" => sample_dir(),
        other => PathBuf::from(other),
    };
    if !dir.is_dir() {
        return Err(Failure::usage(format!(
            "data set '{spec}' is not a folder of IDX files (or 'fashion', 'sample'); for Fashion-MNIST: apt-get install dataset-fashion-mnist"
        )));
    }
    let has = |prefix: &str| {
        dir.join(format!("{prefix}-images-idx3-ubyte.gz")).exists()
            || dir.join(format!("{prefix}-images-idx3-ubyte")).exists()
    };
    let train = match split {
        Split::Train => has("train"),
        Split::Test => !has("t10k"),
    };
    let mut d = data::fashion_mnist(Some(&dir), train).map_err(|e| Failure::input(e, ""))?;
    d.normalize(&[FASHION_MEAN], &[FASHION_STD]).map_err(|e| Failure::input(e, ""))?;
    Ok(d)
}

/// Checks that `data` fits `net`'s input, naming both.
pub fn fits(net: &Network, data: &Dataset) -> Result<(), Failure> {
    data.check_fits(net).map_err(|e| Failure::input(e, "pick a model and data set of the same image size"))
}
