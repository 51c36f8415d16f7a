//! Shared test support: GPU discovery that skips or fails, float comparison, an
//! independent naive convolution accumulated in f64, and the sweep of test problems
//! that every executor must pass.
#![allow(dead_code)]

pub mod naive;

use std::sync::OnceLock;

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use perforate::gpu::GpuContext;
use perforate::rng::SeededRng;
use perforate::{ConvGeometry, ConvLayer, InterpMap, MapKind, Mask};

/// The shared GPU context, or `None` (with the reason printed) when no adapter exists.
/// Panics instead of skipping when `PERFORATE_REQUIRE_GPU=1`.
pub fn gpu_or_skip(test: &str) -> Option<GpuContext> {
    static CONTEXT: OnceLock<Result<GpuContext, String>> = OnceLock::new();
    let ctx = CONTEXT.get_or_init(|| match GpuContext::new() {
        Ok(ctx) => {
            eprintln!("GPU adapter: {}", ctx.describe());
            Ok(ctx)
        }
        Err(e) => Err(e.to_string()),
    });
    match ctx {
        Ok(ctx) => Some(ctx.clone()),
        Err(reason) => {
            if std::env::var("PERFORATE_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("{test}: PERFORATE_REQUIRE_GPU=1 but no GPU is usable: {reason}");
            }
            eprintln!("skipping {test}: no GPU adapter ({reason})");
            None
        }
    }
}

/// Asserts `|got - want| <= tol · (1 + |want|)` elementwise, naming the first failure.
/// A non-finite `want` must be met exactly: NaN by NaN, an infinity by the same infinity.
#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if !w.is_finite() {
            let same = if w.is_nan() { g.is_nan() } else { f64::from(g) == w };
            assert!(same, "{what}: element {i}: got {g}, want {w}");
            continue;
        }
        let err = (f64::from(g) - w).abs() / (1.0 + w.abs());
        assert!(err.is_finite(), "{what}: non-finite value at {i}: got {g}, want {w}");
        if err > worst.0 {
            worst = (err, i);
        }
    }
    let (err, i) = worst;
    assert!(
        err <= tol,
        "{what}: element {i}: got {}, want {} (scaled error {err:e} > {tol:e})",
        got[i],
        want[i]
    );
}

/// Widens an f32 slice to f64.
pub fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| f64::from(v)).collect()
}

/// Direct convolution with six nested loops, accumulated in f64: the independent
/// reference. `input` is dense NCHW; the result is dense `[B, T, H', W']`.
pub fn naive_conv(g: &ConvGeometry, weights: &[f32], bias: &[f32], input: &[f64], relu: bool) -> Vec<f64> {
    let (oh, ow) = (g.out_h(), g.out_w());
    let (cg, tg) = (g.in_channels / g.groups, g.out_channels / g.groups);
    let mut out = vec![0.0f64; g.batch * g.out_channels * oh * ow];
    for b in 0..g.batch {
        for t in 0..g.out_channels {
            let group = t / tg;
            for y in 0..oh {
                for x in 0..ow {
                    let mut acc = f64::from(bias[t]);
                    for c in 0..cg {
                        let ci = group * cg + c;
                        for ky in 0..g.kernel_h {
                            for kx in 0..g.kernel_w {
                                let yi = (y * g.stride_h + ky * g.dilation_h) as isize - g.pad_top as isize;
                                let xi = (x * g.stride_w + kx * g.dilation_w) as isize - g.pad_left as isize;
                                if yi < 0 || xi < 0 || yi >= g.in_h as isize || xi >= g.in_w as isize {
                                    continue;
                                }
                                let w = weights[((t * cg + c) * g.kernel_h + ky) * g.kernel_w + kx];
                                let v = input[((b * g.in_channels + ci) * g.in_h + yi as usize) * g.in_w
                                    + xi as usize];
                                acc += f64::from(w) * v;
                            }
                        }
                    }
                    out[((b * g.out_channels + t) * oh + y) * ow + x] =
                        if relu { naive::relu64(acc) } else { acc };
                }
            }
        }
    }
    out
}

/// Kept fraction of a test problem.
#[derive(Clone, Copy, Debug)]
pub enum Keep {
    /// Exactly one computed position.
    One,
    /// A fraction in (0, 1].
    Frac(f64),
}

/// One convolution test problem: a geometry, a kept fraction, and whether the input is
/// the compact output of a previous perforated layer.
#[derive(Clone, Debug)]
pub struct Problem {
    pub name: &'static str,
    pub geometry: ConvGeometry,
    pub keep: Keep,
    pub compact_input: bool,
    pub relu: bool,
    pub seed: u64,
    /// How the layer fills its skipped outputs.
    pub interp: MapKind,
    /// The map a compact input is read through.
    pub in_interp: MapKind,
}

/// Plants one non-finite input value in two problems of three (by seed): a NaN, or an
/// infinity of either sign, at a seed-chosen element, so every conv kernel is checked to
/// carry them as the reference does (and not to spread them through padding lanes).
fn plant_non_finite(data: &mut [f32], seed: u64) {
    if data.is_empty() {
        return;
    }
    let at = usize::try_from(seed.wrapping_mul(7919) % data.len() as u64).expect("below len");
    match seed % 3 {
        1 => data[at] = f32::NAN,
        2 => data[at] = if seed.is_multiple_of(2) { f32::INFINITY } else { f32::NEG_INFINITY },
        _ => {}
    }
}

/// A built problem: the layer, its input tensor, and the f64 reference of the dense
/// output and of the compact output.
pub struct Built {
    pub layer: ConvLayer,
    pub input: ArrayD<f32>,
    pub dense_ref: Vec<f64>,
    pub compact_ref: Vec<f64>,
}

impl Problem {
    pub fn label(&self) -> String {
        format!(
            "{} b{} keep={:?} {}{}{}",
            self.name,
            self.geometry.batch,
            self.keep,
            self.interp.name(),
            if self.compact_input {
                format!(" compact-in({})", self.in_interp.name())
            } else {
                String::new()
            },
            if self.relu { " relu" } else { "" }
        )
    }

    pub fn build(&self) -> Built {
        let g = self.geometry;
        let mut rng = SeededRng::new(self.seed);
        let weights = rng.vec_f32(g.weight_len(), -0.5, 0.5);
        let bias = rng.vec_f32(g.out_channels, -0.5, 0.5);
        let mut layer = ConvLayer::new(g, weights.clone(), Some(bias.clone())).unwrap().with_relu(self.relu);
        let (oh, ow) = (g.out_h(), g.out_w());
        let q = match self.keep {
            Keep::One => 1.0 / (oh * ow) as f64,
            Keep::Frac(q) => q,
        };
        layer = layer.with_uniform_perforation(q, self.seed ^ 0x55).unwrap();
        layer = layer.with_interpolation(self.interp, self.seed).unwrap();

        // The input: dense, or compact with a previous layer's map over this H×W.
        let (input, dense_input): (ArrayD<f32>, Vec<f64>) = if self.compact_input {
            let prev: InterpMap = Mask::uniform(g.in_h, g.in_w, 0.4, self.seed ^ 0xAA)
                .unwrap()
                .map(self.in_interp, self.seed)
                .unwrap();
            let n_prev = prev.compact_len();
            let mut data = rng.vec_f32(g.batch * g.in_channels * n_prev, -1.0, 1.0);
            plant_non_finite(&mut data, self.seed);
            let plane = g.in_h * g.in_w;
            let mut dense = vec![0.0f64; g.batch * g.in_channels * plane];
            for bc in 0..g.batch * g.in_channels {
                for p in 0..plane {
                    dense[bc * plane + p] = prev
                        .taps(p)
                        .iter()
                        .filter(|t| t.1 != 0.0)
                        .map(|&(i, w)| f64::from(w) * f64::from(data[bc * n_prev + i]))
                        .sum();
                }
            }
            layer = layer.with_input_map(prev).unwrap();
            (ArrayD::from_shape_vec(IxDyn(&[g.batch, g.in_channels, n_prev]), data).unwrap(), dense)
        } else {
            let mut data = rng.vec_f32(g.batch * g.in_channels * g.in_h * g.in_w, -1.0, 1.0);
            plant_non_finite(&mut data, self.seed);
            let dense = to_f64(&data);
            (ArrayD::from_shape_vec(IxDyn(&[g.batch, g.in_channels, g.in_h, g.in_w]), data).unwrap(), dense)
        };

        // The ReLU follows the interpolation (which matters for barycentric maps only).
        let full = naive_conv(&g, &weights, &bias, &dense_input, false);
        let act = |v: f64| if self.relu { naive::relu64(v) } else { v };
        let plane = oh * ow;
        let mask = layer.mask().positions();
        let map = layer.interpolation_map();
        let planes = g.batch * g.out_channels;
        let mut dense_ref = vec![0.0; planes * plane];
        let mut compact_ref = vec![0.0; planes * mask.len()];
        for bt in 0..planes {
            for p in 0..plane {
                let kept = |i: usize| full[bt * plane + mask[i] as usize];
                dense_ref[bt * plane + p] = act(map
                    .taps(p)
                    .iter()
                    .filter(|t| t.1 != 0.0)
                    .map(|&(i, w)| f64::from(w) * kept(i))
                    .sum());
            }
            for (i, &p) in mask.iter().enumerate() {
                compact_ref[bt * mask.len() + i] = act(full[bt * plane + p as usize]);
            }
        }
        Built { layer, input, dense_ref, compact_ref }
    }
}

/// The geometries of the sweep (batch 1; callers set the batch).
pub fn geometries() -> Vec<(&'static str, ConvGeometry)> {
    vec![
        ("1x1", ConvGeometry::new(5, 7, 7, 6, 1, 1)),
        ("3x3_pad1_17", ConvGeometry::new(4, 17, 17, 8, 3, 3).with_padding(1)),
        ("5x5_pad2_groups2", ConvGeometry::new(6, 17, 17, 8, 5, 5).with_padding(2).with_groups(2)),
        ("11x11_stride4_alexnet_conv1", ConvGeometry::new(3, 35, 35, 8, 11, 11).with_stride(4)),
        ("3x3_dilation2", ConvGeometry::new(4, 17, 17, 6, 3, 3).with_padding(2).with_dilation(2)),
        ("3x3_asymmetric_pad", ConvGeometry::new(3, 16, 15, 5, 3, 3).with_padding_tlbr(0, 1, 2, 1)),
        ("3x3_stride2", ConvGeometry::new(4, 17, 17, 6, 3, 3).with_stride(2).with_padding(1)),
        ("out_1x1", ConvGeometry::new(4, 3, 3, 5, 3, 3)),
        ("out_33x33", ConvGeometry::new(3, 33, 33, 4, 3, 3).with_padding(1)),
        ("3x3_depthwise", ConvGeometry::new(6, 13, 13, 6, 3, 3).with_padding(1).with_groups(6)),
        (
            "5x5_depthwise_mult2_stride2",
            ConvGeometry::new(4, 15, 14, 8, 5, 5).with_padding(2).with_stride(2).with_groups(4),
        ),
    ]
}

/// The full sweep: every geometry × kept fraction × batch {1, 3}, plus compact inputs.
pub fn sweep() -> Vec<Problem> {
    let keeps = [Keep::One, Keep::Frac(0.25), Keep::Frac(0.5), Keep::Frac(0.75), Keep::Frac(1.0)];
    let mut problems = Vec::new();
    let mut seed = 1u64;
    for (name, g) in geometries() {
        for batch in [1, 3] {
            for keep in keeps {
                seed += 1;
                problems.push(Problem {
                    interp: MapKind::Nearest,
                    in_interp: MapKind::Nearest,
                    name,
                    geometry: g.with_batch(batch),
                    keep,
                    compact_input: false,
                    relu: seed.is_multiple_of(3),
                    seed,
                });
            }
        }
        // Zeros and barycentric outputs (with the ReLU after the interpolation), and
        // compact inputs read through each kind of map.
        for (keep, interp, in_interp, relu) in [
            (Keep::Frac(0.5), MapKind::Zeros, MapKind::Zeros, true),
            (Keep::Frac(0.4), MapKind::Barycentric, MapKind::Barycentric, true),
            (Keep::Frac(0.3), MapKind::Barycentric, MapKind::Zeros, false),
        ] {
            seed += 1;
            problems.push(Problem {
                name,
                geometry: g.with_batch(2),
                keep,
                compact_input: false,
                relu,
                seed,
                interp,
                in_interp,
            });
            seed += 1;
            problems.push(Problem {
                name,
                geometry: g.with_batch(3),
                keep,
                compact_input: true,
                relu: false,
                seed,
                interp,
                in_interp,
            });
        }
        for keep in [Keep::Frac(0.25), Keep::Frac(1.0)] {
            seed += 1;
            problems.push(Problem {
                interp: MapKind::Nearest,
                in_interp: MapKind::Nearest,
                name,
                geometry: g.with_batch(3),
                keep,
                compact_input: true,
                relu: false,
                seed,
            });
        }
    }
    problems
}

/// One compiled layer run on input a, then b, then a again: the two runs of a are
/// identical, b differs, and a matches the naive reference (no state leaks between runs).
/// `compile` builds the executor once and returns its run function.
pub fn check_independent_runs<R>(compile: impl FnOnce(&ConvLayer) -> R)
where
    R: Fn(ArrayViewD<'_, f32>) -> ArrayD<f32>,
{
    let g = ConvGeometry::new(3, 9, 9, 4, 3, 3).with_padding(1).with_batch(2);
    let p = Problem {
        interp: MapKind::Nearest,
        in_interp: MapKind::Nearest,
        name: "3x3",
        geometry: g,
        keep: Keep::Frac(0.5),
        compact_input: false,
        relu: false,
        seed: 4,
    };
    let a = p.build();
    let other = Problem { seed: 5, ..p.clone() }.build().input;
    let run = compile(&a.layer);
    let first = run(a.input.view());
    let between = run(other.view());
    let again = run(a.input.view());
    // Bitwise: the input holds a NaN (seed 4) and the other one an infinity (seed 5).
    let bits = |t: &ArrayD<f32>| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&first), bits(&again));
    assert_ne!(bits(&first), bits(&between));
    assert_close("first run", first.as_slice().unwrap(), &a.dense_ref, 1e-4);
}

/// Seeded random conv problems over the whole parameter space (groups, kernel, stride,
/// padding, dilation, batch, kept fraction, every map kind for the output and for a
/// compact input, ReLU); of `count` draws, the valid geometries. Sizes stay small (planes
/// up to about 20x20) so the GPU can run them on lavapipe too.
pub fn random_problems(seed: u64, count: u64) -> Vec<Problem> {
    let mut rng = SeededRng::new(seed);
    let kinds = [MapKind::Nearest, MapKind::Zeros, MapKind::Barycentric];
    let mut pick = |n: usize| usize::try_from(rng.next_u64() % n as u64).expect("below n");
    let mut problems = Vec::new();
    for draw in 0..count {
        let groups = [1, 1, 2, 3][pick(4)];
        let in_channels = groups * (1 + pick(6));
        let out_channels = groups * (1 + pick(9));
        let (kh, kw) = (1 + pick(4), 1 + pick(4));
        let dilation = 1 + pick(2);
        let (in_h, in_w) = (dilation * (kh - 1) + 1 + pick(14), dilation * (kw - 1) + 1 + pick(14));
        let g = ConvGeometry::new(in_channels, in_h, in_w, out_channels, kh, kw)
            .with_stride(1 + pick(3))
            .with_padding_tlbr(pick(3), pick(3), pick(3), pick(3))
            .with_dilation(dilation)
            .with_groups(groups)
            .with_batch(1 + pick(3));
        if g.validate().is_err() {
            continue;
        }
        let keep = match pick(5) {
            0 => Keep::One,
            1 => Keep::Frac(1.0),
            _ => Keep::Frac(0.1 + 0.8 * pick(100) as f64 / 100.0),
        };
        problems.push(Problem {
            name: "random",
            geometry: g,
            keep,
            compact_input: pick(2) == 0 && in_h * in_w > 1,
            relu: pick(2) == 0,
            seed: 1000 + draw,
            interp: kinds[pick(3)],
            in_interp: kinds[pick(3)],
        });
    }
    problems
}
