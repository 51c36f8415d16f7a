//! The depthwise kernels on AVX2 with explicit vectors: the direct row path (whole output
//! rows accumulated in registers, as `plane_rows_avx512` does 16 wide) and the
//! channel-interleaved block (16 channels per block as on AVX-512, computed as two halves
//! of 8, both transposes done 8 × 8 in registers).

use std::arch::x86_64::*;

use super::super::transpose::transpose8;
use super::{fill_rows, Depthwise, Epilogue, Split, LANES};
use crate::cpu::gemm::avx2::first_lanes;
use crate::interp::ZERO_TAP;

/// One dense plane on the direct row path: the row buffer filled (stride-2 rows split by
/// permutes), then per output row blocks of 64 outputs and one shorter block.
///
/// # Safety
/// AVX2 and FMA are available; `buf` has the layer's row layout.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn plane_rows_avx2(
    d: &Depthwise,
    src: &[f32],
    w: &[f32],
    e: Epilogue,
    dst: &mut [f32],
    buf: &mut [f32],
) {
    fill_rows(&d.g, &d.rows, src, buf, Split::Avx2);
    let (oh, ow) = (d.g.out_h(), d.g.out_w());
    let step = d.g.stride_h * d.rows.sx * d.rows.ld;
    for (oy, row) in dst[..oh * ow].chunks_exact_mut(ow).enumerate() {
        let base = oy * step;
        let mut x0 = 0;
        while ow - x0 >= 64 {
            // SAFETY: AVX2 is enabled here; the layout's slack covers every read.
            unsafe { block_avx2::<8>(buf, base + x0, &d.rows.taps, w, e, &mut row[x0..]) };
            x0 += 64;
        }
        let out = &mut row[x0..];
        // SAFETY: as above.
        unsafe {
            match out.len().div_ceil(8) {
                0 => {}
                1 => block_avx2::<1>(buf, base + x0, &d.rows.taps, w, e, out),
                2 => block_avx2::<2>(buf, base + x0, &d.rows.taps, w, e, out),
                3 => block_avx2::<3>(buf, base + x0, &d.rows.taps, w, e, out),
                4 => block_avx2::<4>(buf, base + x0, &d.rows.taps, w, e, out),
                5 => block_avx2::<5>(buf, base + x0, &d.rows.taps, w, e, out),
                6 => block_avx2::<6>(buf, base + x0, &d.rows.taps, w, e, out),
                _ => block_avx2::<7>(buf, base + x0, &d.rows.taps, w, e, out),
            }
        }
    }
}

/// `NV` vectors of one output row from `out[0]` on (`out` may end inside the last one):
/// `acc = bias + Σ_tap w[tap] · buf[at + taps[tap] ..]`, NV independent accumulators, then
/// ReLU and cap (`max_ps(0, v)` and `min_ps(cap, v)` keep NaN) and a masked store.
///
/// # Safety
/// AVX2 and FMA; `buf[at + taps[t] + 8·NV - 1]` is inside `buf` for every tap (the
/// layout's 16 floats of slack guarantee it) and `out` holds more than `8·(NV − 1)` values.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn block_avx2<const NV: usize>(
    buf: &[f32],
    at: usize,
    taps: &[usize],
    w: &[f32],
    e: Epilogue,
    out: &mut [f32],
) {
    let mut acc = [_mm256_set1_ps(e.bias); NV];
    for (&o, &wt) in taps.iter().zip(w) {
        let wv = _mm256_set1_ps(wt);
        debug_assert!(at + o + 8 * NV <= buf.len());
        // SAFETY: in bounds by the caller's contract.
        let p = unsafe { buf.as_ptr().add(at + o) };
        for (v, a) in acc.iter_mut().enumerate() {
            // SAFETY: as above.
            *a = _mm256_fmadd_ps(wv, unsafe { _mm256_loadu_ps(p.add(8 * v)) }, *a);
        }
    }
    if e.relu {
        let zero = _mm256_setzero_ps();
        let cap = _mm256_set1_ps(e.cap);
        for a in &mut acc {
            *a = _mm256_max_ps(zero, *a);
            if e.cap > 0.0 {
                *a = _mm256_min_ps(cap, *a);
            }
        }
    }
    for (v, a) in acc.iter().enumerate() {
        let left = out.len() - 8 * v;
        // SAFETY: the store writes lanes inside `out` only.
        unsafe {
            if left >= 8 {
                _mm256_storeu_ps(out.as_mut_ptr().add(8 * v), *a);
            } else {
                _mm256_maskstore_ps(out.as_mut_ptr().add(8 * v), first_lanes(left), *a);
            }
        }
    }
}

/// Output planes `block·16 ..` (as many as `dst` holds, `n_pos` values each) of image
/// `img`, channel-interleaved (see `block_lanes_avx512`).
///
/// Loop structure: (1) the padding cells of the interleaved buffer
/// (`buf[(y·wp + x)·16 + lane]`) zeroed; per half of 8 channels, input row and 8 columns:
/// one (masked) load per channel, an 8 × 8 transpose, one store per column (a compact
/// input under a nearest or zeros map read through it by [`fill_through_map`] instead,
/// under any other map expanded plane by plane first); (2) per half and 8 mask positions:
/// 8 accumulators from the bias, for each tap one weight vector and 8 FMAs (lane =
/// channel), ReLU and cap, a transpose, one (masked) store per channel plane.
///
/// # Safety
/// AVX2 and FMA are available; `dst` holds `lanes · n_pos` values for `lanes ≤ 16`
/// channels of the block, all below the layer's output channels.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn block_lanes_avx2(
    d: &Depthwise,
    x: &[f32],
    img: usize,
    block: usize,
    dst: &mut [f32],
    buf: &mut Vec<f32>,
) {
    let g = &d.g;
    let n_pos = d.mask.len();
    let lanes = dst.len() / n_pos;
    assert!(lanes <= LANES && (block * LANES + lanes) <= g.out_channels, "depthwise block out of range");
    let taps = g.kernel_h * g.kernel_w;
    let (wp, hp) = (g.in_w + g.pad_left + g.pad_right, g.in_h + g.pad_top + g.pad_bottom);
    let (padded, dense_plane) = (hp * wp * LANES, g.in_h * g.in_w);
    // A nearest or zeros map reads the block's compact planes interleaved (`d.plane`
    // positions of 8 lanes, one half at a time); any other map expands each plane first.
    let through_map = matches!(d.taps.map_kind, 1 | 2);
    let expanded = match d.taps.map_kind {
        0 => 0,
        _ if through_map => d.plane * 8,
        _ => lanes * dense_plane,
    };
    if buf.len() < padded + expanded {
        buf.resize(padded + expanded, 0.0);
    }
    let (buf, dense) = buf.split_at_mut(padded);
    // Only the padding cells need zeros: the fill below writes every data cell of every
    // half it computes (the lanes past `lanes` hold zero rows or stale values that no
    // stored output reads).
    let row_len = wp * LANES;
    buf[..g.pad_top * row_len].fill(0.0);
    buf[(g.pad_top + g.in_h) * row_len..].fill(0.0);
    for y in g.pad_top..g.pad_top + g.in_h {
        let row = &mut buf[y * row_len..][..row_len];
        row[..g.pad_left * LANES].fill(0.0);
        row[(g.pad_left + g.in_w) * LANES..].fill(0.0);
    }
    let halves = lanes.div_ceil(8);
    if through_map {
        // SAFETY: AVX2 was detected (this function's contract).
        unsafe { fill_through_map(d, x, (img, block, lanes), buf, dense) };
    } else {
        let planes = d.block_planes(x, img, block, lanes, dense);
        for half in 0..halves {
            let live = (lanes - 8 * half).min(8);
            for y in 0..g.in_h {
                for x0 in (0..g.in_w).step_by(8) {
                    let n = (g.in_w - x0).min(8);
                    let mut v = [_mm256_setzero_ps(); 8];
                    for (v, src) in v.iter_mut().zip(&planes[8 * half..8 * half + live]) {
                        // SAFETY: the (masked) lanes are columns x0 .. x0 + n of row y. Masked
                        // moves only where they must: they cost several plain ones on Zen 3.
                        *v = unsafe {
                            let p = src.as_ptr().add(y * g.in_w + x0);
                            if n == 8 {
                                _mm256_loadu_ps(p)
                            } else {
                                _mm256_maskload_ps(p, first_lanes(n))
                            }
                        };
                    }
                    // SAFETY: this function is compiled for AVX2.
                    let v = unsafe { transpose8(v) };
                    let at = ((y + g.pad_top) * wp + g.pad_left + x0) * LANES + 8 * half;
                    for (j, v) in v.iter().take(n).enumerate() {
                        // SAFETY: cell (y + pt, pl + x0 + j) lies inside the padded buffer.
                        unsafe { _mm256_storeu_ps(buf.as_mut_ptr().add(at + j * LANES), *v) };
                    }
                }
            }
        }
    }
    let w = &d.weights_lanes[block * taps * LANES..][..taps * LANES];
    let bias = &d.bias_lanes[block * LANES..][..LANES];
    let ow = g.out_w();
    let (zero, cap) = (_mm256_setzero_ps(), _mm256_set1_ps(d.cap));
    let b = buf.as_ptr();
    for half in 0..halves {
        let live = (lanes - 8 * half).min(8);
        // SAFETY: the block's bias holds LANES floats.
        let bias = unsafe { _mm256_loadu_ps(bias.as_ptr().add(8 * half)) };
        for e0 in (0..n_pos).step_by(8) {
            let cnt = (n_pos - e0).min(8);
            // Window corners (with the half's lane offset); past `cnt`, the first
            // position's (computed, never stored).
            let mut corner = [0usize; 8];
            for (j, c) in corner.iter_mut().enumerate() {
                let pos = d.mask[e0 + if j < cnt { j } else { 0 }] as usize;
                let (oy, ox) = (pos / ow, pos % ow);
                *c = (oy * g.stride_h * wp + ox * g.stride_w) * LANES + 8 * half;
            }
            let mut acc = [bias; 8];
            for ky in 0..g.kernel_h {
                for kx in 0..g.kernel_w {
                    let (t, off) =
                        (ky * g.kernel_w + kx, (ky * g.dilation_h * wp + kx * g.dilation_w) * LANES);
                    // SAFETY: w holds taps·LANES floats; every window cell lies inside the
                    // buffer.
                    unsafe {
                        let wv = _mm256_loadu_ps(w.as_ptr().add(t * LANES + 8 * half));
                        for (a, &c) in acc.iter_mut().zip(&corner) {
                            *a = _mm256_fmadd_ps(wv, _mm256_loadu_ps(b.add(c + off)), *a);
                        }
                    }
                }
            }
            if d.relu {
                for a in &mut acc {
                    // max_ps(0, v) and min_ps(cap, v) return v when it is NaN (`cpu::nan`).
                    *a = _mm256_max_ps(zero, *a);
                    if d.cap > 0.0 {
                        *a = _mm256_min_ps(cap, *a);
                    }
                }
            }
            // SAFETY: as above.
            let acc = unsafe { transpose8(acc) };
            // SAFETY: this function is compiled for AVX2.
            let keep = unsafe { first_lanes(cnt) };
            for (lane, a) in acc.iter().take(live).enumerate() {
                let plane = 8 * half + lane;
                // SAFETY: plane `plane` of dst holds n_pos values; lanes under `keep` are
                // positions e0 .. e0 + cnt.
                unsafe {
                    let p = dst.as_mut_ptr().add(plane * n_pos + e0);
                    if cnt == 8 {
                        _mm256_storeu_ps(p, *a);
                    } else {
                        _mm256_maskstore_ps(p, keep, *a);
                    }
                }
            }
        }
    }
}

/// The interleaved padded input of a block whose input is compact, read through a nearest
/// or zeros map without expanding each plane: per half of 8 channels, the compact planes
/// interleaved by 8 × 8 transposes into `cbuf` (`[position][8 lanes]`), then per dense
/// input position one 8-lane copy of the position the map names (zeros for
/// [`ZERO_TAP`]) into the padded buffer. One vector move per position and half instead
/// of one scalar gather per position and channel.
///
/// # Safety
/// AVX2 is available; `buf` is the block's padded buffer (`hp · wp · LANES`), `cbuf`
/// holds at least `d.plane · 8` floats; the map's entries are compact positions or
/// [`ZERO_TAP`] (checked: an index past the compact plane panics).
#[target_feature(enable = "avx2")]
unsafe fn fill_through_map(
    d: &Depthwise,
    x: &[f32],
    (img, block, lanes): (usize, usize, usize),
    buf: &mut [f32],
    cbuf: &mut [f32],
) {
    let g = &d.g;
    let (n_c, wp) = (d.plane, g.in_w + g.pad_left + g.pad_right);
    let cbuf = &mut cbuf[..n_c * 8];
    let map = &d.taps.map_table[..g.in_h * g.in_w];
    for half in 0..lanes.div_ceil(8) {
        let live = (lanes - 8 * half).min(8);
        let mut planes: [&[f32]; 8] = [&[]; 8];
        for (k, plane) in planes.iter_mut().enumerate().take(live) {
            *plane = d.input_plane(x, img, block * LANES + 8 * half + k);
        }
        for s0 in (0..n_c).step_by(8) {
            let n = (n_c - s0).min(8);
            let mut v = [_mm256_setzero_ps(); 8];
            for (v, src) in v.iter_mut().zip(&planes[..live]) {
                // SAFETY: the (masked) lanes are positions s0 .. s0 + n of the plane.
                *v = unsafe {
                    let p = src.as_ptr().add(s0);
                    if n == 8 {
                        _mm256_loadu_ps(p)
                    } else {
                        _mm256_maskload_ps(p, first_lanes(n))
                    }
                };
            }
            // SAFETY: this function is compiled for AVX2.
            let v = unsafe { transpose8(v) };
            for (j, v) in v.iter().take(n).enumerate() {
                // SAFETY: position s0 + j < n_c of cbuf holds 8 floats.
                unsafe { _mm256_storeu_ps(cbuf.as_mut_ptr().add((s0 + j) * 8), *v) };
            }
        }
        for y in 0..g.in_h {
            let at = ((y + g.pad_top) * wp + g.pad_left) * LANES + 8 * half;
            for (i, &m) in map[y * g.in_w..][..g.in_w].iter().enumerate() {
                let v = if m == ZERO_TAP {
                    _mm256_setzero_ps()
                } else {
                    let from = &cbuf[m as usize * 8..][..8];
                    // SAFETY: `from` holds 8 floats.
                    unsafe { _mm256_loadu_ps(from.as_ptr()) }
                };
                // SAFETY: cell (y + pt, pl + i) lies inside the padded buffer, its lanes
                // 8·half .. + 8 inside the cell.
                unsafe { _mm256_storeu_ps(buf.as_mut_ptr().add(at + i * LANES), v) };
            }
        }
    }
}
