//! The WGSL sources, embedded at compile time, one per kernel.

use crate::error::{Error, Result};

/// Every compute kernel of the crate. The label is the shader file stem, the CPU twin's
/// name, the pipeline label and the benchmark id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// `shaders/im2col_masked.wgsl`
    Im2colMasked,
    /// `shaders/matmul_tiled.wgsl`
    MatmulTiled,
    /// `shaders/gather_interp.wgsl`
    GatherInterp,
}

impl Kernel {
    /// All kernels.
    pub const ALL: [Kernel; 3] = [
        Kernel::Im2colMasked,
        Kernel::MatmulTiled,
        Kernel::GatherInterp,
    ];

    /// The kernel's one name.
    pub fn label(self) -> &'static str {
        match self {
            Kernel::Im2colMasked => "im2col_masked",
            Kernel::MatmulTiled => "matmul_tiled",
            Kernel::GatherInterp => "gather_interp",
        }
    }

    /// The WGSL source.
    pub fn source(self) -> &'static str {
        match self {
            Kernel::Im2colMasked => include_str!("../../shaders/im2col_masked.wgsl"),
            Kernel::MatmulTiled => include_str!("../../shaders/matmul_tiled.wgsl"),
            Kernel::GatherInterp => include_str!("../../shaders/gather_interp.wgsl"),
        }
    }

    /// Parses and validates the shader with naga (no device needed).
    pub fn validate(self) -> Result<naga::Module> {
        let module = naga::front::wgsl::parse_str(self.source()).map_err(|e| {
            Error::Gpu(format!(
                "{}.wgsl: {}",
                self.label(),
                e.emit_to_string(self.source())
            ))
        })?;
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .map_err(|e| {
            Error::Gpu(format!(
                "{}.wgsl: {}",
                self.label(),
                e.emit_to_string(self.source())
            ))
        })?;
        Ok(module)
    }
}
