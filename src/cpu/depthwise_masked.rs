//! CPU twin of `shaders/depthwise_masked.wgsl`.

use rayon::prelude::*;

use super::read_mapped;
use crate::params::DepthwiseMaskedParams;

/// Writes the compact output `out[(image · T + t) · N + entry]` of a depthwise (one input
/// channel per group) convolution at the masked positions (see [`DepthwiseMaskedParams`]):
/// `bias[t] + Σ_(ky, kx) w[t, ky, kx] · x[image, t / channel_mult, tap]`, taps summed in
/// (ky, kx) order, padding reading 0, then the optional ReLU.
///
/// Arguments follow the shader's bindings: params, input, mask, in_map, weights, bias, out.
///
/// Loop structure: output planes `(image, t)` spread over rayon; within a plane, one mask
/// entry after another, each summing its `kh · kw` taps.
#[track_caller]
pub fn depthwise_masked(
    params: &DepthwiseMaskedParams,
    input: &[f32],
    mask: &[u32],
    in_map: &[u32],
    weights: &[f32],
    bias: &[f32],
    out: &mut [f32],
) {
    let p = params;
    let n = p.n_pos as usize;
    let planes = p.images as usize * p.out_channels as usize;
    assert!(out.len() >= planes * n, "output shorter than images · out_channels · n_pos");
    assert!(mask.len() >= n, "mask shorter than n_pos");
    let in_plane = p.in_plane as usize;
    assert!(
        input.len() >= p.images as usize * p.channels as usize * in_plane,
        "input shorter than images · channels · in_plane"
    );
    out[..planes * n].par_chunks_mut(n.max(1)).enumerate().for_each(|(plane, row)| {
        let t = plane % p.out_channels as usize;
        let image = plane / p.out_channels as usize;
        let base = (image * p.channels as usize + t / p.channel_mult as usize) * in_plane;
        let channel = &input[base..base + in_plane];
        let w = &weights[t * p.lda as usize..];
        for (value, &pos) in row.iter_mut().zip(mask) {
            // Unsigned arithmetic with the padding added back: y_in = y·sy + ky·dy − pad_top.
            let (y, x) = ((pos / p.out_w) * p.stride_h, (pos % p.out_w) * p.stride_w);
            let mut acc = 0.0f32;
            for ky in 0..p.kernel_h {
                let yp = y + ky * p.dilation_h;
                if yp < p.pad_top || yp - p.pad_top >= p.in_h {
                    continue;
                }
                for kx in 0..p.kernel_w {
                    let xp = x + kx * p.dilation_w;
                    if xp < p.pad_left || xp - p.pad_left >= p.in_w {
                        continue;
                    }
                    let s = ((yp - p.pad_top) * p.in_w + (xp - p.pad_left)) as usize;
                    let v = if p.in_map_kind != 0 {
                        read_mapped(p.in_map_kind, in_map, channel, s)
                    } else {
                        channel[s]
                    };
                    acc = w[(ky * p.kernel_w + kx) as usize].mul_add(v, acc);
                }
            }
            let r = acc + bias[t];
            let cap = if p.relu_cap > 0.0 { p.relu_cap } else { f32::INFINITY };
            *value =
                if p.relu != 0 { super::nan::cap_keep_nan(super::nan::relu_keep_nan(r), cap) } else { r };
        }
    });
}
