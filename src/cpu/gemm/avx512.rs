//! AVX-512 microkernels: an 8 × 32 register tile (packed and indirect B) and an 8 × 48
//! one (packed B), the same loop with two or three vectors per row.
//!
//! Registers: 16 accumulators `acc[i][v]` (row i = output channel, v = which 16-lane half
//! of the 32 columns), 2 B vectors and 1 broadcast A value; 13 of 32 zmm spare.
//! Loop: for each of the `kc` steps, load `b[p][0..16]` and `b[p][16..32]`, then for each
//! row broadcast `a[p][i]` and issue two FMAs. 16 FMAs per step against 10 loads, so the
//! two FMA ports bound it.

use std::arch::x86_64::*;

use super::{lane_mask, BRow, Microkernel, ROW_TILE_MR};

const MR: usize = 8;
const NR: usize = 32;

pub(super) fn kernel() -> Microkernel {
    Microkernel { name: "avx512", mr: MR, nr: NR, func: run::<2>, indirect: Some(run_indirect), rows: None }
}

/// The 8 × 48 variant (24 accumulators, 3 B vectors per step: 11 loads per 24 FMAs), for
/// layers whose positions fill 48-wide tiles better than 32-wide ones.
pub(super) fn wide() -> Microkernel {
    Microkernel { name: "avx512", mr: MR, nr: 48, func: run::<3>, indirect: None, rows: None }
}

/// # Safety
/// See [`super::KernelFn`]; the CPU has AVX-512F.
#[allow(clippy::too_many_arguments)]
unsafe fn run<const NV: usize>(
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
    unsafe { tile::<NV>(kc, a, b, c, ldc, accumulate, bias, relu) }
}

/// `NV` 16-lane vectors per row: NR = 16·NV columns.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile<const NV: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    bias: *const f32,
    relu: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    let (mut a, mut b) = (a, b);
    for _ in 0..kc {
        // SAFETY: `a` and `b` advance by one step of MR and 16·NV floats, kc times.
        unsafe {
            let mut bv = [_mm512_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = _mm512_loadu_ps(b.add(16 * v));
            }
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*a.add(i));
                for (r, &x) in row.iter_mut().zip(&bv) {
                    *r = _mm512_fmadd_ps(ai, x, *r);
                }
            }
            a = a.add(MR);
            b = b.add(16 * NV);
        }
    }
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: the tile has MR rows of 16·NV floats at stride ldc; a non-null bias has MR.
        unsafe {
            let ci = c.add(i * ldc);
            let beta = if bias.is_null() { None } else { Some(_mm512_set1_ps(*bias.add(i))) };
            for (v, &r) in row.iter().enumerate() {
                let mut r = r;
                if accumulate {
                    r = _mm512_add_ps(r, _mm512_loadu_ps(ci.add(16 * v)));
                }
                if let Some(beta) = beta {
                    r = _mm512_add_ps(r, beta);
                    if relu {
                        r = _mm512_max_ps(_mm512_setzero_ps(), r);
                    }
                }
                _mm512_storeu_ps(ci.add(16 * v), r);
            }
        }
    }
}

/// # Safety
/// See [`super::IndirectFn`]; the CPU has AVX-512F.
#[allow(clippy::too_many_arguments)]
unsafe fn run_indirect(
    kc: usize,
    a: *const f32,
    rows: *const BRow,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    bias: *const f32,
    relu: bool,
) {
    // SAFETY: forwarded contract.
    unsafe { tile_indirect(kc, a, rows, c, ldc, accumulate, bias, relu) }
}

/// Steps ahead whose B row [`tile_indirect`] prefetches.
const INDIRECT_PREFETCH: usize = 8;

/// The same tile with B read through `kc` row descriptors: per step two masked loads
/// (lanes 0..16 and 16..32 of the row) instead of two loads from a packed panel.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tile_indirect(
    kc: usize,
    a: *const f32,
    rows: *const BRow,
    c: *mut f32,
    ldc: usize,
    accumulate: bool,
    bias: *const f32,
    relu: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    let mut a = a;
    for p in 0..kc {
        // SAFETY: `rows` has kc descriptors whose kept lanes are readable (masked-out lanes
        // read no memory); `a` advances by MR floats, kc times.
        unsafe {
            let r = *rows.add(p);
            // Lanes 0..16 and 16..32 of the row's mask: the truncations are the point.
            #[allow(clippy::cast_possible_truncation)]
            let (k0, k1) = (r.keep as u16, (r.keep >> 16) as u16);
            let b0 = _mm512_maskz_loadu_ps(k0, r.ptr);
            let b1 = _mm512_maskz_loadu_ps(k1, r.ptr.wrapping_add(16));
            // A row a few steps on, which the hardware prefetcher cannot predict (rows are
            // a plane apart): its two cache lines or three.
            let next = (*rows.add((p + INDIRECT_PREFETCH).min(kc - 1))).ptr;
            _mm_prefetch::<_MM_HINT_T0>(next.cast());
            _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(16).cast());
            _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(31).cast());
            for (i, row) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*a.add(i));
                row[0] = _mm512_fmadd_ps(ai, b0, row[0]);
                row[1] = _mm512_fmadd_ps(ai, b1, row[1]);
            }
            a = a.add(MR);
        }
    }
    for (i, row) in acc.iter().enumerate() {
        // SAFETY: the tile has MR rows of NR floats at stride ldc; a non-null bias has MR.
        unsafe {
            let ci = c.add(i * ldc);
            let (mut r0, mut r1) = (row[0], row[1]);
            if accumulate {
                r0 = _mm512_add_ps(r0, _mm512_loadu_ps(ci));
                r1 = _mm512_add_ps(r1, _mm512_loadu_ps(ci.add(16)));
            }
            if !bias.is_null() {
                let beta = _mm512_set1_ps(*bias.add(i));
                r0 = _mm512_add_ps(r0, beta);
                r1 = _mm512_add_ps(r1, beta);
                if relu {
                    r0 = _mm512_max_ps(_mm512_setzero_ps(), r0);
                    r1 = _mm512_max_ps(_mm512_setzero_ps(), r1);
                }
            }
            _mm512_storeu_ps(ci, r0);
            _mm512_storeu_ps(ci.add(16), r1);
        }
    }
}

/// How far ahead [`hwc_tile`] prefetches its weight stream (floats; 512 to 2048 measured
/// alike on ResNet-18).
const PREFETCH_FLOATS: usize = 1024;

/// The channel-vectorised tile of [`crate::cpu::FastConv`]'s HWC path: `MR` output
/// positions × `16·NV` output channels, over `taps` kernel offsets × `cg` input channels.
///
/// Registers: `MR·NV` accumulators (8 × 1 or 8 × 2), `NV` weight vectors, one broadcast.
/// Loop: for each tap, the `MR` positions' input values (`x + offs[tap·ld_offs + i]`, then
/// `cs` floats apart for each of `cg` channels: 1 channel-last, the plane for `[C, plane]`);
/// for each input channel, load the weights
/// `w[tap][ci][0..16·NV]`, broadcast each position's value and issue `MR·NV` FMAs.
/// Epilogue: add `bias`, apply the ReLU, and write the first `positions` positions'
/// channel vectors into `out[channel · ld_out + i]` (channel-major, as the output is
/// stored) by 8-position transposes ([`store_channel_major`]), channels under `channels`
/// only.
///
/// # Safety
/// The CPU has AVX-512F; `offs` holds `taps` rows of `MR` offsets at stride `ld_offs`, each
/// leaving `cg` readable floats `cs` apart from `x`; `w` holds `taps·cg·16·NV` floats, `bias` `16·NV`;
/// `out + channel·ld_out + i` is writable for every channel below `channels` and position
/// below `positions` (at most `MR`).
#[target_feature(enable = "avx512f")]
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
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    let mut w = w;
    for t in 0..taps {
        // SAFETY: the caller's contract: MR offsets per tap, cg floats each; w advances
        // by 16·NV floats per input channel, taps·cg times in all.
        unsafe {
            let r = offs.add(t * ld_offs);
            let mut p = [std::ptr::null::<f32>(); MR];
            for (i, x_i) in p.iter_mut().enumerate() {
                *x_i = x.add(*r.add(i) as usize);
            }
            for ci in 0..cg {
                let mut wv = [_mm512_setzero_ps(); NV];
                for (v, x) in wv.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(w.add(16 * v));
                    // The weights a few KB ahead: the hardware prefetcher alone left the
                    // 3x3 layers of 256 and 512 channels (0.3-0.6 MB of weights per channel
                    // block, streamed once per tile) at half the kernel's peak. A prefetch
                    // reads no memory it may not, wherever it points.
                    _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(16 * v + PREFETCH_FLOATS).cast());
                }
                for (row, &pi) in acc.iter_mut().zip(&p) {
                    let a = _mm512_set1_ps(*pi.add(ci * cs));
                    for (r, &x) in row.iter_mut().zip(&wv) {
                        *r = _mm512_fmadd_ps(a, x, *r);
                    }
                }
                w = w.add(16 * NV);
            }
        }
    }
    let zero = _mm512_setzero_ps();
    // The accumulators regrouped by channel vector with constant indices only: indexing
    // `acc` by the run-time `v` below would keep it in memory through the FMA loop.
    let mut cols = [[zero; MR]; NV];
    for (i, row) in acc.iter().enumerate() {
        for (v, &a) in row.iter().enumerate() {
            cols[v][i] = a;
        }
    }
    for (v, col) in cols.iter().enumerate() {
        let n = channels.saturating_sub(16 * v).min(16);
        if n == 0 {
            break;
        }
        // SAFETY: bias holds 16·NV floats.
        let beta = unsafe { _mm512_loadu_ps(bias.add(16 * v)) };
        let mut rows = *col;
        for r in &mut rows {
            *r = _mm512_add_ps(*r, beta);
            if relu {
                *r = _mm512_max_ps(zero, *r);
            }
        }
        for i0 in (0..positions).step_by(8) {
            // Rows past MR repeat the last one; their lanes are never stored.
            let mut group = [rows[MR - 1]; 8];
            for (k, g) in group.iter_mut().enumerate().take(MR - i0.min(MR)) {
                *g = rows[i0 + k];
            }
            // SAFETY: channels 16·v.. 16·v + n and positions i0.. min(i0 + 8, positions)
            // are writable by the contract.
            unsafe {
                store_channel_major(group, out.add(16 * v * ld_out + i0), ld_out, (positions - i0).min(8), n)
            };
        }
    }
}

/// Writes 8 positions' vectors of 16 channels channel-major: `out[ch · ld + i] = rows[i][ch]`
/// for `i < positions` and `ch < channels`. An in-register transpose (two unpack stages
/// within 128-bit lanes, then one two-source permute per pair of output vectors: 24
/// shuffles) leaves each channel's 8 positions in one half of a vector, stored under a lane
/// mask; the scatter it replaces cost about 11 cycles per position vector (the 28x28
/// ResNet's HWC tiles spent a fifth of their cycles in it).
///
/// # Safety
/// The CPU has AVX-512F; `out + ch·ld + i` is writable for every `ch < channels ≤ 16` and
/// `i < positions ≤ 8`.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn store_channel_major(
    rows: [__m512; 8],
    out: *mut f32,
    ld: usize,
    positions: usize,
    channels: usize,
) {
    // Within each 128-bit lane l (channels 4l..4l + 4): pairs of positions interleaved.
    let t: [__m512; 4] = std::array::from_fn(|k| _mm512_unpacklo_ps(rows[2 * k], rows[2 * k + 1]));
    let u: [__m512; 4] = std::array::from_fn(|k| _mm512_unpackhi_ps(rows[2 * k], rows[2 * k + 1]));
    let lo =
        |x: __m512, y: __m512| _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(x), _mm512_castps_pd(y)));
    let hi =
        |x: __m512, y: __m512| _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(x), _mm512_castps_pd(y)));
    // a[j] lane l: positions 0..4 of channel 4l + j; b[j]: positions 4..8.
    let a = [lo(t[0], t[1]), hi(t[0], t[1]), lo(u[0], u[1]), hi(u[0], u[1])];
    let b = [lo(t[2], t[3]), hi(t[2], t[3]), lo(u[2], u[3]), hi(u[2], u[3])];
    // Halves: channels j and 4 + j (first), 8 + j and 12 + j (second).
    let first = _mm512_setr_epi32(0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23);
    let second = _mm512_setr_epi32(8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31);
    let low: __mmask16 = lane_mask(positions) & 0xff;
    let high: __mmask16 = low << 8;
    for j in 0..4 {
        for (ch, idx) in [(j, first), (8 + j, second)] {
            let v = _mm512_permutex2var_ps(a[j], idx, b[j]);
            // SAFETY: the lanes under `low` write positions < positions of channel ch, those
            // under `high` (8 lanes on) of channel ch + 4, each only below `channels`; the
            // masked-off lanes neither write nor fault.
            unsafe {
                if ch < channels {
                    _mm512_mask_storeu_ps(out.add(ch * ld), low, v);
                }
                if ch + 4 < channels {
                    _mm512_mask_storeu_ps(out.add((ch + 4) * ld).wrapping_sub(8), high, v);
                }
            }
        }
    }
}

/// The position-vectorised conv tile of [`crate::cpu::FastConv`] (pointwise convs, and
/// first layers over a padded copy): `C[8, 16·NV] (+)= A[8, kc] · B[kc, 16·NV]`, B's row p
/// read in place at `b + offs[p]` (an input channel's plane for a pointwise conv, a tap's
/// shifted input row for a direct conv), C written in place into the output's planes.
///
/// Registers: `8·NV` accumulators (24 for NV = 3), `NV` B vectors, one broadcast.
/// Loop: for each of the `kc` rows, load `b[offs[p]..][0..16·NV]` (the last vector under
/// `tail`), then for each of the 8 output channels broadcast `a[p][i]` and issue `NV` FMAs:
/// 9 + NV loads per 8·NV FMAs, no packing of B.
/// Epilogue: with `accumulate`, add C's current values; with a non-null `bias` (the last
/// depth block), add it and apply the ReLU; store rows under `rows` only, the last vector
/// under `tail`. Before the loop, the next tile's output lines along the same rows are
/// prefetched for writing: a run of tiles writes 8 rows a plane apart, more store streams
/// than the hardware prefetcher follows (16 -> 96 channels at 112x112: 0.27 -> 0.21 ms).
///
/// # Safety
/// The CPU has AVX-512F; `a` holds `kc·8` floats; for every `p < kc`, `b + offs[p]` has
/// `16·(NV−1)` readable floats and then the lanes of `tail`; `c + i·ldc` likewise writable
/// (and readable with `accumulate`) for `i < rows ≤ 8`; a non-null `bias` holds 8 floats.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn row_tile<const NV: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    offs: *const u32,
    tail: u16,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    accumulate: bool,
    bias: *const f32,
    relu: bool,
) {
    for i in 0..rows {
        for v in 0..NV {
            _mm_prefetch::<_MM_HINT_ET0>(c.wrapping_add(i * ldc + 16 * (NV + v)).cast());
        }
    }
    // SAFETY: the caller's contract on a, b, offs and tail.
    let acc = unsafe { row_products::<NV>(kc, a, b, offs, tail) };
    let zero = _mm512_setzero_ps();
    for (i, row) in acc.iter().enumerate().take(rows) {
        // SAFETY: row i < rows of C has the lanes written here; a non-null bias has MR.
        unsafe {
            let ci = c.add(i * ldc);
            let beta = if bias.is_null() { None } else { Some(_mm512_set1_ps(*bias.add(i))) };
            for (v, &r) in row.iter().enumerate() {
                let keep = if v + 1 == NV { tail } else { 0xffff };
                let mut r = r;
                if accumulate {
                    r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(keep, ci.add(16 * v)));
                }
                if let Some(beta) = beta {
                    r = _mm512_add_ps(r, beta);
                    if relu {
                        r = _mm512_max_ps(zero, r);
                    }
                }
                _mm512_mask_storeu_ps(ci.add(16 * v), keep, r);
            }
        }
    }
}

/// The accumulation loop of [`row_tile`] and [`grid_tile`]: `acc[i][v] = Σ_p a[p][i] ·
/// b[offs[p] + 16·v ..]` (the last vector under `tail`). Always inlined into those AVX-512
/// kernels.
///
/// # Safety
/// The caller is compiled for AVX-512F; `a` holds `kc·8` floats; for every `p < kc`,
/// `b + offs[p]` has `16·(NV−1)` readable floats and then the lanes of `tail`.
#[inline(always)]
unsafe fn row_products<const NV: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    offs: *const u32,
    tail: u16,
) -> [[__m512; NV]; ROW_TILE_MR] {
    let mut acc = [[_mm512_setzero_ps(); NV]; ROW_TILE_MR];
    let mut a = a;
    for p in 0..kc {
        // SAFETY: the caller's contract: row p of B has the lanes read here; `a` advances
        // by MR floats, kc times.
        unsafe {
            let row = b.add(*offs.add(p) as usize);
            let mut bv = [_mm512_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                *x = if v + 1 == NV {
                    _mm512_maskz_loadu_ps(tail, row.add(16 * v))
                } else {
                    _mm512_loadu_ps(row.add(16 * v))
                };
            }
            for (i, acc_i) in acc.iter_mut().enumerate() {
                let ai = _mm512_set1_ps(*a.add(i));
                for (r, &x) in acc_i.iter_mut().zip(&bv) {
                    *r = _mm512_fmadd_ps(ai, x, *r);
                }
            }
            a = a.add(ROW_TILE_MR);
        }
    }
    acc
}

/// [`row_tile`] over a padded plane's grid: the tile's `16·NV` lanes are consecutive
/// positions `g0 ..` of the output rows laid out `wp` apart (the padded input's row
/// pitch), so every tap reads one contiguous run however the rows fall; lanes at columns
/// `out_w ..< wp` of a row are computed and dropped. Each vector's lanes span at most two
/// output rows (`wp ≥ 16`): the epilogue adds `bias`, applies the ReLU and stores the
/// lanes of each row (those under `tail` for the last vector) at `c + i·ldc + row·out_w +
/// column`, rows under `rows` only. A non-null `partial` holds the sums of the earlier
/// depth blocks (`[8][16·NV]`, as [`row_tile`] accumulates them at `ldc = 16·NV`), added
/// first.
///
/// # Safety
/// As [`row_tile`] for a, b, offs, tail and bias (non-null here); a non-null `partial`
/// holds `8·16·NV` floats; `16 ≤ wp`, `out_w ≤ wp`;
/// every kept lane's output position is inside the `rows` output planes from `c`, `ldc`
/// apart.
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn grid_tile<const NV: usize>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    offs: *const u32,
    tail: u16,
    (g0, wp, out_w): (usize, usize, usize),
    partial: *const f32,
    c: *mut f32,
    ldc: usize,
    rows: usize,
    bias: *const f32,
    relu: bool,
) {
    // SAFETY: the caller's contract on a, b, offs and tail.
    let mut acc = unsafe { row_products::<NV>(kc, a, b, offs, tail) };
    if !partial.is_null() {
        for (i, acc_i) in acc.iter_mut().enumerate() {
            for (v, r) in acc_i.iter_mut().enumerate() {
                // SAFETY: a non-null `partial` holds 8 rows of 16·NV floats (the contract).
                *r = _mm512_add_ps(*r, unsafe { _mm512_loadu_ps(partial.add(i * 16 * NV + 16 * v)) });
            }
        }
    }
    let lanes = |lo: usize, hi: usize| lane_mask(hi) & !lane_mask(lo);
    // Per vector: the two row segments' masks and where lane 0 of each would be stored.
    let mut segments = [(0u16, 0usize, 0u16, 0usize); NV];
    for (v, seg) in segments.iter_mut().enumerate() {
        let keep = if v + 1 == NV { tail } else { 0xffff };
        let g = g0 + 16 * v;
        let (row, col) = (g / wp, g % wp);
        let first = lanes(0, out_w.saturating_sub(col)) & keep;
        let next = wp - col; // the lane where the next row starts
        let second = if next < 16 { lanes(next, next + out_w) & keep } else { 0 };
        // Lane j of the second segment is column j − next of row + 1.
        *seg = (first, row * out_w + col, second, ((row + 1) * out_w).wrapping_sub(next));
    }
    let zero = _mm512_setzero_ps();
    for (i, acc_i) in acc.iter().enumerate().take(rows) {
        // SAFETY: bias has MR floats; each kept lane's output position is inside plane i
        // (the caller's contract); a masked store writes its kept lanes only, so the base of
        // a second segment may lie before its row.
        unsafe {
            let beta = _mm512_set1_ps(*bias.add(i));
            let ci = c.add(i * ldc);
            for (&r, &(m1, at1, m2, at2)) in acc_i.iter().zip(&segments) {
                let mut r = _mm512_add_ps(r, beta);
                if relu {
                    r = _mm512_max_ps(zero, r);
                }
                _mm512_mask_storeu_ps(ci.wrapping_add(at1), m1, r);
                if m2 != 0 {
                    _mm512_mask_storeu_ps(ci.wrapping_add(at2), m2, r);
                }
            }
        }
    }
}
