//! Layers over tensors of any rank, stored per image as one contiguous block (sequence
//! models: attention and its transposes). The importer tracks the logical axes; these
//! layers see each image's block and the `[C, H, W]` view the next layer reads.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest rank of a [`Strided`] view (the kernel's parameter block holds this many axes).
pub const MAX_STRIDED_RANK: usize = 8;

/// A copy of a strided view of each image's input: transposes, slices with steps,
/// gathers of one index, broadcasts (stride 0). Output element `(i_0, …, i_{r-1})`,
/// row-major over `dims`, is input element `offset + Σ i_t · strides[t]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Strided {
    /// Output axes, outermost first (at most [`MAX_STRIDED_RANK`]).
    pub dims: Vec<usize>,
    /// Input stride of each output axis (elements).
    pub strides: Vec<usize>,
    /// Input element of output element 0.
    pub offset: usize,
    /// The `[C, H, W]` view of the output that the next layers read.
    pub shape: [usize; 3],
}

impl Strided {
    /// Checks the view against an input of `input_len` elements per image.
    pub fn validate(&self, input_len: usize) -> Result<()> {
        if self.dims.is_empty() || self.dims.len() > MAX_STRIDED_RANK || self.dims.len() != self.strides.len()
        {
            return Err(Error::InvalidArgument(format!(
                "strided view of {} axes with {} strides (1 to {MAX_STRIDED_RANK} axes)",
                self.dims.len(),
                self.strides.len()
            )));
        }
        let len: usize = self.dims.iter().product();
        if len == 0 || len != self.shape.iter().product::<usize>() {
            return Err(Error::InvalidArgument(format!(
                "strided view {:?} does not fill its output view {:?}",
                self.dims, self.shape
            )));
        }
        let last =
            self.dims.iter().zip(&self.strides).map(|(&d, &s)| (d - 1) * s).sum::<usize>() + self.offset;
        if last >= input_len {
            return Err(Error::InvalidArgument(format!(
                "strided view reads element {last} of a {input_len}-element input"
            )));
        }
        Ok(())
    }
}

/// Per image, `batch[0] · batch[1]` matrix products `C = A · B` of two activations, `A`
/// `m × k` and `B` `k × n`, each operand and the output addressed through its strides
/// `[batch 0, batch 1, row, column]` (attention's `Q Kᵀ` and `P V` read the transposes of
/// their inputs in place). The output has exactly `batch · m · n` elements.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatMul {
    /// The two batch axes of products per image (1 where unused).
    pub batch: [usize; 2],
    /// Rows of A and of the output.
    pub m: usize,
    /// Columns of A, rows of B.
    pub k: usize,
    /// Columns of B and of the output.
    pub n: usize,
    /// Strides of A: batch 0, batch 1, row, column.
    pub a_strides: [usize; 4],
    /// Strides of B: batch 0, batch 1, row, column.
    pub b_strides: [usize; 4],
    /// Strides of the output: batch 0, batch 1, row, column.
    pub out_strides: [usize; 4],
    /// The `[C, H, W]` view of the output that the next layers read.
    pub shape: [usize; 3],
}

fn last_index(sizes: [usize; 4], strides: [usize; 4]) -> usize {
    sizes.iter().zip(&strides).map(|(&d, &s)| (d - 1) * s).sum()
}

impl MatMul {
    /// Axis sizes in stride order for A, B and the output.
    pub fn sizes(&self) -> [[usize; 4]; 3] {
        let [b0, b1] = self.batch;
        [[b0, b1, self.m, self.k], [b0, b1, self.k, self.n], [b0, b1, self.m, self.n]]
    }

    /// Output elements per image.
    pub fn out_len(&self) -> usize {
        self.batch[0] * self.batch[1] * self.m * self.n
    }

    /// Checks the products against inputs of `a_len` and `b_len` elements per image: every
    /// read stays inside its operand and every output element is written exactly once.
    pub fn validate(&self, a_len: usize, b_len: usize) -> Result<()> {
        let [sa, sb, so] = self.sizes();
        if so.contains(&0) || self.k == 0 {
            return Err(Error::InvalidArgument(format!("matmul with an empty axis: {:?}", sa)));
        }
        if self.out_len() != self.shape.iter().product::<usize>() {
            return Err(Error::InvalidArgument(format!(
                "matmul output of {} elements does not fill its view {:?}",
                self.out_len(),
                self.shape
            )));
        }
        for (what, sizes, strides, len) in
            [("A", sa, self.a_strides, a_len), ("B", sb, self.b_strides, b_len)]
        {
            let last = last_index(sizes, strides);
            if last >= len {
                return Err(Error::InvalidArgument(format!(
                    "matmul reads element {last} of its {len}-element operand {what}"
                )));
            }
        }
        // The output's axes must tile it: sorted by stride, each stride is the product of
        // the sizes below it.
        let mut axes: Vec<(usize, usize)> =
            so.iter().zip(&self.out_strides).filter(|(&d, _)| d > 1).map(|(&d, &s)| (s, d)).collect();
        axes.sort_unstable();
        let mut next = 1;
        for (s, d) in axes {
            if s != next {
                return Err(Error::InvalidArgument(format!(
                    "matmul output strides {:?} do not tile sizes {so:?}",
                    self.out_strides
                )));
            }
            next *= d;
        }
        Ok(())
    }
}
