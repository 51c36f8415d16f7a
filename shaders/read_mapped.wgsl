// read_mapped: one value of a compact plane read through an interpolation map.
//
// Appended to the source of every kernel that reads through a map (im2col_masked,
// pool2d, gather_interp); they declare `input` (f32 values) and `in_map` (the table).
// CPU twin: `cpu::read_mapped`. Table layout by `kind` (Rust: `MapKind::code`):
//   1 nearest      in_map[s] = compact index
//   2 zeros        in_map[s] = compact index, or 0xffffffff for a skipped position (reads 0)
//   3 barycentric  in_map[6s .. 6s+3] = compact indices, in_map[6s+3 .. 6s+6] = f32 weight bits
// `base` is the offset of the plane in `input`, `s` the dense position y*W + x.

// A tap of weight 0 contributes nothing (not 0 * v, which is NaN for an infinite v).
fn bary_tap(t: u32, k: u32, base: u32) -> f32 {
    let w = bitcast<f32>(in_map[t + 3u + k]);
    return select(w * input[base + in_map[t + k]], 0.0, w == 0.0);
}

fn read_mapped(kind: u32, base: u32, s: u32) -> f32 {
    if kind == 3u {
        let t = 6u * s;
        return bary_tap(t, 0u, base) + bary_tap(t, 1u, base) + bary_tap(t, 2u, base);
    }
    let i = in_map[s];
    if i == 0xffffffffu {
        return 0.0;
    }
    return input[base + i];
}
