//! Packing one row of the implicit B operand: for every `NR`-column tile of a task, `NR`
//! values of one input channel read through the tile's taps.
//!
//! A tile is *regular* when every tap that is not padding reads `start + j` (lane j): a
//! stride-1 conv whose output and input rows have the same width, read across output-row
//! boundaries, is regular with the border lanes as padding. Regular tiles are one masked
//! load per 16 lanes (masked-out lanes read nothing and give 0); the others gather lane by
//! lane (one masked hardware gather per 16 lanes on AVX-512, per 8 on AVX2).
//!
//! On AVX2 an irregular tile (a perforated or strided conv) whose taps along a kernel row
//! read consecutive positions is packed a kernel row at a time instead: each column's
//! `kw ≤ 8` taps are one masked load, and an in-register transpose makes them rows
//! ([`RunPackFn`]; `PERFORATE_RUN_PACK=0` turns it off, for comparisons). ResNet-18's
//! perforated 7x7 stride-2 first conv at batch 1 went from 1.02 to 0.80 ms.

use super::taps::PAD;

/// How one tile reads one channel.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TileRead {
    /// Offset of lane 0 from the channel base (may lie before it: such lanes are padding).
    pub start: isize,
    /// Bit j set: lane j is padding (0).
    pub pad: u64,
    /// Whether every other lane reads `start + j`.
    pub regular: bool,
}

impl TileRead {
    /// Classifies a tile's taps (`PAD` or an offset from the channel base).
    pub fn new(taps: &[u32]) -> TileRead {
        let mut pad = 0u64;
        let mut start: Option<isize> = None;
        let mut regular = true;
        for (j, &t) in taps.iter().enumerate() {
            if t == PAD {
                pad |= 1 << j;
                continue;
            }
            let s = t as isize - j as isize;
            match start {
                None => start = Some(s),
                Some(s0) if s0 != s => regular = false,
                _ => {}
            }
        }
        TileRead { start: start.unwrap_or(0), pad, regular }
    }
}

/// Packs one row: for each tile t, `dst[t·stride .. t·stride + nr]` from `src` (the channel
/// base) through `taps[t·nr ..]` and `reads[t]`; the same taps `ahead` floats further (a
/// later channel's, which a later row packs) are prefetched where that is cheap.
///
/// # Safety
/// Every tap that is not [`PAD`] indexes inside the buffer `src` points into; `dst` holds
/// `(reads.len() − 1)·stride + nr` floats; `nr ≤ 64`, a multiple of 8.
pub(crate) type PackFn = unsafe fn(*const f32, &[u32], &[TileRead], *mut f32, usize, usize, isize);

/// The packing routine for the microkernel family `name`.
pub(crate) fn pack_fn(name: &str) -> PackFn {
    #[cfg(target_arch = "x86_64")]
    match name {
        "avx512" => return pack_avx512,
        "avx2" => return pack_avx2,
        _ => {}
    }
    let _ = name;
    pack_portable
}

/// # Safety
/// See [`PackFn`].
unsafe fn pack_portable(
    src: *const f32,
    taps: &[u32],
    reads: &[TileRead],
    dst: *mut f32,
    stride: usize,
    nr: usize,
    _ahead: isize,
) {
    for (t, r) in reads.iter().enumerate() {
        // SAFETY: the caller sizes dst for every tile.
        let d = unsafe { std::slice::from_raw_parts_mut(dst.add(t * stride), nr) };
        if r.regular && r.pad & lanes(nr) == 0 {
            // SAFETY: no lane is padding, so all nr floats from start are inside the buffer.
            let row = unsafe { std::slice::from_raw_parts(src.offset(r.start), nr) };
            d.copy_from_slice(row);
        } else if r.regular {
            for (j, v) in d.iter_mut().enumerate() {
                // SAFETY: a lane that is not padding reads start + j, inside the buffer.
                *v = if r.pad >> j & 1 == 1 { 0.0 } else { unsafe { *src.offset(r.start + j as isize) } };
            }
        } else {
            for (v, &tap) in d.iter_mut().zip(&taps[t * nr..(t + 1) * nr]) {
                // SAFETY: a tap that is not padding is inside the buffer.
                *v = if tap == PAD { 0.0 } else { unsafe { *src.add(tap as usize) } };
            }
        }
    }
}

/// The mask of a tile's `nr` lanes.
fn lanes(nr: usize) -> u64 {
    if nr >= 64 {
        u64::MAX
    } else {
        (1 << nr) - 1
    }
}

/// [`pack_avx512`] in 8-lane steps: regular tiles are plain or masked loads, the others one
/// hardware gather per 8 lanes (on an AMD EPYC about as fast as lane-by-lane loads, which
/// were tried; regular tiles went from the portable loop's 42% of a 28x28 VGG's cycles at
/// batch 64 to 20%).
///
/// # Safety
/// See [`PackFn`]; the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_avx2(
    src: *const f32,
    taps: &[u32],
    reads: &[TileRead],
    dst: *mut f32,
    stride: usize,
    nr: usize,
    ahead: isize,
) {
    use std::arch::x86_64::*;
    let pad_idx = _mm256_set1_epi32(PAD as i32);
    // Lane j of `bit` holds 1 << j: a lane's padding bit, spread for a compare.
    let bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    for (t, r) in reads.iter().enumerate() {
        for v in (0..nr).step_by(8) {
            // Lanes v..v + 8 of the tile's 64-bit mask: the truncation is the point.
            #[allow(clippy::cast_possible_truncation)]
            let pad = (r.pad >> v) as u8;
            // SAFETY: dst holds this tile's nr floats; masked-out lanes read no memory
            // (maskload and gather suppress their faults), the others read inside the
            // buffer (regular: start + j; gather: the tap).
            unsafe {
                let out = if r.regular {
                    let at = r.start + v as isize;
                    _mm_prefetch::<_MM_HINT_T0>(src.wrapping_offset(at + ahead).cast());
                    if pad == 0 {
                        _mm256_loadu_ps(src.offset(at))
                    } else {
                        let is_pad = _mm256_and_si256(_mm256_set1_epi32(i32::from(pad)), bit);
                        // All ones where the lane is kept.
                        let keep = _mm256_cmpeq_epi32(is_pad, _mm256_setzero_si256());
                        _mm256_maskload_ps(src.wrapping_offset(at), keep)
                    }
                } else {
                    let idx = _mm256_loadu_si256(taps.as_ptr().add(t * nr + v).cast());
                    let keep = _mm256_xor_si256(_mm256_cmpeq_epi32(idx, pad_idx), _mm256_set1_epi32(-1));
                    _mm256_mask_i32gather_ps::<4>(_mm256_setzero_ps(), src, idx, _mm256_castsi256_ps(keep))
                };
                _mm256_storeu_ps(dst.add(t * stride + v), out);
            }
        }
    }
}

/// # Safety
/// See [`PackFn`]; the CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_avx512(
    src: *const f32,
    taps: &[u32],
    reads: &[TileRead],
    dst: *mut f32,
    stride: usize,
    nr: usize,
    ahead: isize,
) {
    use std::arch::x86_64::*;
    let pad_idx = _mm512_set1_epi32(PAD as i32);
    for (t, r) in reads.iter().enumerate() {
        for v in (0..nr).step_by(16) {
            // Lanes v..v + 16 of the tile's 64-bit mask: the truncation is the point.
            #[allow(clippy::cast_possible_truncation)]
            let keep = !(r.pad >> v) as u16;
            // SAFETY: dst holds this tile's nr floats; masked-out lanes read no memory, the
            // others read inside the buffer (regular: start + j; gather: the tap).
            unsafe {
                let out = if r.regular {
                    // A regular tile's 16 lanes are one cache line or two: prefetch the
                    // later channel's (reads no memory it may not, wherever it points).
                    let at = r.start + v as isize;
                    _mm_prefetch::<_MM_HINT_T0>(src.wrapping_offset(at + ahead).cast());
                    _mm512_maskz_loadu_ps(keep, src.wrapping_offset(at))
                } else {
                    let idx = _mm512_loadu_si512(taps.as_ptr().add(t * nr + v).cast());
                    let m = _mm512_cmpneq_epi32_mask(idx, pad_idx);
                    _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, idx, src)
                };
                _mm512_storeu_ps(dst.add(t * stride + v), out);
            }
        }
    }
}

/// Where one column's taps along a kernel row start and which of them are padding, when
/// its `kw` taps read `start + kx` (every one that is not padding).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RunRead {
    /// Offset of tap 0 from the channel base (may lie before it: such taps are padding).
    pub start: i32,
    /// Bit kx set: tap kx reads `start + kx`; clear: it is padding (0).
    pub keep: u32,
}

/// Packs the `kw` consecutive rows of one kernel row for one tile: row `kx` of the tile at
/// `dst[kx·nr ..]`, lane j from `src + runs[j].start + kx` (0 where padding). Each column's
/// taps are one short contiguous read, turned into rows by an in-register transpose: on an
/// irregular tile (a perforated or strided conv) that replaces `kw` hardware gathers.
///
/// # Safety
/// Every kept tap of every column lies inside the buffer `src` points into; `dst` holds
/// `(kw − 1)·nr + nr` floats; `nr` is a multiple of 8, `runs.len() >= nr`, `2 <= kw <= 8`.
pub(crate) type RunPackFn = unsafe fn(*const f32, &[RunRead], *mut f32, usize, usize);

/// The run packing routine for the microkernel family `name`, where one pays off (on
/// AVX-512 the 16-lane gathers are kept).
pub(crate) fn run_pack_fn(name: &str) -> Option<RunPackFn> {
    #[cfg(target_arch = "x86_64")]
    if name == "avx2" {
        return Some(pack_runs_avx2);
    }
    let _ = name;
    None
}

/// # Safety
/// See [`RunPackFn`]; the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pack_runs_avx2(src: *const f32, runs: &[RunRead], dst: *mut f32, nr: usize, kw: usize) {
    use std::arch::x86_64::*;
    let runs = &runs[..nr];
    if kw <= 4 {
        let bit = _mm_setr_epi32(1, 2, 4, 8);
        // SAFETY: each column loads only its kept taps (inside the buffer); the four rows
        // written are inside dst for kw = 4 and the unused ones are not stored.
        unsafe {
            let load = |r: RunRead| {
                #[allow(clippy::cast_possible_wrap)]
                let keep = _mm_cmpeq_epi32(_mm_and_si128(_mm_set1_epi32(r.keep as i32), bit), bit);
                _mm_maskload_ps(src.wrapping_offset(r.start as isize), keep)
            };
            for v in (0..nr).step_by(8) {
                let c = &runs[v..v + 8];
                // Lane halves: columns v..v + 4 low, v + 4..v + 8 high.
                let pair =
                    |i: usize| _mm256_insertf128_ps::<1>(_mm256_castps128_ps256(load(c[i])), load(c[i + 4]));
                let (a0, a1, a2, a3) = (pair(0), pair(1), pair(2), pair(3));
                let (t0, t1) = (_mm256_unpacklo_ps(a0, a1), _mm256_unpackhi_ps(a0, a1));
                let (t2, t3) = (_mm256_unpacklo_ps(a2, a3), _mm256_unpackhi_ps(a2, a3));
                let rows = [
                    _mm256_shuffle_ps::<0x44>(t0, t2),
                    _mm256_shuffle_ps::<0xEE>(t0, t2),
                    _mm256_shuffle_ps::<0x44>(t1, t3),
                    _mm256_shuffle_ps::<0xEE>(t1, t3),
                ];
                for (kx, row) in rows.iter().enumerate().take(kw) {
                    _mm256_storeu_ps(dst.add(kx * nr + v), *row);
                }
            }
        }
        return;
    }
    let bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
    // SAFETY: as above, eight taps per column.
    unsafe {
        let load = |r: RunRead| {
            #[allow(clippy::cast_possible_wrap)]
            let keep = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(r.keep as i32), bit), bit);
            _mm256_maskload_ps(src.wrapping_offset(r.start as isize), keep)
        };
        for v in (0..nr).step_by(8) {
            let c = &runs[v..v + 8];
            let rows = super::transpose::transpose8(std::array::from_fn(|i| load(c[i])));
            for (kx, row) in rows.iter().enumerate().take(kw) {
                _mm256_storeu_ps(dst.add(kx * nr + v), *row);
            }
        }
    }
}
