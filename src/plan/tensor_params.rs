//! Launch parameters of the layers over tensors of any rank, shared by the plan and the
//! training forward pass.

use crate::error::{to_u32, Result};
use crate::network::{MatMul, Strided, MAX_STRIDED_RANK};
use crate::params::{MatmulStridedParams, StridedCopyParams};

/// The `strided_copy` parameters of view `v` for `images` images of `in_image` elements.
pub(super) fn strided_params(v: &Strided, images: usize, in_image: usize) -> Result<StridedCopyParams> {
    let pad = MAX_STRIDED_RANK - v.dims.len();
    let mut d = [1u32; MAX_STRIDED_RANK];
    let mut s = [0u32; MAX_STRIDED_RANK];
    for (i, (&dim, &stride)) in v.dims.iter().zip(&v.strides).enumerate() {
        d[pad + i] = to_u32(dim, "axis")?;
        s[pad + i] = to_u32(stride, "stride")?;
    }
    Ok(StridedCopyParams {
        images: to_u32(images, "batch")?,
        in_image: to_u32(in_image, "image")?,
        out_image: to_u32(v.dims.iter().product(), "image")?,
        offset: to_u32(v.offset, "offset")?,
        d0: d[0],
        d1: d[1],
        d2: d[2],
        d3: d[3],
        d4: d[4],
        d5: d[5],
        d6: d[6],
        d7: d[7],
        s0: s[0],
        s1: s[1],
        s2: s[2],
        s3: s[3],
        s4: s[4],
        s5: s[5],
        s6: s[6],
        s7: s[7],
    })
}

/// The `matmul_strided` parameters of `mm` for `images` images.
pub(super) fn matmul_params(
    mm: &MatMul,
    images: usize,
    a_image: usize,
    b_image: usize,
) -> Result<MatmulStridedParams> {
    let u = |v: usize| to_u32(v, "matmul size");
    let [a, b, o] = [mm.a_strides, mm.b_strides, mm.out_strides];
    Ok(MatmulStridedParams {
        images: u(images)?,
        a_image: u(a_image)?,
        b_image: u(b_image)?,
        out_image: u(mm.out_len())?,
        b0: u(mm.batch[0])?,
        b1: u(mm.batch[1])?,
        m: u(mm.m)?,
        k: u(mm.k)?,
        n: u(mm.n)?,
        _pad0: 0,
        _pad1: 0,
        _pad2: 0,
        a_b0: u(a[0])?,
        a_b1: u(a[1])?,
        a_m: u(a[2])?,
        a_k: u(a[3])?,
        b_b0: u(b[0])?,
        b_b1: u(b[1])?,
        b_k: u(b[2])?,
        b_n: u(b[3])?,
        o_b0: u(o[0])?,
        o_b1: u(o[1])?,
        o_m: u(o[2])?,
        o_n: u(o[3])?,
    })
}
