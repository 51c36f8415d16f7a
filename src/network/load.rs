//! A network from what a user types: a model file or a zoo name.

use std::path::Path;

use super::zoo::{self, ZooConfig};
use super::Network;
use crate::error::{Error, Result};

/// Loads a network from `spec`: an `.onnx` file (either PyTorch exporter), a perforate
/// `.json` network (as `perforate train` and `Network::to_json` write), or a zoo name
/// (`zoo::NAMES` at their native size; `zoo::FASHION` at 28x28 with 10 classes; seeded
/// random weights). What the C API and the Python package load; the command line adds
/// its own hints to the same cases.
///
/// # Errors
/// [`Error::Model`] naming `spec` when the file cannot be read or parsed, or it is none of
/// these; the importer's errors for ONNX files.
pub fn load(spec: &str) -> Result<Network> {
    let path = Path::new(spec);
    match path.extension().and_then(|e| e.to_str()) {
        Some("onnx") => crate::onnx::load(path).map(|m| m.network),
        Some("json") => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::Model(format!("{spec}: cannot read: {e}")))?;
            Network::from_json(&text)
        }
        _ if zoo::FASHION.contains(&spec) => {
            zoo::build(spec, ZooConfig { resolution: Some(28), classes: Some(10), ..Default::default() })
        }
        _ if zoo::NAMES.contains(&spec) => zoo::build(spec, ZooConfig::default()),
        _ => Err(Error::Model(format!(
            "'{spec}' is not a .onnx or .json model file nor a zoo network ({}, {})",
            zoo::NAMES.join(", "),
            zoo::FASHION.join(", ")
        ))),
    }
}
