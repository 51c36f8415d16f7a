//! A general product on the packed microkernels: `C (+)= A · B` with A and B read through
//! row and column strides (a transpose costs nothing), C row-major. The training backward
//! pass uses it for the weight and input gradients of a conv.
//!
//! Loop structure (BLIS): for each block of `NC` columns, for each block of `KC` depth
//! steps, pack B's block into `NR`-column panels and A's rows into `MR`-row panels, then
//! run the microkernel on every (A panel, B panel) pair; tiles at the right and bottom
//! edges go through a scratch tile and only their valid part reaches C.

use super::Microkernel;

/// Depth steps per packed block.
const KC: usize = 256;
/// Columns per packed B block.
const NC: usize = 1024;

/// A matrix read through strides: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    /// The values.
    pub data: &'a [f32],
    /// Row stride.
    pub rs: usize,
    /// Column stride.
    pub cs: usize,
}

impl Strided<'_> {
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
}

/// Packing buffers reused between calls.
#[derive(Debug, Default)]
pub struct GemmScratch {
    a: Vec<f32>,
    b: Vec<f32>,
}

/// `C[m×n] = A[m×k] · B[k×n]` (`+=` when `accumulate`), C row-major with row stride `ldc`.
///
/// # Panics
/// When an operand is shorter than its strides and sizes say (an internal invariant: the
/// callers size them from validated geometries).
#[allow(clippy::too_many_arguments)]
#[track_caller]
pub fn sgemm(
    kern: &Microkernel,
    (m, n, k): (usize, usize, usize),
    a: Strided<'_>,
    b: Strided<'_>,
    c: &mut [f32],
    ldc: usize,
    accumulate: bool,
    scratch: &mut GemmScratch,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n, "sgemm: C too short");
    if k == 0 {
        if !accumulate {
            c.chunks_mut(ldc).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    let (mr, nr) = (kern.mr, kern.nr);
    let panels_a = m.div_ceil(mr);
    let mut tile = vec![0.0f32; mr * nr];
    for jc in (0..n).step_by(NC) {
        let nb = NC.min(n - jc);
        let panels_b = nb.div_ceil(nr);
        for pc in (0..k).step_by(KC) {
            let kb = KC.min(k - pc);
            scratch.b.clear();
            scratch.b.resize(panels_b * kb * nr, 0.0);
            for (panel, dst) in scratch.b.chunks_exact_mut(kb * nr).enumerate() {
                let (j0, cols) = (jc + panel * nr, nr.min(nb - panel * nr));
                pack(b, (pc, j0), (kb, cols), nr, dst);
            }
            scratch.a.clear();
            scratch.a.resize(panels_a * kb * mr, 0.0);
            for (panel, dst) in scratch.a.chunks_exact_mut(kb * mr).enumerate() {
                let (i0, rows) = (panel * mr, mr.min(m - panel * mr));
                // A panel is Aᵀ's block: step p holds rows i0.. of column pc + p.
                let at = Strided { data: a.data, rs: a.cs, cs: a.rs };
                pack(at, (pc, i0), (kb, rows), mr, dst);
            }
            let add = accumulate || pc > 0;
            for ip in 0..panels_a {
                let rows = mr.min(m - ip * mr);
                let ap = scratch.a[ip * kb * mr..].as_ptr();
                for jp in 0..panels_b {
                    let cols = nr.min(nb - jp * nr);
                    let bp = scratch.b[jp * kb * nr..].as_ptr();
                    let at = ip * mr * ldc + jc + jp * nr;
                    if rows == mr && cols == nr {
                        // SAFETY: a full tile: `mr` rows of `nr` values at stride `ldc` from
                        // `at` lie inside C (checked above); the panels hold `kb` steps.
                        unsafe {
                            kern.run(kb, ap, bp, c[at..].as_mut_ptr(), ldc, add, std::ptr::null(), false)
                        };
                        continue;
                    }
                    // SAFETY: `tile` holds one whole tile at stride `nr`.
                    unsafe { kern.run(kb, ap, bp, tile.as_mut_ptr(), nr, false, std::ptr::null(), false) };
                    for i in 0..rows {
                        let dst = &mut c[at + i * ldc..][..cols];
                        let src = &tile[i * nr..i * nr + cols];
                        if add {
                            dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                        } else {
                            dst.copy_from_slice(src);
                        }
                    }
                }
            }
        }
    }
}

/// `dst[p·width + j] = x(r0 + p, c0 + j)` for `p < steps`, `j < cols` (a panel of
/// `width` lanes, lanes past `cols` left as they are): contiguous copies when the rows of
/// `x` are contiguous, contiguous reads down each column when its columns are.
fn pack(
    x: Strided<'_>,
    (r0, c0): (usize, usize),
    (steps, cols): (usize, usize),
    width: usize,
    dst: &mut [f32],
) {
    if x.cs == 1 {
        for (p, d) in dst.chunks_exact_mut(width).take(steps).enumerate() {
            let at = (r0 + p) * x.rs + c0;
            d[..cols].copy_from_slice(&x.data[at..at + cols]);
        }
    } else if x.rs == 1 {
        // Columns contiguous: the panel is a transpose, done 16 × 16 in registers where the
        // CPU has AVX-512 (one scattered store per value cost as much as the product in the
        // training backward pass, where both operands of the weight gradient are read so).
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") && width.is_multiple_of(16) {
            // SAFETY: the feature was detected.
            return unsafe { pack_transposed_avx512(x, (r0, c0), (steps, cols), width, dst) };
        }
        for j in 0..cols {
            let at = (c0 + j) * x.cs + r0;
            for (p, &v) in x.data[at..at + steps].iter().enumerate() {
                dst[p * width + j] = v;
            }
        }
    } else {
        for p in 0..steps {
            for j in 0..cols {
                dst[p * width + j] = x.at(r0 + p, c0 + j);
            }
        }
    }
}

/// [`pack`] of a column-contiguous operand (`x.rs == 1`) on AVX-512: whole blocks of 16
/// columns × 16 steps loaded as 16 column runs, transposed, stored as 16 step rows; the
/// ragged edges value by value.
///
/// # Safety
/// The CPU has AVX-512F; `width` is a multiple of 16; the bounds are those of [`pack`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_transposed_avx512(
    x: Strided<'_>,
    (r0, c0): (usize, usize),
    (steps, cols): (usize, usize),
    width: usize,
    dst: &mut [f32],
) {
    use std::arch::x86_64::*;
    let (full_cols, full_steps) = (cols / 16 * 16, steps / 16 * 16);
    assert!(dst.len() >= steps * width && x.data.len() >= (c0 + cols.max(1) - 1) * x.cs + r0 + steps);
    for j0 in (0..full_cols).step_by(16) {
        for p0 in (0..full_steps).step_by(16) {
            let mut v = [_mm512_setzero_ps(); 16];
            for (j, v) in v.iter_mut().enumerate() {
                // SAFETY: column c0 + j0 + j holds steps r0 + p0 .. + 16 (checked above).
                *v = unsafe { _mm512_loadu_ps(x.data.as_ptr().add((c0 + j0 + j) * x.cs + r0 + p0)) };
            }
            // SAFETY: this function is compiled for AVX-512F.
            let v = unsafe { crate::cpu::fast::transpose::transpose16(v) };
            for (p, v) in v.iter().enumerate() {
                // SAFETY: step p0 + p < steps, lanes j0 .. j0 + 16 ≤ width.
                unsafe { _mm512_storeu_ps(dst.as_mut_ptr().add((p0 + p) * width + j0), *v) };
            }
        }
        for p in full_steps..steps {
            for j in j0..j0 + 16 {
                dst[p * width + j] = x.at(r0 + p, c0 + j);
            }
        }
    }
    for j in full_cols..cols {
        for p in 0..steps {
            dst[p * width + j] = x.at(r0 + p, c0 + j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every family, odd sizes past one block in each dimension, transposed operands,
    /// against an f64 triple loop.
    #[test]
    fn products_match_a_naive_loop() {
        for kern in Microkernel::available() {
            for &(m, n, k) in &[(1, 1, 1), (13, 37, 5), (9, 1100, 300), (33, 70, 520)] {
                let a: Vec<f32> = (0..m * k).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0).collect();
                let b: Vec<f32> = (0..k * n).map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0).collect();
                let ldc = n + 2;
                for accumulate in [false, true] {
                    let mut c = vec![0.5f32; m * ldc];
                    // A as stored, B read transposed from a [n, k] copy.
                    let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
                    let (sa, sb) = (Strided { data: &a, rs: k, cs: 1 }, Strided { data: &bt, rs: 1, cs: k });
                    sgemm(&kern, (m, n, k), sa, sb, &mut c, ldc, accumulate, &mut GemmScratch::default());
                    for i in 0..m {
                        for j in 0..n {
                            let r: f64 =
                                (0..k).map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j])).sum();
                            let want = r + if accumulate { 0.5 } else { 0.0 };
                            let got = f64::from(c[i * ldc + j]);
                            assert!(
                                (got - want).abs() < 1e-3 * (1.0 + want.abs()),
                                "{kern:?} {m}x{n}x{k} ({i},{j})"
                            );
                        }
                        assert_eq!(c[i * ldc + n], 0.5, "{kern:?} wrote past the row");
                    }
                }
            }
        }
    }
}
