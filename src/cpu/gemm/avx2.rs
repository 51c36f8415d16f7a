//! AVX2 + FMA microkernels: the packed GEMM's 6 × 16 register tile, and the HWC conv
//! path's channel-vectorised tile ([`hwc_tile`]).
//!
//! GEMM registers: 12 accumulators `acc[i][v]` (row i, 8-lane half v of the 16 columns),
//! 2 B vectors and 1 broadcast: 15 of 16 ymm. Loop: per step two B loads, then per row one
//! broadcast and two FMAs (12 FMAs against 8 loads).

use std::arch::x86_64::*;

use super::Microkernel;

const MR: usize = 6;
const NR: usize = 16;

pub(super) fn kernel() -> Microkernel {
    Microkernel { name: "avx2", mr: MR, nr: NR, func: run, indirect: None, rows: Some(run_rows) }
}

/// # Safety
/// See [`super::KernelFn`]; the CPU has AVX2 and FMA.
#[allow(clippy::too_many_arguments)]
unsafe fn run(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    bias: *const f32,
    relu: bool,
) {
    // SAFETY: forwarded contract.
    unsafe { tile::<MR>(kc, a, b, c, ldc, accumulate, bias, relu) }
}

/// # Safety
/// See [`super::RowsFn`]; the CPU has AVX2 and FMA.
#[allow(clippy::too_many_arguments)]
unsafe fn run_rows(
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
    // SAFETY: forwarded contract, `rows` rows of C and bias.
    unsafe {
        match rows {
            1 => tile::<1>(kc, a, b, c, ldc, accumulate, bias, relu),
            2 => tile::<2>(kc, a, b, c, ldc, accumulate, bias, relu),
            3 => tile::<3>(kc, a, b, c, ldc, accumulate, bias, relu),
            4 => tile::<4>(kc, a, b, c, ldc, accumulate, bias, relu),
            _ => tile::<5>(kc, a, b, c, ldc, accumulate, bias, relu),
        }
    }
}

/// The first `R` rows of the tile (`R = MR`: all of it); A advances `MR` floats per step.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const R: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    bias: *const f32,
    relu: bool,
) {
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        // SAFETY: `a` and `b` advance by one step of MR and NR floats, kc times.
        unsafe {
            let b0 = _mm256_loadu_ps(b);
            let b1 = _mm256_loadu_ps(b.add(8));
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm256_broadcast_ss(&*a.add(i));
                row[0] = _mm256_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm256_fmadd_ps(ai, b1, row[1]);
            }
            a = a.add(MR);
            b = b.add(NR);
        }
    }
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: the tile has R rows of NR floats at stride ldc.
        unsafe {
            let ci = c.add(i * ldc);
            let (mut r0, mut r1) = (row[0], row[1]);
            if accumulate {
                r0 = _mm256_add_ps(r0, _mm256_loadu_ps(ci));
                r1 = _mm256_add_ps(r1, _mm256_loadu_ps(ci.add(8)));
            }
            if !bias.is_null() {
                let beta = _mm256_set1_ps(*bias.add(i));
                r0 = _mm256_add_ps(r0, beta);
                r1 = _mm256_add_ps(r1, beta);
                if relu {
                    r0 = _mm256_max_ps(_mm256_setzero_ps(), r0);
                    r1 = _mm256_max_ps(_mm256_setzero_ps(), r1);
                }
            }
            _mm256_storeu_ps(ci, r0);
            _mm256_storeu_ps(ci.add(8), r1);
        }
    }
}

/// How far ahead [`hwc_tile`] prefetches its weight stream (floats), as the AVX-512 tile.
const PREFETCH_FLOATS: usize = 1024;

/// The channel-vectorised tile of [`crate::cpu::FastConv`]'s HWC path on AVX2, the
/// counterpart of `avx512::hwc_tile` with the same contract and 8-lane vectors: `MR`
/// output positions × `8·NV` output channels over `taps` kernel offsets × `cg` input
/// channels.
///
/// Registers: `MR·NV` accumulators (6 × 2, 12 × 1 or 4 × 3: at most 12), `NV` weight vectors, one
/// broadcast. Loop: for each tap, the `MR` positions' input values (`x + offs[tap·ld_offs +
/// i]`, then `cs` floats apart for each of `cg` channels); for each input channel, load the
/// weights `w[tap][ci][0..8·NV]`, broadcast each position's value and issue `MR·NV` FMAs.
/// Epilogue: add `bias`, apply the ReLU, and write each of the first `positions`
/// positions' channels below `channels` to `out[channel · ld_out + i]`. AVX2 has no
/// scatter: a whole tile of at most 8 positions is transposed in registers (8 channels at
/// a time) and each channel's positions stored as one run (the 28x28 ResNet's HWC layers
/// at batch 64, alternated in both orders: 16 channels 0.87-0.88x, 32 0.89-0.93x, 64
/// 0.94-0.96x); partial and 12-position tiles go through a stack copy, one scalar store
/// per value.
///
/// # Safety
/// The CPU has AVX2 and FMA; `offs` holds `taps` rows of `MR` offsets at stride `ld_offs`,
/// each leaving `cg` readable floats `cs` apart from `x`; `w` holds `taps·cg·8·NV` floats,
/// `bias` `8·NV`; `out + channel·ld_out + i` is writable for every channel below
/// `channels` and position below `positions` (at most `MR`).
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn hwc_tile<const MR: usize, const NV: usize>(
    taps: usize,
    cg: usize,
    cs: usize,
    x: *const f32,
    offs: *const u32,
    ld_offs: usize,
    w: *const f32,
    bias: *const f32,
    relu: bool,
    out: *mut f32,
    ld_out: usize,
    positions: usize,
    channels: usize,
) {
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    let mut w = w;
    for t in 0..taps {
        // SAFETY: the caller's contract: MR offsets per tap, cg floats each; w advances
        // by 8·NV floats per input channel, taps·cg times in all.
        unsafe {
            let r = offs.add(t * ld_offs);
            let mut p = [std::ptr::null::<f32>(); MR];
            for (i, x_i) in p.iter_mut().enumerate() {
                *x_i = x.add(*r.add(i) as usize);
            }
            for ci in 0..cg {
                let mut wv = [_mm256_setzero_ps(); NV];
                for (v, x) in wv.iter_mut().enumerate() {
                    *x = _mm256_loadu_ps(w.add(8 * v));
                }
                // A prefetch reads no memory it may not, wherever it points.
                _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(PREFETCH_FLOATS).cast());
                for (row, &pi) in acc.iter_mut().zip(&p) {
                    let a = _mm256_broadcast_ss(&*pi.add(ci * cs));
                    for (r, &x) in row.iter_mut().zip(&wv) {
                        *r = _mm256_fmadd_ps(a, x, *r);
                    }
                }
                w = w.add(8 * NV);
            }
        }
    }
    let zero = _mm256_setzero_ps();
    if MR <= 8 && positions == MR {
        // A whole tile of at most 8 positions: per 8 channels, an in-register transpose
        // makes each channel's positions one vector, stored as its first MR lanes.
        #[allow(clippy::needless_range_loop)] // v indexes the second axis of acc[i][v]
        for v in 0..NV {
            // SAFETY: bias holds 8·NV floats.
            let b = unsafe { _mm256_loadu_ps(bias.add(8 * v)) };
            let rows: [__m256; 8] = std::array::from_fn(|i| {
                if i >= MR {
                    return zero;
                }
                let r = _mm256_add_ps(acc[i][v], b);
                if relu {
                    _mm256_max_ps(zero, r)
                } else {
                    r
                }
            });
            // SAFETY: AVX2 is enabled here.
            let cols = unsafe { crate::cpu::fast::transpose::transpose8(rows) };
            for (j, col) in cols.iter().enumerate().take(channels.saturating_sub(8 * v).min(8)) {
                // SAFETY: channel 8v + j < channels, positions 0..MR: writable by the contract.
                unsafe { store_first::<MR>(out.add((8 * v + j) * ld_out), *col) };
            }
        }
        return;
    }
    let mut tile = [[[0.0f32; 8]; NV]; MR];
    for (row, dst) in acc.iter().zip(tile.iter_mut()).take(positions) {
        for (v, (&r, d)) in row.iter().zip(dst.iter_mut()).enumerate() {
            // SAFETY: bias holds 8·NV floats; `d` is 8 floats.
            unsafe {
                let mut r = _mm256_add_ps(r, _mm256_loadu_ps(bias.add(8 * v)));
                if relu {
                    r = _mm256_max_ps(zero, r);
                }
                _mm256_storeu_ps(d.as_mut_ptr(), r);
            }
        }
    }
    for ch in 0..channels.min(8 * NV) {
        let (v, lane) = (ch / 8, ch % 8);
        for (i, row) in tile.iter().enumerate().take(positions) {
            // SAFETY: channel ch < channels, position i < positions: writable by the contract.
            unsafe { *out.add(ch * ld_out + i) = row[v][lane] };
        }
    }
}

/// Stores the first `N ≤ 8` lanes of `v` at `p` by whole 128-, 64- and 32-bit stores
/// (masked stores cost several plain ones on Zen 3).
///
/// # Safety
/// The CPU has AVX2, the caller is compiled for it; `p` has `N` writable floats.
#[inline(always)]
unsafe fn store_first<const N: usize>(p: *mut f32, v: __m256) {
    // SAFETY: each store writes lanes below N, inside the caller's N floats.
    unsafe {
        if N == 8 {
            return _mm256_storeu_ps(p, v);
        }
        let (mut lo, mut at) = (_mm256_castps256_ps128(v), 0);
        if N >= 4 {
            _mm_storeu_ps(p, lo);
            lo = _mm256_extractf128_ps::<1>(v);
            at = 4;
        }
        if N % 4 >= 2 {
            _mm_storel_pd(p.add(at).cast(), _mm_castps_pd(lo));
            lo = _mm_movehl_ps(lo, lo);
            at += 2;
        }
        if N % 2 == 1 {
            _mm_store_ss(p.add(at), lo);
        }
    }
}

/// Lanes `0..n` set (all for `n ≥ 8`), for `_mm256_maskload_ps` / `_mm256_maskstore_ps`.
///
/// # Safety
/// The CPU has AVX2, and the caller is compiled for it.
#[inline(always)]
pub(crate) unsafe fn first_lanes(n: usize) -> __m256i {
    #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
    let n = n.min(8) as i32;
    // SAFETY: AVX2 by the caller's contract.
    unsafe { _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)) }
}

/// Output channels per tile of [`row_tile`] (its weight panels' rows).
pub(crate) const ROW_TILE_MR: usize = 6;
/// Positions per tile of [`row_tile`]: two vectors.
pub(crate) const ROW_TILE_WIDTH: usize = 16;

/// The position-vectorised conv tile on AVX2 (first layers over the row path's padded,
/// phase-split copy, [`crate::cpu::fast`]'s `row_conv`): `C[MR, width] = A[MR, k] ·
/// B[k, width] + bias`, then the ReLU, for `width ≤ 8·NV` consecutive positions of one
/// output row; B's row p read in place at `b + offs[p]` (a tap's shifted input row), C
/// written into the output's planes (`c + i·ldc`). Used as 6 × 16, the GEMM tile's shape.
///
/// Registers: `MR·NV` accumulators (12), `NV` B vectors, one broadcast (15 of 16 ymm).
/// Loop: for each of the `k` taps, `NV` B loads, then per output channel a broadcast of
/// `a[p][i]` and `NV` FMAs (8 loads per 12 FMAs; 12 independent sums cover the FMA
/// latency, which 8 did not: an 8 × 8 tile ran ResNet-18's first conv at 63 GFLOP/s
/// against the implicit GEMM's 78). The B loads are full vectors even for a partial
/// tile: the copy's slack keeps them inside the buffer, and the lanes past `width` are
/// dropped by the store (a masked load costs several plain ones on Zen 3). Before the
/// loop, the next tile's output lines along the same rows are prefetched for writing
/// ([`prefetch_next_tile`]: SqueezeNet's 3 -> 64 first conv at batch 1, 0.69-0.77 ->
/// 0.49-0.69 ms; ResNet-18's, GoogLeNet's and VGG-11's 0.85-0.92x).
///
/// # Safety
/// The CPU has AVX2 and FMA; `a` holds `k·MR` floats, `bias` MR; for every `p < k`,
/// `b + offs[p]` has `8·NV` readable floats; `c + i·ldc + j` is writable for
/// `i < rows ≤ MR`, `j < width ≤ 8·NV`.
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn row_tile<const MR: usize, const NV: usize>(
    k: usize,
    a: *const f32,
    b: *const f32,
    offs: *const u32,
    width: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    bias: *const f32,
    relu: bool,
) {
    debug_assert!(rows <= MR && width <= 8 * NV);
    prefetch_next_tile(c, ldc, rows, 8 * NV);
    // SAFETY: every read is inside its operand by the caller's contract.
    unsafe {
        let acc = accumulate_rows::<MR, NV, false>(k, a, MR, b, offs, _mm256_setzero_si256());
        let zero = _mm256_setzero_ps();
        for (i, acc) in acc.iter().enumerate().take(rows) {
            let bias = _mm256_broadcast_ss(&*bias.add(i));
            let out = c.add(i * ldc);
            let mut lanes = [[0.0f32; 8]; NV];
            for (v, (acc, lanes)) in acc.iter().zip(&mut lanes).enumerate() {
                let mut r = _mm256_add_ps(*acc, bias);
                if relu {
                    // max_ps(0, v) returns v when it is NaN (`cpu::nan`).
                    r = _mm256_max_ps(zero, r);
                }
                if width == 8 * NV {
                    _mm256_storeu_ps(out.add(8 * v), r);
                } else {
                    _mm256_storeu_ps(lanes.as_mut_ptr(), r);
                }
            }
            if width < 8 * NV {
                std::ptr::copy_nonoverlapping(lanes.as_ptr().cast::<f32>(), out, width);
            }
        }
    }
}

/// [`row_tile`] for every weight panel of a tile of positions: panel `p` computes output
/// channels `p·MR ..` (below `channels`) from `a + p·k·MR` and `bias + p·MR` into
/// `c + p·MR·ldc`. One call per tile: with few taps (27 for a 3x3 RGB window) a call per
/// panel spent a quarter of the tile's cycles entering and leaving the function.
///
/// # Safety
/// As [`row_tile`] for each panel: `a` holds `panels·k·MR` floats, `bias` `panels·MR`,
/// `c + i·ldc + j` is writable for `i < channels ≤ panels·MR`, `j < width`.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn row_panels<const MR: usize, const NV: usize>(
    k: usize,
    a: *const f32,
    b: *const f32,
    offs: *const u32,
    width: usize,
    c: *mut f32,
    ldc: usize,
    channels: usize,
    bias: *const f32,
    relu: bool,
) {
    for p in 0..channels.div_ceil(MR) {
        let rows = MR.min(channels - p * MR);
        // SAFETY: panel p's operands lie inside the caller's (contract above).
        unsafe {
            row_tile::<MR, NV>(
                k,
                a.add(p * k * MR),
                b,
                offs,
                width,
                c.add(p * MR * ldc),
                ldc,
                rows,
                bias.add(p * MR),
                relu,
            );
        }
    }
}

/// The pointwise conv tile on AVX2 ([`crate::cpu::fast`]'s `pointwise`), the counterpart
/// of `avx512::row_tile`: `C[rows, width] (+)= A[rows, kc] · B[kc, width]`, B's row p read
/// in place at `b + offs[p]` (an input channel's plane from the tile's first position),
/// C's rows written in place at stride `ldc` (the output's planes).
///
/// Registers: `rows·NV` accumulators (at most 6 × 2), `NV` B vectors, one broadcast.
/// Loop: for each of the `kc` rows, `NV` B loads, then per output channel a broadcast of
/// `a[p][i]` (A advances [`ROW_TILE_MR`] floats per step whatever `rows` is: packed
/// panels) and `NV` FMAs. Epilogue: with `accumulate`, add C's current values; with a
/// non-null `bias` (the last depth block), add it and apply the ReLU; store. Only a
/// partial tile (`width < 16`, the end of a plane) reads and writes its last vector
/// masked: a masked load costs several plain ones on Zen 3, and the reads of a full
/// vector past the plane could leave the buffer at its last channel. The next tile's
/// output lines are prefetched for writing first, as in [`row_tile`].
///
/// # Safety
/// The CPU has AVX2 and FMA; `0 < rows ≤ 6`, `0 < width ≤ 16`; `a` holds `kc·6` floats;
/// for every `p < kc`, `b + offs[p]` has `width` readable floats; `c + i·ldc` has `width`
/// writable (and, with `accumulate`, readable) floats for `i < rows`; a non-null `bias`
/// holds `rows` floats.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn pointwise_tile(
    kc: usize,
    a: *const f32,
    b: *const f32,
    offs: *const u32,
    width: usize,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    accumulate: bool,
    bias: *const f32,
    relu: bool,
) {
    macro_rules! run {
        ($r:literal) => {
            // SAFETY: forwarded contract.
            unsafe {
                match (width.div_ceil(8), width % 8 == 0) {
                    (2, true) => {
                        pointwise_rows::<$r, 2, false>(kc, a, b, offs, width, c, ldc, accumulate, bias, relu)
                    }
                    (2, false) => {
                        pointwise_rows::<$r, 2, true>(kc, a, b, offs, width, c, ldc, accumulate, bias, relu)
                    }
                    (_, true) => {
                        pointwise_rows::<$r, 1, false>(kc, a, b, offs, width, c, ldc, accumulate, bias, relu)
                    }
                    (_, false) => {
                        pointwise_rows::<$r, 1, true>(kc, a, b, offs, width, c, ldc, accumulate, bias, relu)
                    }
                }
            }
        };
    }
    match rows {
        1 => run!(1),
        2 => run!(2),
        3 => run!(3),
        4 => run!(4),
        5 => run!(5),
        _ => run!(6),
    }
}

/// [`pointwise_tile`] for `R` rows of `NV` vectors, the last one masked with `MASKED`.
#[target_feature(enable = "avx2,fma")]
#[inline]
#[allow(clippy::too_many_arguments)]
unsafe fn pointwise_rows<const R: usize, const NV: usize, const MASKED: bool>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    offs: *const u32,
    width: usize,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    bias: *const f32,
    relu: bool,
) {
    prefetch_next_tile(c, ldc, R, 8 * NV);
    // SAFETY: AVX2 is enabled here.
    let tail = unsafe { first_lanes(width - 8 * (NV - 1)) };
    // SAFETY: every read and write is inside its operand by the caller's contract; the
    // last vector of a partial tile is read and written under `tail` only.
    unsafe {
        let acc = accumulate_rows::<R, NV, MASKED>(kc, a, ROW_TILE_MR, b, offs, tail);
        let zero = _mm256_setzero_ps();
        for (i, row) in acc.iter().enumerate() {
            let ci = c.add(i * ldc);
            let beta = if bias.is_null() { None } else { Some(_mm256_broadcast_ss(&*bias.add(i))) };
            for (v, &r) in row.iter().enumerate() {
                let masked = MASKED && v + 1 == NV;
                let at = ci.add(8 * v);
                let mut r = r;
                if accumulate {
                    let old = if masked { _mm256_maskload_ps(at, tail) } else { _mm256_loadu_ps(at) };
                    r = _mm256_add_ps(r, old);
                }
                if let Some(beta) = beta {
                    r = _mm256_add_ps(r, beta);
                    if relu {
                        // max_ps(0, v) returns v when it is NaN (`cpu::nan`).
                        r = _mm256_max_ps(zero, r);
                    }
                }
                if masked {
                    _mm256_maskstore_ps(at, tail, r);
                } else {
                    _mm256_storeu_ps(at, r);
                }
            }
        }
    }
}

/// The accumulation loop of [`row_tile`] and [`pointwise_rows`]: `A[R, k] · B[k, 8·NV]`
/// in `R × NV` vectors. For each of the `k` rows of B, its `NV` vectors at `b + offs[p]`
/// (the last one loaded under `tail` when `MASKED`), then per output channel i a
/// broadcast of `a[p·lda + i]` and `NV` FMAs.
///
/// # Safety
/// The caller is compiled for AVX2 and FMA (this inlines into it); `a` holds `k·lda`
/// floats with `R ≤ lda`; for every `p < k`, `b + offs[p]` has `8·NV` readable floats
/// (only the lanes under `tail` of the last vector when `MASKED`).
#[inline(always)]
unsafe fn accumulate_rows<const R: usize, const NV: usize, const MASKED: bool>(
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    offs: *const u32,
    tail: __m256i,
) -> [[__m256; NV]; R] {
    // SAFETY: AVX2 and FMA by the caller's contract; every read as it states.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); NV]; R];
        for p in 0..k {
            let at = b.add(*offs.add(p) as usize);
            let bv: [__m256; NV] = std::array::from_fn(|v| {
                if MASKED && v + 1 == NV {
                    _mm256_maskload_ps(at.add(8 * v), tail)
                } else {
                    _mm256_loadu_ps(at.add(8 * v))
                }
            });
            let ap = a.add(lda * p);
            for (i, acc) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*ap.add(i));
                for (acc, bv) in acc.iter_mut().zip(&bv) {
                    *acc = _mm256_fmadd_ps(av, *bv, *acc);
                }
            }
        }
        acc
    }
}

/// Prefetches for writing the output lines of the next tile along the same rows (`width`
/// floats after `c` in each of `rows` rows `ldc` apart): a run of tiles writes its rows a
/// plane apart, more store streams than the hardware prefetcher follows. A prefetch reads
/// no memory it may not, wherever it points.
#[inline(always)]
fn prefetch_next_tile(c: *mut f32, ldc: usize, rows: usize, width: usize) {
    for i in 0..rows {
        let next = c.wrapping_add(i * ldc + width);
        // SAFETY: prefetches have no memory-safety requirements.
        unsafe {
            _mm_prefetch::<_MM_HINT_ET0>(next.cast());
            _mm_prefetch::<_MM_HINT_ET0>(next.wrapping_add(width - 1).cast());
        }
    }
}
