//! ONNX import: a trained model (PyTorch, Keras, ... exported to ONNX) becomes a
//! [`Network`]. Decoding is prost's ([`proto`]); this module maps the graph's operators
//! onto layers and reports everything it cannot map with the op type, the node name and
//! the supported list.

mod batch_index;
mod channels;
mod conv;
mod fold;
mod import;
mod nd;
mod ops;
pub mod proto;
mod select;
mod shapes;
mod spatial;
mod tensor;

use std::path::{Path, PathBuf};

pub use import::SUPPORTED_OPS;

use crate::error::{Error, Result};
use crate::network::Network;

/// A model imported from ONNX.
#[derive(Clone, Debug)]
pub struct OnnxModel {
    /// The network (weights included).
    pub network: Network,
    /// Name of the graph input.
    pub input_name: String,
    /// Input shape `[N, C, H, W]`; `None` for a dynamic (symbolic or absent) batch size.
    pub input_shape: [Option<usize>; 4],
    /// Names of the graph outputs.
    pub output_names: Vec<String>,
    /// Rank the graph declares for its output, when it declares one (2 for `[N, classes]`;
    /// the network itself returns `[N, C, H, W]`, with H = W = 1 for flat outputs).
    pub output_rank: Option<usize>,
    /// Version of the default (`ai.onnx`) operator set.
    pub opset: i64,
    /// Producer recorded in the file (for example `pytorch 2.5`).
    pub producer: String,
}

/// Oldest and newest supported versions of the default operator set.
pub const OPSETS: std::ops::RangeInclusive<i64> = 9..=21;

/// Loads an ONNX model; weights stored as external data are read from files beside it.
pub fn load(path: impl AsRef<Path>) -> Result<OnnxModel> {
    let path = path.as_ref();
    let bytes = std::fs::read(path)
        .map_err(|e| Error::Model(format!("{}: cannot read the model file: {e}", path.display())))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    load_bytes(&bytes, Some(&dir)).map_err(|e| match e {
        Error::Model(m) => Error::Model(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Loads an ONNX model from memory. External data is resolved against `dir` (and refused
/// when `dir` is `None`).
pub fn load_bytes(bytes: &[u8], dir: Option<&Path>) -> Result<OnnxModel> {
    let model = <proto::ModelProto as prost::Message>::decode(bytes).map_err(|e| {
        Error::Model(format!(
            "not a valid ONNX protobuf ({} bytes; truncated or not an ONNX file?): {e}",
            bytes.len()
        ))
    })?;
    import::import(&model, dir)
}
