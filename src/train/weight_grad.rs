//! A conv's weight and bias gradients without im2col:
//! `dW[t, c, ky, kx] = Σ_images Σ_(y, x) dY[t, y, x] · Xpad[c, y·sh + ky·dh, x·sw + kx·dw]`
//! computed as dot products along the output positions.
//!
//! Each image's zero-padded input is laid out once per task as phase planes (the padded
//! rows and columns split by the stride), so that for every tap `(ky, kx)` the values it
//! reads at the output positions `(y, x)` form one contiguous run over a grid of width
//! `Wq` (the phase plane's width): `phase[c][(ky·dh) mod sh][(kx·dw) mod sw]` from
//! `((ky·dh) div sh)·Wq + (kx·dw) div sw` on. The output gradient is laid out on the same
//! grid, zero at the grid's columns past the output's width and at every position a
//! perforated conv did not compute. A tile of 4 output channels x 4 taps is then 16 dot
//! products over one run each, 8 loads per 16 FMAs, no packing. (The im2col path it
//! replaces wrote 9x the input per 3x3 conv and image and packed it again for the GEMM.)
//! On AVX2 and AVX-512, [`weight_grad`] hands the convs `weight_grad_cl::applies` to to that
//! channel-last register-tiled product instead.

// Indices are bounded by validated geometries.
#![allow(clippy::cast_possible_truncation)]

use rayon::prelude::*;

use crate::geometry::ConvGeometry;

/// Output-channel rows of a tile.
const MR: usize = 4;
/// Tap columns of a tile.
const NR: usize = 4;
/// Grid positions per pass over a run (the tile's 10 runs stay in L1).
const CHUNK: usize = 1024;
/// Zeros past the input layout's end: the last tap's run may pass it by under a vector.
const SLACK: usize = 16;

/// The grid both operands are laid out on.
#[derive(Clone, Copy, Debug)]
struct Grid {
    /// Row stride of the phase planes and the gradient (`Wq`).
    width: usize,
    /// Rows of one phase plane.
    rows: usize,
    /// Grid positions the dot products run over (`out_h · Wq`, rounded up to 16).
    len: usize,
}

impl Grid {
    fn of(g: &ConvGeometry) -> Self {
        let (wp, hp) = (g.in_w + g.pad_left + g.pad_right, g.in_h + g.pad_top + g.pad_bottom);
        let width = wp.div_ceil(g.stride_w);
        let reach_rows = (g.kernel_h - 1) * g.dilation_h / g.stride_h;
        // One spare row: the runs of the grid's junk columns in the last row pass its end.
        let rows = (g.out_h() + reach_rows + 1).max(hp.div_ceil(g.stride_h));
        Grid { width, rows, len: (g.out_h() * width).next_multiple_of(16) }
    }

    fn phases(g: &ConvGeometry) -> usize {
        g.stride_h * g.stride_w
    }

    /// Floats per phase plane and image.
    fn plane(&self) -> usize {
        self.rows * self.width
    }

    /// Start of tap `(ky, kx)`'s run for the first image of a chunk of `count`, within a
    /// channel's phase planes.
    fn tap_offset(&self, g: &ConvGeometry, count: usize, ky: usize, kx: usize) -> usize {
        let (dy, dx) = (ky * g.dilation_h, kx * g.dilation_w);
        let phase = (dy % g.stride_h) * g.stride_w + dx % g.stride_w;
        phase * count * self.plane() + (dy / g.stride_h) * self.width + dx / g.stride_w
    }
}

/// The weight gradient (OIHW, the conv's weight length) and the bias gradient of a conv
/// with input `x` (`[B, C, H, W]`) and output gradient `dy` (`[B, T, n]`: the values at
/// the `n` output `positions`, row-major indices into the `out_h x out_w` output; every
/// position when `n = out_h·out_w`).
pub(crate) fn weight_grad(
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    positions: &[u32],
) -> (Vec<f32>, Vec<f32>) {
    #[cfg(target_arch = "x86_64")]
    if super::weight_grad_cl::applies(g, positions.len()) {
        return super::weight_grad_cl::weight_grad_cl(g, x, dy, positions);
    }
    weight_grad_with(g, x, dy, positions, kernel())
}

fn weight_grad_with(
    g: &ConvGeometry,
    x: &[f32],
    dy: &[f32],
    positions: &[u32],
    run: TileFn,
) -> (Vec<f32>, Vec<f32>) {
    let n = positions.len();
    let (t_all, in_len) = (g.out_channels, g.in_channels * g.in_h * g.in_w);
    let per_task = g.batch.div_ceil(2 * rayon::current_num_threads()).max(1);
    // A dense 1x1 stride-1 conv without padding: every run is an input or gradient plane
    // as stored, no layout.
    let as_stored = g.is_pointwise() && n == g.in_h * g.in_w;
    let grid = Grid::of(g);
    let ow = g.out_w();
    // Grid offsets of the computed positions (None: all of them).
    let at: Option<Vec<u32>> = (!as_stored && n != g.out_h() * ow).then(|| {
        positions.iter().map(|&p| ((p as usize / ow) * grid.width + p as usize % ow) as u32).collect()
    });
    let (x_img, dy_img) =
        if as_stored { (0, 0) } else { (g.in_channels * Grid::phases(g) * grid.plane(), t_all * grid.len) };
    // Images per tile call: small planes or grids take several (one reduction per tile and
    // call), within about 1 MB of layouts and a few tasks per thread.
    let images = if as_stored {
        (CHUNK / n.max(1)).clamp(1, per_task)
    } else if grid.len >= CHUNK {
        1
    } else {
        (CHUNK / grid.len).min((1 << 18) / (x_img + dy_img)).clamp(1, per_task)
    };
    let zero = || Task {
        dw: vec![0.0; g.weight_len()],
        db: vec![0.0; t_all],
        x: vec![0.0; if as_stored { 0 } else { images * x_img + SLACK + 16 }],
        dy: vec![0.0; if as_stored { 0 } else { images * dy_img + 16 }],
    };
    let cg = g.in_channels_per_group();
    let task = x
        .par_chunks(images * in_len)
        .zip(dy.par_chunks(images * t_all * n))
        .fold(zero, |mut task, (x, dy)| {
            for (j, row) in dy.chunks_exact(n.max(1)).enumerate() {
                task.db[j % t_all] += sum(row);
            }
            let count = x.len() / in_len;
            if as_stored {
                let ops = Operands {
                    x,
                    dy,
                    count,
                    len: n,
                    runs: Runs { len: 0, count, a_step: t_all * n, b_step: in_len },
                    row_start: &|t| t * n,
                    column_start: &|group, col| (group * cg + col) * n,
                };
                accumulate(g, &ops, run, &mut task.dw);
                return task;
            }
            let (tx, tdy) = (aligned(&mut task.x), aligned(&mut task.dy));
            tx[..count * x_img].fill(0.0);
            tdy[..count * dy_img].fill(0.0);
            for (i, (x, dy)) in x.chunks_exact(in_len).zip(dy.chunks_exact(t_all * n)).enumerate() {
                lay_out_input(g, &grid, x, (i, count), tx);
                lay_out_gradient(g, &grid, dy, at.as_deref(), (i, count), tdy);
            }
            let taps = g.kernel_h * g.kernel_w;
            let channel_len = Grid::phases(g) * count * grid.plane();
            // Each column's run start for the chunk's first image.
            let tap_start: Vec<usize> =
                (0..taps).map(|tap| grid.tap_offset(g, count, tap / g.kernel_w, tap % g.kernel_w)).collect();
            let ops = Operands {
                x: tx,
                dy: tdy,
                count,
                len: grid.len,
                runs: Runs { len: 0, count, a_step: grid.len, b_step: grid.plane() },
                row_start: &|t| t * count * grid.len,
                column_start: &|group, col| (group * cg + col / taps) * channel_len + tap_start[col % taps],
            };
            accumulate(g, &ops, run, &mut task.dw);
            task
        })
        .reduce_with(|mut a, b| {
            a.dw.iter_mut().zip(&b.dw).for_each(|(p, q)| *p += q);
            a.db.iter_mut().zip(&b.db).for_each(|(p, q)| *p += q);
            a
        })
        .unwrap_or_else(zero);
    (task.dw, task.db)
}

/// The sum of `v` in 16 partial sums (vectorisable; a single running sum is not).
pub(super) fn sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = v.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        acc.iter_mut().zip(c).for_each(|(a, x)| *a += x);
    }
    acc.iter().sum::<f32>() + tail
}

/// `v` from its first 64-byte aligned value on (`v` has 16 values to spare), so that
/// runs starting at multiples of 16 values load whole cache lines.
fn aligned(v: &mut [f32]) -> &mut [f32] {
    let skip = v.as_ptr().align_offset(64).min(16);
    &mut v[skip..]
}

/// One rayon task's partial gradients and layouts: the input as `[C][phase][image][rows][Wq]`,
/// the output gradient as `[T][image][len]`, for up to a chunk of images (empty when the
/// runs are read as stored).
struct Task {
    dw: Vec<f32>,
    db: Vec<f32>,
    x: Vec<f32>,
    dy: Vec<f32>,
}

/// Writes image `i` of a chunk of `count` into the input layout (zeroed beforehand).
fn lay_out_input(g: &ConvGeometry, grid: &Grid, x: &[f32], (i, count): (usize, usize), out: &mut [f32]) {
    let (sh, sw) = (g.stride_h, g.stride_w);
    let phase_len = count * grid.plane();
    // Only the phases some tap reads are written (a strided 1x1 conv reads one of four).
    let row_used: Vec<bool> =
        (0..sh).map(|ry| (0..g.kernel_h).any(|ky| ky * g.dilation_h % sh == ry)).collect();
    let col_used: Vec<bool> =
        (0..sw).map(|rx| (0..g.kernel_w).any(|kx| kx * g.dilation_w % sw == rx)).collect();
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    let every_column = col_used.iter().all(|&u| u);
    for (c, src) in x.chunks_exact(g.in_h * g.in_w).enumerate() {
        let channel = c * Grid::phases(g) * phase_len + i * grid.plane();
        for (yi, line) in src.chunks_exact(g.in_w).enumerate() {
            let r = yi + g.pad_top;
            if !row_used[r % sh] {
                continue;
            }
            let row = channel + (r % sh) * sw * phase_len + (r / sh) * grid.width;
            #[cfg(target_arch = "x86_64")]
            if sw == 2 && every_column && std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the feature was detected; the split asserts its bounds.
                unsafe {
                    crate::cpu::fast::transpose::split_pairs_avx512(
                        line,
                        g.pad_left,
                        (grid.width, phase_len),
                        &mut out[row..],
                    );
                }
                continue;
            }
            for rx in (0..sw).filter(|&rx| col_used[rx]) {
                // Padded columns j·sw + rx, j from `first`, read input column j·sw + rx − pad.
                let first = g.pad_left.saturating_sub(rx).div_ceil(sw);
                let from = first * sw + rx - g.pad_left;
                if from >= g.in_w {
                    continue;
                }
                let dst = &mut out[row + rx * phase_len + first..];
                if sw == 1 {
                    dst[..g.in_w].copy_from_slice(line);
                } else {
                    for (d, &v) in dst.iter_mut().zip(line[from..].iter().step_by(sw)) {
                        *d = v;
                    }
                }
            }
        }
    }
}

/// Writes image `i` of a chunk of `count` into the gradient layout (zeroed beforehand).
/// `at` is `None` when every output position is computed, else each computed
/// position's offset on the grid.
fn lay_out_gradient(
    g: &ConvGeometry,
    grid: &Grid,
    dy: &[f32],
    at: Option<&[u32]>,
    (i, count): (usize, usize),
    out: &mut [f32],
) {
    let (ow, n) = (g.out_w(), at.map_or(g.out_h() * g.out_w(), <[u32]>::len));
    for (t, src) in dy.chunks_exact(n.max(1)).enumerate() {
        let dst = &mut out[(t * count + i) * grid.len..][..grid.len];
        match at {
            None => {
                for (line, vals) in dst.chunks_mut(grid.width).zip(src.chunks_exact(ow)) {
                    line[..ow].copy_from_slice(vals);
                }
            }
            Some(at) => {
                for (&a, &v) in at.iter().zip(src) {
                    dst[a as usize] = v;
                }
            }
        }
    }
}

/// Where the runs of one chunk of `count` images lie: the output gradient's run for
/// output channel `t` starts at `dy[row_start(t)]`, the input's run for column `col` (input
/// channel of the group, tap) of `group` at `x[column_start(group, col)]`, each `len`
/// values long, the next image's `runs.a_step` and `runs.b_step` further on.
struct Operands<'a> {
    x: &'a [f32],
    dy: &'a [f32],
    count: usize,
    len: usize,
    runs: Runs,
    row_start: &'a dyn Fn(usize) -> usize,
    column_start: &'a dyn Fn(usize, usize) -> usize,
}

/// `dw += dY · Xᵀ` over one chunk of images, group by group, in tiles of `MR` output
/// channels x `NR` columns, `CHUNK` positions of every run at a time.
fn accumulate(g: &ConvGeometry, ops: &Operands<'_>, run: TileFn, dw: &mut [f32]) {
    let (tg, k) = (g.out_channels_per_group(), g.k_per_group());
    let (a_last, b_last) = ((ops.count - 1) * ops.runs.a_step, (ops.count - 1) * ops.runs.b_step);
    for group in 0..g.groups {
        let columns: Vec<usize> = (0..k).map(|col| (ops.column_start)(group, col)).collect();
        for start in (0..ops.len).step_by(CHUNK) {
            let len = CHUNK.min(ops.len - start);
            let runs = Runs { len, ..ops.runs };
            for t0 in (0..tg).step_by(MR) {
                let rows = MR.min(tg - t0);
                let mut a = [std::ptr::null::<f32>(); MR];
                for (i, p) in a.iter_mut().enumerate() {
                    // Past the edge: the last row again (its sums are not used).
                    let at = (ops.row_start)(group * tg + t0 + i.min(rows - 1)) + start;
                    *p = ops.dy[at..a_last + at + len].as_ptr();
                }
                for c0 in (0..k).step_by(NR) {
                    let cols = NR.min(k - c0);
                    let mut b = [std::ptr::null::<f32>(); NR];
                    for (j, p) in b.iter_mut().enumerate() {
                        let at = columns[c0 + j.min(cols - 1)] + start;
                        *p = ops.x[at..b_last + at + len].as_ptr();
                    }
                    let mut sums = [[0.0f32; NR]; MR];
                    // SAFETY: every pointer starts `count` runs of `len` readable floats, one
                    // per image step (sliced above).
                    unsafe { run(&a, &b, runs, &mut sums) };
                    for (i, row) in sums.iter().enumerate().take(rows) {
                        let out = &mut dw[(group * tg + t0 + i) * k + c0..][..cols];
                        out.iter_mut().zip(row).for_each(|(o, s)| *o += s);
                    }
                }
            }
        }
    }
}

/// The runs one tile call sums over: `count` runs of `len` values per pointer, the
/// operands' runs `a_step` and `b_step` floats apart.
#[derive(Clone, Copy)]
struct Runs {
    len: usize,
    count: usize,
    a_step: usize,
    b_step: usize,
}

/// A tile's dot products: `sums[i][j] = Σ_runs Σ_l a[i][l] · b[j][l]` (edge tiles repeat
/// their last pointers; those sums are computed and not used).
type TileFn = unsafe fn(&[*const f32; MR], &[*const f32; NR], Runs, &mut [[f32; NR]; MR]);

/// The tile of the microkernel family the CPU executor picked (`PERFORATE_CPU_KERNEL`
/// applies here too).
fn kernel() -> TileFn {
    tile_of(crate::cpu::gemm::Microkernel::detect().name)
}

/// The tile for a microkernel family's name (the portable one for families without their
/// own, e.g. NEON, whose autovectorised loop is the portable tile's).
fn tile_of(family: &str) -> TileFn {
    match family {
        // `detect` names a family only when the CPU has its features.
        #[cfg(target_arch = "x86_64")]
        "avx512" => avx512::tile,
        #[cfg(target_arch = "x86_64")]
        "avx2" => avx2::tile,
        _ => portable_tile,
    }
}

/// The portable tile: eight partial sums per dot product (vectorisable without
/// reassociating a single sum).
///
/// # Safety
/// Every pointer of `a` and `b` starts `runs.count` runs of `runs.len` readable floats,
/// `a_step` and `b_step` apart.
unsafe fn portable_tile(a: &[*const f32; MR], b: &[*const f32; NR], runs: Runs, sums: &mut [[f32; NR]; MR]) {
    for i in 0..MR {
        for j in 0..NR {
            let mut acc = [0.0f32; 8];
            for r in 0..runs.count {
                // SAFETY: the caller's contract.
                let (ai, bj) = unsafe {
                    (
                        std::slice::from_raw_parts(a[i].add(r * runs.a_step), runs.len),
                        std::slice::from_raw_parts(b[j].add(r * runs.b_step), runs.len),
                    )
                };
                let (ca, cb) = (ai.chunks_exact(8), bj.chunks_exact(8));
                for (l, (x, y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
                    acc[l] += x * y;
                }
                for (x, y) in ca.zip(cb) {
                    for l in 0..8 {
                        acc[l] += x[l] * y[l];
                    }
                }
            }
            sums[i][j] = acc.iter().sum();
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Runs, MR, NR};
    use crate::cpu::gemm::avx2::first_lanes;
    use std::arch::x86_64::*;

    /// The 4 x 4 tile in two passes of 4 rows x 2 columns (8 accumulators, 4 + 1 operand
    /// registers: 16 ymm registers hold no more), per 8 positions 6 loads and 8 FMAs per
    /// pass; a run's last partial vector by masked loads.
    ///
    /// # Safety
    /// AVX2 and FMA are available; as [`super::portable_tile`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile(
        a: &[*const f32; MR],
        b: &[*const f32; NR],
        runs: Runs,
        sums: &mut [[f32; NR]; MR],
    ) {
        for half in 0..NR / 2 {
            // SAFETY: the caller's contract.
            let s = unsafe { pass(a, [b[2 * half], b[2 * half + 1]], runs) };
            for (row, pair) in sums.iter_mut().zip(s) {
                row[2 * half..2 * half + 2].copy_from_slice(&pair);
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    fn reduce(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
    }

    /// Rows `a` against columns `b` (see [`tile`]).
    ///
    /// # Safety
    /// As [`tile`].
    #[target_feature(enable = "avx2,fma")]
    unsafe fn pass(a: &[*const f32; MR], b: [*const f32; 2], runs: Runs) -> [[f32; 2]; MR] {
        let z = _mm256_setzero_ps();
        let (mut c00, mut c01, mut c10, mut c11, mut c20, mut c21, mut c30, mut c31) =
            (z, z, z, z, z, z, z, z);
        let full = runs.len / 8 * 8;
        // SAFETY: this function is compiled for AVX2.
        let tail = unsafe { first_lanes(runs.len - full) };
        for r in 0..runs.count {
            // SAFETY: every pointer starts `count` runs of `len` floats, `step` apart; the
            // loads stay below `len` (the last one masked).
            unsafe {
                let p0 = a[0].add(r * runs.a_step);
                let p1 = a[1].add(r * runs.a_step);
                let p2 = a[2].add(r * runs.a_step);
                let p3 = a[3].add(r * runs.a_step);
                let q0 = b[0].add(r * runs.b_step);
                let q1 = b[1].add(r * runs.b_step);
                let mut l = 0;
                // One step of 8 positions: 6 loads (`$load`, masked by `$mask` if given)
                // and 8 FMAs.
                macro_rules! step {
                    ($load:ident $(, $mask:ident)?) => {
                        let x0 = $load(p0.add(l) $(, $mask)?);
                        let x1 = $load(p1.add(l) $(, $mask)?);
                        let x2 = $load(p2.add(l) $(, $mask)?);
                        let x3 = $load(p3.add(l) $(, $mask)?);
                        let y = $load(q0.add(l) $(, $mask)?);
                        c00 = _mm256_fmadd_ps(x0, y, c00);
                        c10 = _mm256_fmadd_ps(x1, y, c10);
                        c20 = _mm256_fmadd_ps(x2, y, c20);
                        c30 = _mm256_fmadd_ps(x3, y, c30);
                        let y = $load(q1.add(l) $(, $mask)?);
                        c01 = _mm256_fmadd_ps(x0, y, c01);
                        c11 = _mm256_fmadd_ps(x1, y, c11);
                        c21 = _mm256_fmadd_ps(x2, y, c21);
                        c31 = _mm256_fmadd_ps(x3, y, c31);
                    };
                }
                while l < full {
                    step!(_mm256_loadu_ps);
                    l += 8;
                }
                if l < runs.len {
                    step!(_mm256_maskload_ps, tail);
                }
            }
        }
        [
            [reduce(c00), reduce(c01)],
            [reduce(c10), reduce(c11)],
            [reduce(c20), reduce(c21)],
            [reduce(c30), reduce(c31)],
        ]
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{Runs, MR, NR};
    use std::arch::x86_64::*;

    /// The 4 x 4 tile: 16 accumulators, per 16 positions 4 + 4 loads and 16 FMAs,
    /// written out so that every accumulator stays in a register; a run's last partial
    /// vector by masked loads. Edge tiles repeat their last row and column pointers (see
    /// `accumulate`), so one instance serves every tile.
    ///
    /// # Safety
    /// AVX-512F is available; as [`super::portable_tile`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tile(
        a: &[*const f32; MR],
        b: &[*const f32; NR],
        runs: Runs,
        sums: &mut [[f32; NR]; MR],
    ) {
        let z = _mm512_setzero_ps();
        let (
            mut c00,
            mut c01,
            mut c02,
            mut c03,
            mut c10,
            mut c11,
            mut c12,
            mut c13,
            mut c20,
            mut c21,
            mut c22,
            mut c23,
            mut c30,
            mut c31,
            mut c32,
            mut c33,
        ) = (z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z);
        let full = runs.len / 16 * 16;
        #[allow(clippy::cast_possible_truncation)]
        let tail: __mmask16 = ((1u32 << (runs.len - full)) - 1) as u16;
        for r in 0..runs.count {
            // SAFETY: every pointer starts `count` runs of `len` floats, `step` apart; the
            // loads stay below `len` (the last one masked).
            unsafe {
                let p0 = a[0].add(r * runs.a_step);
                let p1 = a[1].add(r * runs.a_step);
                let p2 = a[2].add(r * runs.a_step);
                let p3 = a[3].add(r * runs.a_step);
                let q0 = b[0].add(r * runs.b_step);
                let q1 = b[1].add(r * runs.b_step);
                let q2 = b[2].add(r * runs.b_step);
                let q3 = b[3].add(r * runs.b_step);
                let mut l = 0;
                // One step of 16 positions: 8 loads (`$load`, masked by `$mask` if given)
                // and 16 FMAs.
                macro_rules! step {
                    ($load:ident $(, $mask:ident)?) => {
                        let x0 = $load($($mask,)? p0.add(l));
                        let x1 = $load($($mask,)? p1.add(l));
                        let x2 = $load($($mask,)? p2.add(l));
                        let x3 = $load($($mask,)? p3.add(l));
                        let y = $load($($mask,)? q0.add(l));
                        c00 = _mm512_fmadd_ps(x0, y, c00);
                        c10 = _mm512_fmadd_ps(x1, y, c10);
                        c20 = _mm512_fmadd_ps(x2, y, c20);
                        c30 = _mm512_fmadd_ps(x3, y, c30);
                        let y = $load($($mask,)? q1.add(l));
                        c01 = _mm512_fmadd_ps(x0, y, c01);
                        c11 = _mm512_fmadd_ps(x1, y, c11);
                        c21 = _mm512_fmadd_ps(x2, y, c21);
                        c31 = _mm512_fmadd_ps(x3, y, c31);
                        let y = $load($($mask,)? q2.add(l));
                        c02 = _mm512_fmadd_ps(x0, y, c02);
                        c12 = _mm512_fmadd_ps(x1, y, c12);
                        c22 = _mm512_fmadd_ps(x2, y, c22);
                        c32 = _mm512_fmadd_ps(x3, y, c32);
                        let y = $load($($mask,)? q3.add(l));
                        c03 = _mm512_fmadd_ps(x0, y, c03);
                        c13 = _mm512_fmadd_ps(x1, y, c13);
                        c23 = _mm512_fmadd_ps(x2, y, c23);
                        c33 = _mm512_fmadd_ps(x3, y, c33);
                    };
                }
                while l < full {
                    // The runs stream from L2: fetch a few lines ahead into L1.
                    _mm_prefetch::<_MM_HINT_T0>(q0.wrapping_add(l + 64).cast());
                    _mm_prefetch::<_MM_HINT_T0>(q1.wrapping_add(l + 64).cast());
                    _mm_prefetch::<_MM_HINT_T0>(q2.wrapping_add(l + 64).cast());
                    _mm_prefetch::<_MM_HINT_T0>(q3.wrapping_add(l + 64).cast());
                    step!(_mm512_loadu_ps);
                    l += 16;
                }
                if l < runs.len {
                    step!(_mm512_maskz_loadu_ps, tail);
                }
            }
        }
        sums[0] = [
            _mm512_reduce_add_ps(c00),
            _mm512_reduce_add_ps(c01),
            _mm512_reduce_add_ps(c02),
            _mm512_reduce_add_ps(c03),
        ];
        sums[1] = [
            _mm512_reduce_add_ps(c10),
            _mm512_reduce_add_ps(c11),
            _mm512_reduce_add_ps(c12),
            _mm512_reduce_add_ps(c13),
        ];
        sums[2] = [
            _mm512_reduce_add_ps(c20),
            _mm512_reduce_add_ps(c21),
            _mm512_reduce_add_ps(c22),
            _mm512_reduce_add_ps(c23),
        ];
        sums[3] = [
            _mm512_reduce_add_ps(c30),
            _mm512_reduce_add_ps(c31),
            _mm512_reduce_add_ps(c32),
            _mm512_reduce_add_ps(c33),
        ];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    /// dW and db by the definition, accumulated in f64.
    fn reference(g: &ConvGeometry, x: &[f32], dy: &[f32], positions: &[u32]) -> (Vec<f64>, Vec<f64>) {
        let (cg, tg, n) = (g.in_channels_per_group(), g.out_channels_per_group(), positions.len());
        let (kh, kw) = (g.kernel_h, g.kernel_w);
        let mut dw = vec![0.0f64; g.weight_len()];
        let mut db = vec![0.0f64; g.out_channels];
        for b in 0..g.batch {
            for t in 0..g.out_channels {
                let group = t / tg;
                for (j, &p) in positions.iter().enumerate() {
                    let d = f64::from(dy[(b * g.out_channels + t) * n + j]);
                    db[t] += d;
                    let (oy, ox) = (p as usize / g.out_w(), p as usize % g.out_w());
                    for c in 0..cg {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let yi = (oy * g.stride_h + ky * g.dilation_h) as isize - g.pad_top as isize;
                                let xi = (ox * g.stride_w + kx * g.dilation_w) as isize - g.pad_left as isize;
                                if yi < 0 || xi < 0 || yi >= g.in_h as isize || xi >= g.in_w as isize {
                                    continue;
                                }
                                let ci = group * cg + c;
                                let v = x[((b * g.in_channels + ci) * g.in_h + yi as usize) * g.in_w
                                    + xi as usize];
                                dw[((t * cg + c) * kh + ky) * kw + kx] += d * f64::from(v);
                            }
                        }
                    }
                }
            }
        }
        (dw, db)
    }

    #[test]
    fn weight_gradients_match_the_definition_for_random_geometries() {
        let mut rng = SeededRng::new(41);
        let cases = [
            // (batch, cin, h, w, cout, k, stride, pad tlbr, dilation, groups, every 2nd position)
            (2, 3, 9, 11, 5, 3, 1, [1, 1, 1, 1], 1, 1, false),
            (3, 4, 10, 7, 6, 3, 2, [1, 0, 2, 1], 1, 2, false),
            (1, 6, 12, 12, 6, 3, 1, [2, 2, 2, 2], 2, 6, true),
            (2, 2, 8, 13, 9, 5, 3, [2, 1, 0, 2], 1, 1, true),
            (1, 16, 7, 7, 13, 1, 1, [0, 0, 0, 0], 1, 1, false),
            (2, 5, 11, 6, 7, 2, 2, [0, 0, 1, 1], 2, 1, false),
            (1, 8, 28, 28, 16, 3, 1, [1, 1, 1, 1], 1, 1, false),
            (9, 6, 7, 7, 10, 3, 1, [1, 1, 1, 1], 1, 1, false),
            (13, 3, 5, 6, 4, 3, 2, [1, 1, 1, 1], 1, 1, true),
            (7, 8, 6, 5, 6, 1, 1, [0, 0, 0, 0], 1, 2, false),
            (3, 8, 6, 5, 6, 1, 1, [0, 0, 0, 0], 1, 1, true),
            (5, 40, 6, 6, 24, 3, 1, [1, 1, 1, 1], 1, 1, false),
            (2, 8, 11, 9, 40, 3, 2, [1, 1, 1, 1], 2, 1, true),
            (3, 9, 6, 7, 5, 3, 1, [1, 1, 1, 1], 1, 1, true),
            // Multiples of 16 input channels: the AVX-512 channel-last tiles, with 3, 2
            // and 1 column vectors per tile and output channels past a block of 8.
            (2, 16, 9, 8, 13, 3, 1, [1, 1, 1, 1], 1, 1, true),
            (3, 32, 7, 9, 40, 3, 2, [1, 0, 1, 1], 1, 1, false),
            (2, 48, 6, 6, 8, 1, 2, [0, 0, 0, 0], 1, 1, false),
            (2, 32, 8, 8, 9, 1, 2, [0, 0, 0, 0], 1, 1, true),
            (1, 16, 10, 10, 20, 3, 1, [2, 2, 2, 2], 2, 1, false),
        ];
        for (batch, cin, h, w, cout, k, s, [pt, pl, pb, pr], d, groups, sparse) in cases {
            let g = ConvGeometry::new(cin, h, w, cout, k, k)
                .with_stride(s)
                .with_padding_tlbr(pt, pl, pb, pr)
                .with_dilation(d)
                .with_groups(groups)
                .with_batch(batch);
            g.validate().expect("geometry");
            let all = (g.out_h() * g.out_w()) as u32;
            let positions: Vec<u32> = (0..all).filter(|p| !sparse || p % 2 == 1).collect();
            let x = rng.vec_f32(batch * cin * h * w, -1.0, 1.0);
            let dy = rng.vec_f32(batch * cout * positions.len(), -1.0, 1.0);
            let (rw, rb) = reference(&g, &x, &dy, &positions);
            let check = |path: &str, (dw, db): (Vec<f32>, Vec<f32>)| {
                for (name, got, want) in [("dw", &dw, &rw), ("db", &db, &rb)] {
                    assert_eq!(got.len(), want.len());
                    for (i, (a, b)) in got.iter().zip(want.iter()).enumerate() {
                        assert!(
                            (f64::from(*a) - b).abs() <= 1e-4 * (1.0 + b.abs()),
                            "{path} {name}[{i}] = {a}, want {b} ({g:?}, sparse {sparse})"
                        );
                    }
                }
            };
            #[cfg(target_arch = "x86_64")]
            if super::super::weight_grad_cl::applies(&g, positions.len()) {
                check("channel-last", super::super::weight_grad_cl::weight_grad_cl(&g, &x, &dy, &positions));
            }
            let families = crate::cpu::gemm::Microkernel::available().into_iter().map(|k| k.name);
            for family in families.chain(["portable"]) {
                check(family, weight_grad_with(&g, &x, &dy, &positions, tile_of(family)));
            }
        }
    }
}
