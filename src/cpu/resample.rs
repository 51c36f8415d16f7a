//! CPU twin of `shaders/resample.wgsl`.

use rayon::prelude::*;

use crate::params::{ResampleParams, RESAMPLE_FILL};

/// Padding, cropping, slicing and resizing through separable taps:
/// `out[p, y, x] = Σ_i Σ_j wr[y, i] · wc[x, j] · v(r[y, i], c[x, j])`, `v` the input value
/// or `params.fill` when either index is [`RESAMPLE_FILL`]; a tap of weight 0 contributes
/// nothing.
///
/// Arguments follow the shader's bindings: params, input, index (row taps, then column
/// taps), weight (in the same order), out.
pub fn resample(params: &ResampleParams, input: &[f32], index: &[u32], weight: &[f32], out: &mut [f32]) {
    let (in_h, in_w) = (params.in_h as usize, params.in_w as usize);
    let (out_h, out_w, taps) = (params.out_h as usize, params.out_w as usize, params.taps as usize);
    let cols = out_h * taps;
    let plane_out = out_h * out_w;
    let len = params.planes as usize * plane_out;
    out[..len]
        .par_chunks_mut(out_w.max(1))
        .enumerate()
        .with_min_len(super::MIN_PARALLEL_ELEMENTS / out_w.max(1) + 1)
        .for_each(|(row, o)| {
            let (p, y) = (row / out_h, row % out_h);
            let src = &input[p * in_h * in_w..(p + 1) * in_h * in_w];
            for (x, v) in o.iter_mut().enumerate() {
                let mut acc = 0.0f32;
                for a in 0..taps {
                    let wr = weight[y * taps + a];
                    if wr == 0.0 {
                        continue;
                    }
                    let r = index[y * taps + a];
                    for b in 0..taps {
                        let wc = weight[cols + x * taps + b];
                        if wc == 0.0 {
                            continue;
                        }
                        let c = index[cols + x * taps + b];
                        let value = if r == RESAMPLE_FILL || c == RESAMPLE_FILL {
                            params.fill
                        } else {
                            src[r as usize * in_w + c as usize]
                        };
                        acc += wr * wc * value;
                    }
                }
                *v = acc;
            }
        });
}
