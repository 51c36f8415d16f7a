//! CPU twin of `shaders/read_mapped.wgsl`.

use crate::interp::ZERO_TAP;

/// One value of a compact plane read through an interpolation map table: `kind` is a
/// [`crate::MapKind::code`] (1 nearest, 2 zeros, 3 barycentric), `plane` the compact
/// plane and `s` the dense position.
#[inline]
pub fn read_mapped(kind: u32, table: &[u32], plane: &[f32], s: usize) -> f32 {
    if kind == 3 {
        let t = &table[6 * s..6 * s + 6];
        return f32::from_bits(t[3]) * plane[t[0] as usize]
            + f32::from_bits(t[4]) * plane[t[1] as usize]
            + f32::from_bits(t[5]) * plane[t[2] as usize];
    }
    match table[s] {
        ZERO_TAP => 0.0,
        i => plane[i as usize],
    }
}
