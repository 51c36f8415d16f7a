//! Packed GEMM microkernels for the fast CPU path (BLIS-style: weights packed once into
//! `MR`-row panels, the B operand packed per block into `NR`-column panels).
//!
//! One family per instruction set, chosen once at run time by [`Microkernel::detect`]:
//!
//! | family  | register tile (MR × NR) | accumulators            |
//! | ------- | ----------------------- | ----------------------- |
//! | avx512  | 8 × 32                  | 16 zmm (2 per row)      |
//! | avx2    | 6 × 16                  | 12 ymm (2 per row)      |
//! | neon    | 8 × 8                   | 16 q (2 per row)        |
//! | generic | 4 × 8                   | 32 scalars (portable)   |
//!
//! Every kernel computes `C[MR×NR] (+)= Σ_p A[p][0..MR] ⊗ B[p][0..NR]` over `kc` steps,
//! where the packed A panel stores `a[p·MR + i]` and the packed B panel `b[p·NR + j]`, and
//! C is a row-major tile with row stride `ldc`. Loop order inside: `p` outer; per step one
//! load of each B vector, one broadcast per A row, `MR × NR / lanes` FMAs.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
mod generic;
#[cfg(target_arch = "aarch64")]
mod neon;
mod sgemm;

pub use sgemm::{sgemm, GemmScratch, Strided};

/// The signature every microkernel has: `(kc, a, b, c, ldc, accumulate, bias, relu)`.
/// With `accumulate` the tile is added to what `c` holds; a non-null `bias` (`MR` values,
/// one per row) is added last, then the ReLU when `relu` (the epilogue of the last depth
/// block).
///
/// # Safety
/// `a` holds `kc·MR` floats, `b` holds `kc·NR` floats, `c` is valid for `MR` rows of
/// `NR` floats at row stride `ldc`, `bias` is null or holds `MR` floats; the CPU supports
/// the kernel's instruction set.
pub type KernelFn = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, bool, *const f32, bool);

/// One step of an indirect B operand: `NR` values read from `ptr + j` for every lane j
/// whose bit is set in `keep` (the others are 0 and read nothing).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct BRow {
    /// Address of lane 0 (may lie outside the buffer when lane 0 is not kept).
    pub ptr: *const f32,
    /// Bit j set: lane j is read.
    pub keep: u64,
}

/// An indirect microkernel: as [`KernelFn`], with B given as `kc` [`BRow`]s instead of a
/// packed panel (a conv's B rows read straight from its input, no packing).
///
/// # Safety
/// As [`KernelFn`]; every kept lane of every row is readable.
pub type IndirectFn = unsafe fn(usize, *const f32, *const BRow, *mut f32, usize, bool, *const f32, bool);

/// A microkernel computing only the first `rows` (< `MR`) rows of the tile: as
/// [`KernelFn`] with `rows` first; `a` still advances `MR` floats per step (packed
/// panels), `c` and `bias` hold `rows` rows only. The implicit GEMM's last weight panel,
/// when the output channels are not a multiple of `MR`, writes its real rows straight
/// into the output with it.
///
/// # Safety
/// As [`KernelFn`], with `rows` rows of `c` and `bias`; `0 < rows < MR`.
pub type RowsFn = unsafe fn(usize, usize, *const f32, *const f32, *mut f32, usize, bool, *const f32, bool);

/// A microkernel and its register tile.
#[derive(Clone, Copy)]
pub struct Microkernel {
    /// Family name (`avx512`, `avx2`, `neon`, `generic`), printed by benches.
    pub name: &'static str,
    /// Rows of the register tile (output channels).
    pub mr: usize,
    /// Columns of the register tile (output positions).
    pub nr: usize,
    func: KernelFn,
    /// The indirect variant, where the family has one (masked loads).
    pub(crate) indirect: Option<IndirectFn>,
    /// The partial-rows variant, where the family has one.
    pub(crate) rows: Option<RowsFn>,
}

impl std::fmt::Debug for Microkernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}x{}", self.name, self.mr, self.nr)
    }
}

impl Microkernel {
    /// The fastest kernel this CPU runs. `PERFORATE_CPU_KERNEL=generic|avx2|avx512|neon`
    /// forces a family (ignored when the CPU lacks it), for tests and comparisons.
    pub fn detect() -> Microkernel {
        let forced = std::env::var("PERFORATE_CPU_KERNEL").ok();
        Self::available()
            .into_iter()
            .find(|k| forced.as_deref().is_none_or(|f| f == k.name))
            .unwrap_or_else(generic::kernel)
    }

    /// A wider variant of this family's tile with the same `MR` (packed B only), for
    /// layers whose positions fill its tiles better; `None` where the family has none.
    pub fn wide(&self) -> Option<Microkernel> {
        #[cfg(target_arch = "x86_64")]
        if self.name == "avx512" && self.nr == 32 {
            return Some(avx512::wide());
        }
        None
    }

    /// Every kernel this CPU can run, fastest first (the generic one last).
    pub fn available() -> Vec<Microkernel> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                v.push(avx512::kernel());
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                v.push(avx2::kernel());
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if std::arch::is_aarch64_feature_detected!("neon") {
                v.push(neon::kernel());
            }
        }
        v.push(generic::kernel());
        v
    }

    /// Runs the kernel on one tile.
    ///
    /// # Safety
    /// As [`KernelFn`]: `a` has `kc·mr` floats, `b` has `kc·nr`, `c` has `mr` rows of `nr`
    /// floats at stride `ldc`.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn run(
        &self,
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
        bias: *const f32,
        relu: bool,
    ) {
        // SAFETY: the caller upholds the buffer contract; the family was detected.
        unsafe { (self.func)(kc, a, b, c, ldc, accumulate, bias, relu) }
    }

    /// Whether the family has a partial-rows variant ([`Microkernel::run_rows`]).
    pub fn has_rows(&self) -> bool {
        self.rows.is_some()
    }

    /// Runs the tile's first `rows` rows: the partial-rows variant below `mr` (only
    /// families with [`Microkernel::has_rows`] take fewer rows; callers check), else
    /// [`Microkernel::run`].
    ///
    /// # Safety
    /// As [`RowsFn`] (as [`KernelFn`] when `rows == mr`).
    #[inline]
    #[allow(clippy::too_many_arguments)]
    #[track_caller]
    pub unsafe fn run_rows(
        &self,
        rows: usize,
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
        bias: *const f32,
        relu: bool,
    ) {
        if rows >= self.mr {
            // SAFETY: forwarded contract.
            return unsafe { self.run(kc, a, b, c, ldc, accumulate, bias, relu) };
        }
        let f = self.rows.expect("the caller checked has_rows");
        // SAFETY: the caller upholds the buffer contract for `rows` rows; 0 < rows < MR.
        unsafe { f(rows, kc, a, b, c, ldc, accumulate, bias, relu) }
    }

    /// Whether the family has an indirect variant ([`Microkernel::run_indirect`]).
    pub fn has_indirect(&self) -> bool {
        self.indirect.is_some()
    }

    /// Runs the indirect variant (only families with [`Microkernel::has_indirect`] have one;
    /// callers check, so asking another family is an internal error).
    ///
    /// # Safety
    /// As [`IndirectFn`]: `rows` holds `kc` rows whose kept lanes are readable.
    #[allow(clippy::too_many_arguments)]
    #[track_caller]
    pub unsafe fn run_indirect(
        &self,
        kc: usize,
        a: *const f32,
        rows: &[BRow],
        c: *mut f32,
        ldc: usize,
        accumulate: bool,
        bias: *const f32,
        relu: bool,
    ) {
        assert!(rows.len() >= kc, "indirect B needs kc rows");
        let f = self.indirect.expect("run_indirect on a family without an indirect kernel");
        // SAFETY: forwarded contract.
        unsafe { f(kc, a, rows.as_ptr(), c, ldc, accumulate, bias, relu) }
    }
}

/// Output channels per tile of the position-vectorised kernels (`avx512::row_tile`,
/// `avx512::grid_tile`), and so per packed weight panel of the paths that run them.
pub(crate) const ROW_TILE_MR: usize = 8;

/// The first `n` of 16 lanes (all 16 for `n ≥ 16`): the mask of a vector's real values.
pub(crate) fn lane_mask(n: usize) -> u16 {
    if n >= 16 {
        0xffff
    } else {
        (1u16 << n) - 1
    }
}

/// A run of `width` positions (1 to 48) as 16-lane vectors: how many, and the last one's
/// lane mask.
pub(crate) fn tile_vectors(width: usize) -> (usize, u16) {
    let vectors = width.div_ceil(16);
    (vectors, lane_mask(width - 16 * (vectors - 1)))
}

/// Packs row-major `[m, k]` weights (row stride `lda`) into `ceil(m/mr)` panels of
/// `k` steps × `mr` rows (`out[panel][p][i]`), rows past `m` zero.
pub fn pack_a(w: &[f32], m: usize, k: usize, lda: usize, mr: usize) -> Vec<f32> {
    let panels = m.div_ceil(mr);
    let mut out = vec![0.0f32; panels * k * mr];
    for (panel, dst) in out.chunks_exact_mut(k * mr).enumerate() {
        for i in 0..mr {
            let row = panel * mr + i;
            if row >= m {
                break;
            }
            for (p, &v) in w[row * lda..row * lda + k].iter().enumerate() {
                dst[p * mr + i] = v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every available kernel against an f64 triple loop, with and without accumulation.
    #[test]
    fn kernels_match_a_naive_product() {
        let all = Microkernel::available().into_iter().flat_map(|k| [Some(k), k.wide()]).flatten();
        for kern in all {
            let (mr, nr, kc, ldc) = (kern.mr, kern.nr, 37, kern.nr + 3);
            let a: Vec<f32> = (0..kc * mr).map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0).collect();
            let b: Vec<f32> = (0..kc * nr).map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0).collect();
            let mut c = vec![1.0f32; mr * ldc];
            // SAFETY: buffers sized as the contract says; `available` checked the features.
            unsafe {
                kern.run(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, true, std::ptr::null(), false)
            };
            for i in 0..mr {
                for j in 0..nr {
                    let r: f64 = (0..kc).map(|p| f64::from(a[p * mr + i]) * f64::from(b[p * nr + j])).sum();
                    assert!((f64::from(c[i * ldc + j]) - 1.0 - r).abs() < 1e-4, "{kern:?} ({i},{j})");
                }
                assert_eq!(c[i * ldc + nr], 1.0, "{kern:?} wrote past its tile");
            }
            // Overwrite with the epilogue: bias per row, then the ReLU.
            let bias: Vec<f32> = (0..mr).map(|i| i as f32 - 2.5).collect();
            unsafe { kern.run(kc, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), ldc, false, bias.as_ptr(), true) };
            if kern.has_indirect() {
                // The indirect variant over the same B (rows pointing into b), with lanes 1 and
                // NR-1 masked out of every row: those columns must come out as bias + ReLU only.
                let keep = ((1u64 << nr) - 1) & !(1 << 1) & !(1 << (nr - 1));
                let rows: Vec<BRow> = (0..kc).map(|p| BRow { ptr: b[p * nr..].as_ptr(), keep }).collect();
                let mut d = vec![7.0f32; mr * ldc];
                unsafe {
                    kern.run_indirect(kc, a.as_ptr(), &rows, d.as_mut_ptr(), ldc, false, bias.as_ptr(), true)
                };
                for i in 0..mr {
                    for j in 0..nr {
                        let r: f64 = if keep >> j & 1 == 1 {
                            (0..kc).map(|p| f64::from(a[p * mr + i]) * f64::from(b[p * nr + j])).sum()
                        } else {
                            0.0
                        };
                        let want = (r + f64::from(bias[i])).max(0.0);
                        assert!(
                            (f64::from(d[i * ldc + j]) - want).abs() < 1e-4,
                            "{kern:?} indirect ({i},{j})"
                        );
                    }
                }
            }
            for i in 0..mr {
                for j in 0..nr {
                    let r: f64 = (0..kc).map(|p| f64::from(a[p * mr + i]) * f64::from(b[p * nr + j])).sum();
                    let want = (r + f64::from(bias[i])).max(0.0);
                    assert!((f64::from(c[i * ldc + j]) - want).abs() < 1e-4, "{kern:?} epilogue ({i},{j})");
                }
            }
        }
    }
}
