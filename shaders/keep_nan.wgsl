
// keep_nan: ReLU, cap, clamp, max and min that keep NaN, as onnxruntime's Relu, Clip, Max
// and Min do. WGSL's own max/min/clamp of a NaN are implementation-defined, so NaN is
// recognised on the bits (which no float optimisation folds away) and passed through.
// Appended to every kernel with a ReLU epilogue or a max. CPU twin: `cpu::nan`.

fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

fn relu_keep_nan(x: f32) -> f32 {
    return select(max(x, 0.0), x, is_nan(x));
}

fn cap_keep_nan(x: f32, cap: f32) -> f32 {
    return select(min(x, cap), x, is_nan(x));
}

fn clamp_keep_nan(x: f32, lo: f32, hi: f32) -> f32 {
    return select(min(max(x, lo), hi), x, is_nan(x));
}

// NaN when either is NaN (a + b is then NaN).
fn max_keep_nan(a: f32, b: f32) -> f32 {
    return select(max(a, b), a + b, is_nan(a) || is_nan(b));
}

fn min_keep_nan(a: f32, b: f32) -> f32 {
    return select(min(a, b), a + b, is_nan(a) || is_nan(b));
}

// -inf, the identity of a maximum (built at run time: a constant infinity is an error).
fn neg_infinity(bits: u32) -> f32 {
    return bitcast<f32>(bits | 0xff800000u);
}
