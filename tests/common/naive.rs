//! Naive f64 references of the non-convolution layers, on dense NCHW tensors.

/// ReLU that keeps NaN (onnxruntime's Relu; `f64::max` would turn NaN into 0).
pub fn relu64(v: f64) -> f64 {
    if v < 0.0 {
        0.0
    } else {
        v
    }
}

/// The maximum, NaN when either operand is NaN (IEEE 754-2019 `maximum`).
pub fn max64(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// The minimum, NaN when either operand is NaN.
pub fn min64(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

/// Max or average pooling with PyTorch / ONNX Runtime window rules (max keeps NaN).
#[allow(clippy::too_many_arguments)]
pub fn pool(
    x: &[f64],
    planes: usize,
    (h, w): (usize, usize),
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    [pt, pl, pb, pr]: [usize; 4],
    (oh, ow): (usize, usize),
    avg: bool,
    count_include_pad: bool,
) -> Vec<f64> {
    let mut out = vec![0.0; planes * oh * ow];
    for t in 0..planes {
        for oy in 0..oh {
            for ox in 0..ow {
                let (ys, xs) = ((oy * sh) as isize - pt as isize, (ox * sw) as isize - pl as isize);
                let ye_pad = (ys + kh as isize).min((h + pb) as isize);
                let xe_pad = (xs + kw as isize).min((w + pr) as isize);
                let pool_size = ((ye_pad - ys) * (xe_pad - xs)) as f64;
                let (mut sum, mut best, mut n) = (0.0, f64::NEG_INFINITY, 0usize);
                for y in ys.max(0)..ye_pad.min(h as isize) {
                    for xx in xs.max(0)..xe_pad.min(w as isize) {
                        let v = x[(t * h + y as usize) * w + xx as usize];
                        sum += v;
                        best = max64(best, v);
                        n += 1;
                    }
                }
                out[(t * oh + oy) * ow + ox] = match (avg, count_include_pad) {
                    (false, _) => best,
                    (true, true) => sum / pool_size,
                    (true, false) => sum / n as f64,
                };
            }
        }
    }
    out
}

/// ONNX LRN across channels.
#[allow(clippy::too_many_arguments)]
pub fn lrn(
    x: &[f64],
    batch: usize,
    channels: usize,
    plane: usize,
    size: usize,
    alpha: f64,
    beta: f64,
    bias: f64,
) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    let (below, above) = ((size - 1) / 2, size / 2);
    for b in 0..batch {
        for c in 0..channels {
            for p in 0..plane {
                let lo = c.saturating_sub(below);
                let hi = (c + above).min(channels - 1);
                let sum: f64 = (lo..=hi).map(|j| x[(b * channels + j) * plane + p].powi(2)).sum();
                let i = (b * channels + c) * plane + p;
                out[i] = x[i] / (bias + alpha / size as f64 * sum).powf(beta);
            }
        }
    }
    out
}

/// Inference batch normalisation.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    x: &[f64],
    channels: usize,
    plane: usize,
    scale: &[f32],
    shift: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
) -> Vec<f64> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = (i / plane) % channels;
            (v - f64::from(mean[c])) / (f64::from(var[c]) + f64::from(eps)).sqrt() * f64::from(scale[c])
                + f64::from(shift[c])
        })
        .collect()
}

/// `y = W x + b` per image; `x` is `[batch, features]`.
pub fn linear(x: &[f64], batch: usize, weights: &[f32], bias: &[f32]) -> Vec<f64> {
    let outs = bias.len();
    let features = weights.len() / outs;
    let mut y = vec![0.0; batch * outs];
    for b in 0..batch {
        for o in 0..outs {
            y[b * outs + o] = f64::from(bias[o])
                + (0..features)
                    .map(|f| f64::from(weights[o * features + f]) * x[b * features + f])
                    .sum::<f64>();
        }
    }
    y
}

/// Softmax of each row of `cols` values.
pub fn softmax(x: &[f64], cols: usize) -> Vec<f64> {
    x.chunks(cols)
        .flat_map(|row| {
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = row.iter().map(|v| (v - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / s)
        })
        .collect()
}

/// Channel concatenation of NCHW tensors with `channels[k]` channels each.
pub fn concat(parts: &[&[f64]], channels: &[usize], batch: usize, plane: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for b in 0..batch {
        for (part, &c) in parts.iter().zip(channels) {
            out.extend_from_slice(&part[b * c * plane..(b + 1) * c * plane]);
        }
    }
    out
}
