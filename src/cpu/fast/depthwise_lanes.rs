//! The channel-interleaved depthwise block on AVX-512 ([`super::Depthwise::block_interleaved`]
//! with explicit vectors): 16 output channels per vector, and both transposes (planes into
//! the interleaved buffer, results back into planes) done 16 × 16 in registers instead of
//! one scalar store per value, which had cost several times the FMAs on MobileNetV2's
//! 14x14 and 7x7 layers.

use std::arch::x86_64::*;

use super::super::transpose::transpose16;
use super::{Depthwise, LANES};

/// Output planes `block·16 ..` (as many as `dst` holds, `n_pos` values each) of image
/// `img`.
///
/// Loop structure: (1) the block's padded input, interleaved (`buf[(y·wp + x)·16 + lane]`):
/// per input row and 16 columns, one masked load per channel, a transpose, one store per
/// column (a compact input expanded plane by plane first); (2) per 16 mask
/// positions: 16 accumulators from the bias, for each tap one weight vector and 16 FMAs
/// (lane = channel), ReLU and cap, a transpose, and one masked store per channel plane.
///
/// # Safety
/// AVX-512F is available; `dst` holds `lanes · n_pos` values for `lanes ≤ 16` channels of
/// the block, all below the layer's output channels.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn block_lanes_avx512(
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
    // The interleaved padded input, then (through an input map) the block's planes
    // expanded to dense ones (vector gathers), so both forms take the transposing copy.
    let (padded, dense_plane) = (hp * wp * LANES, g.in_h * g.in_w);
    let expanded = if d.taps.map_kind == 0 { 0 } else { lanes * dense_plane };
    buf.clear();
    buf.resize(padded + expanded, 0.0);
    let (buf, dense) = buf.split_at_mut(padded);
    let planes = d.block_planes(x, img, block, lanes, dense);
    for y in 0..g.in_h {
        for x0 in (0..g.in_w).step_by(16) {
            let n = (g.in_w - x0).min(16);
            #[allow(clippy::cast_possible_truncation)]
            let keep = ((1u32 << n) - 1) as u16;
            let mut v = [_mm512_setzero_ps(); 16];
            for (v, src) in v.iter_mut().zip(&planes[..lanes]) {
                // SAFETY: lanes under `keep` are columns x0 .. x0 + n of row y.
                *v = unsafe { _mm512_maskz_loadu_ps(keep, src.as_ptr().add(y * g.in_w + x0)) };
            }
            // SAFETY: this function is compiled for AVX-512F.
            let v = unsafe { transpose16(v) };
            let at = ((y + g.pad_top) * wp + g.pad_left + x0) * LANES;
            for (j, v) in v.iter().take(n).enumerate() {
                // SAFETY: cell (y + pt, pl + x0 + j) lies inside the padded buffer.
                unsafe { _mm512_storeu_ps(buf.as_mut_ptr().add(at + j * LANES), *v) };
            }
        }
    }

    let w = &d.weights_lanes[block * taps * LANES..][..taps * LANES];
    // SAFETY: the block's bias holds LANES floats.
    let bias = unsafe { _mm512_loadu_ps(d.bias_lanes[block * LANES..][..LANES].as_ptr()) };
    let ow = g.out_w();
    let (zero, cap) = (_mm512_setzero_ps(), _mm512_set1_ps(d.cap));
    let b = buf.as_ptr();
    for e0 in (0..n_pos).step_by(16) {
        let cnt = (n_pos - e0).min(16);
        // Window corners; past `cnt`, the first position's (computed, never stored).
        let mut corner = [0usize; 16];
        for (j, c) in corner.iter_mut().enumerate() {
            let pos = d.mask[e0 + if j < cnt { j } else { 0 }] as usize;
            let (oy, ox) = (pos / ow, pos % ow);
            *c = (oy * g.stride_h * wp + ox * g.stride_w) * LANES;
        }
        let mut acc = [bias; 16];
        for ky in 0..g.kernel_h {
            for kx in 0..g.kernel_w {
                // The tap's offset from a window corner, in floats of the buffer.
                let (t, off) = (ky * g.kernel_w + kx, (ky * g.dilation_h * wp + kx * g.dilation_w) * LANES);
                // SAFETY: w holds taps·LANES floats; every window cell lies inside the buffer.
                unsafe {
                    let wv = _mm512_loadu_ps(w.as_ptr().add(t * LANES));
                    for (a, &c) in acc.iter_mut().zip(&corner) {
                        *a = _mm512_fmadd_ps(wv, _mm512_loadu_ps(b.add(c + off)), *a);
                    }
                }
            }
        }
        if d.relu {
            for a in &mut acc {
                // max_ps(0, v) and min_ps(cap, v) return v when it is NaN (`cpu::nan`).
                *a = _mm512_max_ps(zero, *a);
                if d.cap > 0.0 {
                    *a = _mm512_min_ps(cap, *a);
                }
            }
        }
        // SAFETY: as above.
        let acc = unsafe { transpose16(acc) };
        #[allow(clippy::cast_possible_truncation)]
        let keep = ((1u32 << cnt) - 1) as u16;
        for (lane, a) in acc.iter().take(lanes).enumerate() {
            // SAFETY: plane `lane` of dst holds n_pos values; lanes under `keep` are
            // positions e0 .. e0 + cnt.
            unsafe { _mm512_mask_storeu_ps(dst.as_mut_ptr().add(lane * n_pos + e0), keep, *a) };
        }
    }
}
