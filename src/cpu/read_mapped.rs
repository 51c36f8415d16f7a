//! CPU twin of `shaders/read_mapped.wgsl`.

use crate::interp::ZERO_TAP;

/// One value of a compact plane read through an interpolation map table: `kind` is a
/// [`crate::MapKind::code`] (1 nearest, 2 zeros, 3 barycentric), `plane` the compact
/// plane and `s` the dense position. A barycentric tap of weight 0 contributes nothing
/// (not `0 · v`, which is NaN for an infinite `v`).
#[inline]
pub fn read_mapped(kind: u32, table: &[u32], plane: &[f32], s: usize) -> f32 {
    if kind == 3 {
        let t = &table[6 * s..6 * s + 6];
        let tap = |k: usize| {
            let w = f32::from_bits(t[3 + k]);
            if w == 0.0 {
                0.0
            } else {
                w * plane[t[k] as usize]
            }
        };
        return tap(0) + tap(1) + tap(2);
    }
    match table[s] {
        ZERO_TAP => 0.0,
        i => plane[i as usize],
    }
}
