//! CPU twin of `shaders/binary.wgsl`.

use rayon::prelude::*;

use crate::network::Binary;
use crate::params::BinaryParams;

/// `out[i] = f(a[ia], b[ib])`: both indices `i` when `params.broadcast` is 0; `ib = i / plane`
/// when it is 1 (`b` one value per plane); `ia = i / plane` when it is 2; for 3 (4) `b` (`a`)
/// holds one value per image and position, shared by all channels.
///
/// Arguments follow the shader's bindings: params, a, b, out.
pub fn binary(params: &BinaryParams, a: &[f32], b: &[f32], out: &mut [f32]) {
    let n = params.len as usize;
    let plane = (params.plane as usize).max(1);
    let channels = (params.channels as usize).max(1);
    let f = Binary::from_code(params.op);
    // Planes are the unit of work: a broadcast operand's value is read once per plane.
    out[..n]
        .par_chunks_mut(plane)
        .enumerate()
        .with_min_len(super::MIN_PARALLEL_ELEMENTS / plane + 1)
        .for_each(|(p, o)| {
            let start = p * plane;
            match params.broadcast {
                1 => {
                    let y = b[p];
                    o.iter_mut().zip(&a[start..]).for_each(|(o, &x)| *o = f.apply(x, y));
                }
                2 => {
                    let x = a[p];
                    o.iter_mut().zip(&b[start..]).for_each(|(o, &y)| *o = f.apply(x, y));
                }
                3 | 4 => {
                    let at = (p / channels) * plane;
                    let (full, per) = if params.broadcast == 3 { (a, b) } else { (b, a) };
                    let row = &per[at..at + plane];
                    o.iter_mut().zip(&full[start..]).zip(row).for_each(|((o, &x), &y)| {
                        *o = if params.broadcast == 3 { f.apply(x, y) } else { f.apply(y, x) };
                    });
                }
                _ => o.iter_mut().zip(a[start..].iter().zip(&b[start..])).for_each(|(o, (&x, &y))| {
                    *o = f.apply(x, y);
                }),
            }
        });
}
