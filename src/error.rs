//! The one error type of the crate.

/// Everything that can go wrong in `perforate`, as a value the caller can act on.
///
/// GPU failures (no adapter, device lost, out of memory) are ordinary variants so
/// that an embedding application can fall back to the CPU path instead of crashing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A convolution geometry is inconsistent (zero sizes, kernel larger than the
    /// padded input, channels not divisible by groups, ...).
    #[error("invalid convolution geometry: {0}")]
    Geometry(String),
    /// A mask or interpolation map does not fit the map it is applied to.
    #[error("invalid mask: {0}")]
    Mask(String),
    /// A tensor handed to the library has the wrong shape or length.
    #[error("shape mismatch for {what}: expected {expected}, got {got}")]
    Shape {
        /// What was being checked (for example "conv input").
        what: String,
        /// The shape or length that was required.
        expected: String,
        /// The shape or length that was supplied.
        got: String,
    },
    /// An argument is outside its valid range.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A tensor or intermediate buffer does not fit the device or index range.
    #[error("too large: {0}")]
    TooLarge(String),
    /// No GPU adapter could be found (the CPU path still works).
    #[error("no GPU adapter available: {0}")]
    NoAdapter(String),
    /// The adapter refused to create a device.
    #[error("could not create GPU device: {0}")]
    DeviceRequest(String),
    /// The GPU device was lost (driver reset, removal, ...); create a new context.
    #[error("GPU device lost: {0}")]
    DeviceLost(String),
    /// The GPU ran out of memory.
    #[error("GPU out of memory: {0}")]
    OutOfMemory(String),
    /// A model file (ONNX, plan) is malformed or uses something unsupported.
    #[error("model: {0}")]
    Model(String),
    /// A data set file is missing, corrupt, or does not match what it is used with.
    #[error("data: {0}")]
    Data(String),
    /// Any other error reported by wgpu (validation, internal).
    #[error("GPU error: {0}")]
    Gpu(String),
    /// An error in one layer of a network: the layer, its kind, and the error itself
    /// (kept whole: [`Error::root`] gives the innermost one, `source()` the next).
    #[error("layer '{layer}' ({kind}): {source}")]
    Layer {
        /// The layer's name.
        layer: String,
        /// Its kind (`conv`, `max_pool`, ...).
        kind: &'static str,
        /// What went wrong there.
        #[source]
        source: Box<Error>,
    },
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The innermost error under any [`Error::Layer`] wrappers.
    pub fn root(&self) -> &Error {
        match self {
            Error::Layer { source, .. } => source.root(),
            other => other,
        }
    }

    /// Shorthand for a [`Error::Shape`] error.
    pub fn shape(what: impl Into<String>, expected: impl ToString, got: impl ToString) -> Self {
        Error::Shape { what: what.into(), expected: expected.to_string(), got: got.to_string() }
    }
}

/// Converts a size to `u32` for a GPU parameter block, or explains which quantity overflowed.
pub(crate) fn to_u32(value: usize, what: &str) -> Result<u32> {
    u32::try_from(value)
        .map_err(|_| Error::TooLarge(format!("{what} = {value} does not fit in a 32-bit index")))
}
