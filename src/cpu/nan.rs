//! Maximum, minimum, ReLU and clamp that keep NaN, as onnxruntime's Relu, Clip, Max and
//! Min do (and numpy's `np.maximum`). `f32::max` and `f32::min` return the other operand
//! when one is NaN, which turns a NaN input into confident numbers downstream.
//!
//! Every kernel epilogue and every max-pooling and max-reduction window goes through
//! these (or, in the SIMD kernels, through an operand order with the same result: x86's
//! `max_ps(a, b)` returns `b` when either is NaN, so `max_ps(0, v)` is `relu_keep_nan(v)`;
//! ARM's `fmax` propagates NaN itself). The WGSL side is `shaders/keep_nan.wgsl`.

/// `max(v, 0)`, NaN kept.
#[inline(always)]
pub fn relu_keep_nan(v: f32) -> f32 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

/// `min(v, cap)`, NaN kept.
#[inline(always)]
pub fn cap_keep_nan(v: f32, cap: f32) -> f32 {
    if v > cap {
        cap
    } else {
        v
    }
}

/// `min(max(v, lo), hi)`, NaN kept.
#[inline(always)]
pub fn clamp_keep_nan(v: f32, lo: f32, hi: f32) -> f32 {
    cap_keep_nan(if v < lo { lo } else { v }, hi)
}

/// The larger of `a` and `b`; NaN when either is NaN (IEEE 754-2019 `maximum`).
#[inline(always)]
pub fn max_keep_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}

/// The smaller of `a` and `b`; NaN when either is NaN (IEEE 754-2019 `minimum`).
#[inline(always)]
pub fn min_keep_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.min(b)
    }
}

/// Whether any value is NaN, in chunks the compiler vectorises (no early exit).
#[inline(always)]
pub fn any_nan(values: &[f32]) -> bool {
    let chunks = values.chunks_exact(16);
    let tail = chunks.remainder().iter().any(|v| v.is_nan());
    tail || chunks.fold(false, |seen, c| seen | c.iter().fold(false, |s, v| s | v.is_nan()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_is_kept_and_numbers_are_unchanged() {
        let nan = f32::NAN;
        assert!(relu_keep_nan(nan).is_nan() && cap_keep_nan(nan, 6.0).is_nan());
        assert!(clamp_keep_nan(nan, 0.0, 6.0).is_nan());
        assert!(max_keep_nan(nan, 1.0).is_nan() && max_keep_nan(1.0, nan).is_nan());
        assert!(min_keep_nan(nan, 1.0).is_nan() && min_keep_nan(1.0, nan).is_nan());
        assert_eq!(relu_keep_nan(-2.0), 0.0);
        assert_eq!(relu_keep_nan(f32::INFINITY), f32::INFINITY);
        assert_eq!(cap_keep_nan(f32::INFINITY, 6.0), 6.0);
        assert_eq!(clamp_keep_nan(f32::NEG_INFINITY, -1.0, 6.0), -1.0);
        assert_eq!(max_keep_nan(-1.0, f32::NEG_INFINITY), -1.0);
        assert_eq!(min_keep_nan(-1.0, f32::NEG_INFINITY), f32::NEG_INFINITY);
        let mut v = vec![1.0f32; 37];
        assert!(!any_nan(&v));
        v[36] = nan;
        assert!(any_nan(&v));
        v[36] = 1.0;
        v[3] = nan;
        assert!(any_nan(&v));
    }
}
