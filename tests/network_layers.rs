//! Every layer type of a network, on a dense input and on the compact output of a
//! perforated convolution: the CPU plan against naive f64 references (with fusion on and
//! off), and the GPU plan against the CPU plan. The inputs hold a NaN and infinities
//! (`plant_non_finite`): NaN and infinity must come out exactly where the reference has them.

mod common;

use common::{assert_close, gpu_or_skip, naive, naive_conv, to_f64};
use ndarray::{ArrayD, IxDyn};
use perforate::cpu::CpuExecutor;
use perforate::gpu::GpuExecutor;
use perforate::network::{
    pad_axis, resize_axis, slice_axis, Affine, BatchNorm, Binary, Conv, Coordinates, InputSpec, Linear, Lrn,
    MatMul, Nearest, Network, Op, PadMode, Perforation, Pool, Reduce, Resample, ResizeMode, Strided, Tap,
    Unary,
};
use perforate::plan::{Plan, PlanOptions, StepOp};
use perforate::rng::SeededRng;
use perforate::{ConvGeometry, Interpolation, Mask};

const TOL: f64 = 1e-4;
const B: usize = 2;
const C: usize = 4;
const H: usize = 9;
const W: usize = 9;

fn conv_op(
    cin: usize,
    cout: usize,
    k: usize,
    pad: usize,
    seed: u64,
    perforation: Option<Perforation>,
) -> Conv {
    let mut rng = SeededRng::new(seed);
    let weights = rng.vec_f32(cout * cin * k * k, -0.5, 0.5);
    let bias = Some(rng.vec_f32(cout, -0.5, 0.5));
    Conv { perforation, ..Conv::new(cout, [k, k], pad, weights, bias) }
}

/// A perforated conv's dense (interpolated) output, from the naive conv and the mask and
/// map the library builds for the same seed.
fn reference_conv(conv: &Conv, x: &[f64], cin: usize, h: usize, w: usize) -> Vec<f64> {
    let g = ConvGeometry::new(cin, h, w, conv.out_channels, conv.kernel[0], conv.kernel[1])
        .with_padding(conv.pads[0])
        .with_groups(conv.groups)
        .with_batch(B);
    let full = naive_conv(&g, &conv.weights, conv.bias.as_ref().unwrap(), x, false);
    let Some(p) = &conv.perforation else { return full };
    let (oh, ow) = (g.out_h(), g.out_w());
    let mask = Mask::uniform(oh, ow, p.kept_fraction, p.seed).unwrap();
    let map = mask.map(p.interpolation.map_kind().unwrap(), p.seed).unwrap();
    let plane = oh * ow;
    (0..full.len())
        .map(|i| {
            let (t, q) = (i / plane, i % plane);
            let kept = |k: usize| full[t * plane + mask.positions()[k] as usize];
            map.taps(q).iter().filter(|t| t.1 != 0.0).map(|&(k, w)| f64::from(w) * kept(k)).sum()
        })
        .collect()
}

/// Image 0 of a `[B, 3, H, W]` input gets a NaN, a +inf and a −inf (image 1 stays
/// finite), so every layer test also checks that non-finite values travel as in
/// onnxruntime (NaN kept by ReLU, clip, max and max pooling) and stay in their image.
fn plant_non_finite(data: &mut [f32]) {
    data[2 * W + 3] = f32::NAN;
    data[H * W + 6 * W + 6] = f32::INFINITY;
    data[2 * H * W + 4 * W + 7] = f32::NEG_INFINITY;
}

/// Input → conv "pre" (perforated at `q`, or dense) → whatever the test appends.
struct Pre {
    net: Network,
    x: ArrayD<f32>,
    x64: Vec<f64>,
    d: Vec<f64>,
}

/// Kept fraction of the first conv (`None`: dense) and how its skipped outputs are filled.
type Keep = (Option<f64>, Interpolation);

fn pre((q, interpolation): Keep) -> Pre {
    let mut net = Network::new("test", InputSpec { name: "input".into(), channels: 3, height: H, width: W });
    let perforation =
        q.map(|kept_fraction| Perforation { interpolation, ..Perforation::uniform(kept_fraction, 5) });
    let conv = conv_op(3, C, 3, 1, 11, perforation);
    let mut data = SeededRng::new(3).vec_f32(B * 3 * H * W, -1.0, 1.0);
    plant_non_finite(&mut data);
    let x64 = to_f64(&data);
    let d = reference_conv(&conv, &x64, 3, H, W);
    net.push("pre", Op::Conv(conv), &["input"]);
    Pre { net, x: ArrayD::from_shape_vec(IxDyn(&[B, 3, H, W]), data).unwrap(), x64, d }
}

/// Compiles with fusion on and off; CPU against `expected`, GPU against CPU.
fn verify(label: &str, net: &Network, x: &ArrayD<f32>, expected: &[f64], shape: &[usize]) {
    for fuse in [true, false] {
        let plan = Plan::compile(net, B, PlanOptions { fuse, ..Default::default() }).unwrap();
        assert_eq!(plan.output_shape(), shape, "{label}: output shape");
        let cpu = CpuExecutor::new(&plan).unwrap().run(x.view()).unwrap();
        let what = format!("{label} (fuse={fuse}) CPU vs naive");
        assert_close(&what, cpu.as_slice().unwrap(), expected, TOL);
        if let Some(ctx) = gpu_or_skip(label) {
            let gpu = GpuExecutor::new(&ctx, &plan).unwrap().run(x.view()).unwrap();
            let what = format!("{label} (fuse={fuse}) GPU vs CPU");
            assert_close(&what, gpu.as_slice().unwrap(), &to_f64(cpu.as_slice().unwrap()), TOL);
        }
    }
}

const KEEPS: [Keep; 5] = [
    (None, Interpolation::Nearest),
    (Some(0.5), Interpolation::Nearest),
    (Some(0.3), Interpolation::Nearest),
    (Some(0.5), Interpolation::Zeros),
    (Some(0.4), Interpolation::Barycentric),
];

#[test]
fn relu_clip_and_dropout() {
    for q in KEEPS {
        let mut p = pre(q);
        p.net.then("drop", Op::Dropout { ratio: 0.5 });
        p.net.then("relu", Op::Relu);
        let expected: Vec<f64> = p.d.iter().map(|v| naive::relu64(*v)).collect();
        verify(&format!("relu q={q:?}"), &p.net, &p.x, &expected, &[B, C, H, W]);
        let mut p = pre(q);
        p.net.then("relu6", Op::Clip { min: -0.25, max: 0.5 });
        let expected: Vec<f64> = p.d.iter().map(|v| v.clamp(-0.25, 0.5)).collect();
        verify(&format!("clip q={q:?}"), &p.net, &p.x, &expected, &[B, C, H, W]);
        // Clip(0, max) (ReLU6) fuses into the conv as a capped ReLU, except on a
        // barycentric-perforated output (the cap must follow the interpolation there).
        let mut p = pre(q);
        p.net.then("relu6", Op::Clip { min: 0.0, max: 0.3 });
        let expected: Vec<f64> = p.d.iter().map(|v| v.clamp(0.0, 0.3)).collect();
        verify(&format!("relu6 q={q:?}"), &p.net, &p.x, &expected, &[B, C, H, W]);
        let plan = Plan::compile(&p.net, B, PlanOptions::default()).unwrap();
        let clips = plan.steps().iter().filter(|s| s.op.kernel() == "clip").count();
        let barycentric = q.0.is_some() && q.1 == Interpolation::Barycentric;
        assert_eq!(clips, usize::from(barycentric), "relu6 q={q:?}: clip steps");
    }
    // A depthwise conv with ReLU6, as in MobileNetV2: the depthwise kernels' epilogues.
    for q in [None, Some(0.5)] {
        let mut net =
            Network::new("dw", InputSpec { name: "input".into(), channels: 3, height: H, width: W });
        let weights = SeededRng::new(31).vec_f32(6 * 9, -0.8, 0.8);
        let bias = Some(SeededRng::new(32).vec_f32(6, -0.5, 0.5));
        let perforation = q.map(|kept_fraction| Perforation::uniform(kept_fraction, 4));
        let conv = Conv { groups: 3, perforation, ..Conv::new(6, [3, 3], 1, weights, bias) };
        let expected: Vec<f64> = reference_conv(
            &conv,
            &to_f64(pre((None, Interpolation::Nearest)).x.as_slice().unwrap()),
            3,
            H,
            W,
        )
        .iter()
        .map(|v| v.clamp(0.0, 0.4))
        .collect();
        net.push("dw", Op::Conv(conv), &["input"]);
        net.then("relu6", Op::Clip { min: 0.0, max: 0.4 });
        let x = pre((None, Interpolation::Nearest)).x;
        verify(&format!("depthwise relu6 q={q:?}"), &net, &x, &expected, &[B, 6, H, W]);
    }
}

#[test]
fn pooling_dense_and_through_the_map() {
    type Case = ([usize; 2], [usize; 2], [usize; 4], bool, bool, bool, [usize; 2]);
    let cases: [Case; 8] = [
        // kernel, stride, pads, ceil, avg, count_include_pad, expected output size
        // (the last: one window over the whole plane, a global maximum)
        ([3, 3], [2, 2], [0; 4], false, false, false, [4, 4]),
        ([3, 3], [2, 2], [1; 4], true, false, false, [5, 5]),
        ([2, 2], [2, 2], [0; 4], true, false, false, [5, 5]),
        ([3, 3], [2, 2], [1; 4], false, true, true, [5, 5]),
        ([3, 3], [2, 2], [1; 4], false, true, false, [5, 5]),
        ([2, 2], [2, 2], [0, 0, 1, 1], true, true, true, [5, 5]),
        ([3, 2], [1, 2], [1, 0, 1, 1], false, true, false, [9, 5]),
        ([H, W], [1, 1], [0; 4], false, false, false, [1, 1]),
    ];
    for q in KEEPS {
        for (kernel, stride, pads, ceil_mode, avg, count_include_pad, [oh, ow]) in cases {
            let mut p = pre(q);
            let pool = Pool { kernel, stride, pads, ceil_mode, count_include_pad };
            p.net.then("pool", if avg { Op::AvgPool(pool) } else { Op::MaxPool(pool) });
            let (k, s) = ((kernel[0], kernel[1]), (stride[0], stride[1]));
            let expected = naive::pool(&p.d, B * C, (H, W), k, s, pads, (oh, ow), avg, count_include_pad);
            let label = format!("pool k{kernel:?} s{stride:?} p{pads:?} ceil={ceil_mode} avg={avg} cip={count_include_pad} q={q:?}");
            verify(&label, &p.net, &p.x, &expected, &[B, C, oh, ow]);
        }
        // Planes narrower than a vector (9x9 -> 5x5, then 2x2 windows over the 5-wide
        // plane, max and average).
        for avg in [false, true] {
            let mut p = pre(q);
            let first = Pool {
                kernel: [3, 3],
                stride: [2, 2],
                pads: [1; 4],
                ceil_mode: false,
                count_include_pad: false,
            };
            p.net.then("pool", Op::MaxPool(first));
            let second = Pool {
                kernel: [2, 2],
                stride: [2, 2],
                pads: [0; 4],
                ceil_mode: true,
                count_include_pad: false,
            };
            p.net.then("pool2", if avg { Op::AvgPool(second) } else { Op::MaxPool(second) });
            let d = naive::pool(&p.d, B * C, (H, W), (3, 3), (2, 2), [1; 4], (5, 5), false, false);
            let expected = naive::pool(&d, B * C, (5, 5), (2, 2), (2, 2), [0; 4], (3, 3), avg, false);
            verify(&format!("narrow planes avg={avg} q={q:?}"), &p.net, &p.x, &expected, &[B, C, 3, 3]);
        }
        let mut p = pre(q);
        p.net.then("gap", Op::GlobalAvgPool);
        let expected = naive::pool(&p.d, B * C, (H, W), (H, W), (1, 1), [0; 4], (1, 1), true, false);
        verify(&format!("global avg pool q={q:?}"), &p.net, &p.x, &expected, &[B, C, 1, 1]);
    }
}

#[test]
fn lrn_and_batch_norm_on_dense_and_compact() {
    for q in KEEPS {
        let mut p = pre(q);
        p.net.then("norm", Op::Lrn(Lrn { size: 3, alpha: 0.5, beta: 0.75, bias: 2.0 }));
        let expected = naive::lrn(&p.d, B, C, H * W, 3, 0.5, 0.75, 2.0);
        verify(&format!("lrn q={q:?}"), &p.net, &p.x, &expected, &[B, C, H, W]);

        // Directly after the conv (folded when fusing) and after a ReLU (standalone).
        let mut rng = SeededRng::new(8);
        let bn = BatchNorm {
            scale: rng.vec_f32(C, 0.5, 1.5),
            shift: rng.vec_f32(C, -0.5, 0.5),
            mean: rng.vec_f32(C, -0.5, 0.5),
            var: rng.vec_f32(C, 0.5, 1.5),
            epsilon: 1e-3,
        };
        let mut p = pre(q);
        p.net.then("bn", Op::BatchNorm(bn.clone()));
        p.net.then("relu", Op::Relu);
        let expected: Vec<f64> =
            naive::batch_norm(&p.d, C, H * W, &bn.scale, &bn.shift, &bn.mean, &bn.var, bn.epsilon)
                .into_iter()
                .map(naive::relu64)
                .collect();
        verify(&format!("conv+bn+relu q={q:?}"), &p.net, &p.x, &expected, &[B, C, H, W]);
        let mut p = pre(q);
        p.net.then("relu", Op::Relu);
        p.net.then("bn", Op::BatchNorm(bn.clone()));
        let relu: Vec<f64> = p.d.iter().map(|v| naive::relu64(*v)).collect();
        let expected =
            naive::batch_norm(&relu, C, H * W, &bn.scale, &bn.shift, &bn.mean, &bn.var, bn.epsilon);
        verify(&format!("relu+bn q={q:?}"), &p.net, &p.x, &expected, &[B, C, H, W]);
    }
}

#[test]
fn convs_after_a_perforated_conv() {
    for q in KEEPS {
        // 1x1 (runs on the compact tensor), 3x3 (reads through the map), 3x3 perforated itself.
        for (k, pad, own) in [(1, 0, None), (3, 1, None), (3, 1, Some(0.4)), (1, 0, Some(0.6))] {
            let mut p = pre(q);
            let perforation = own.map(|kept_fraction| Perforation::uniform(kept_fraction, 9));
            let conv = conv_op(C, 5, k, pad, 21, perforation);
            let expected = reference_conv(&conv, &p.d, C, H, W);
            p.net.then("next", Op::Conv(conv));
            verify(&format!("conv k{k} own={own:?} after q={q:?}"), &p.net, &p.x, &expected, &[B, 5, H, W]);
        }
    }
}

#[test]
fn add_and_concat_of_compact_and_dense_branches() {
    let interps = [Interpolation::Nearest, Interpolation::Zeros, Interpolation::Barycentric];
    for (q1, q2) in [(None, None), (Some(0.5), None), (Some(0.5), Some(0.3)), (None, Some(0.7))] {
        for interpolation in interps {
            let mut p = pre((q1, interpolation));
            let perforation = q2.map(|q| Perforation { interpolation, ..Perforation::uniform(q, 6) });
            let other = conv_op(3, C, 3, 1, 12, perforation);
            let d2 = reference_conv(&other, &p.x64, 3, H, W);
            p.net.push("other", Op::Conv(other), &["input"]);
            let label = format!("q={q1:?},{q2:?} {interpolation:?}");
            let mut add = p.net.clone();
            add.push("sum", Op::Add, &["pre", "other"]);
            add.then("relu", Op::Relu);
            let expected: Vec<f64> = p.d.iter().zip(&d2).map(|(a, b)| naive::relu64(a + b)).collect();
            verify(&format!("add {label}"), &add, &p.x, &expected, &[B, C, H, W]);
            // A compact operand is read through its map by the gather that adds the other
            // operand: no separate add pass.
            let plan = Plan::compile(&add, B, PlanOptions::default()).unwrap();
            let adds = plan.steps().iter().filter(|s| s.op.kernel() == "add").count();
            let gathers = plan.steps().iter().filter(|s| s.op.kernel() == "gather_interp").count();
            let compact = usize::from(q1.is_some()) + usize::from(q2.is_some());
            assert_eq!(
                (adds, gathers),
                (usize::from(compact == 0), compact),
                "{label}: add and gather steps"
            );
            // The dense addend dies at the add: the sum is written into its buffer.
            let in_place = plan
                .steps()
                .iter()
                .filter(|s| matches!(&s.op, StepOp::Gather { params, .. } if params.residual == 2))
                .count();
            assert_eq!(in_place, usize::from(compact > 0), "{label}: in-place residual gathers");
            let mut cat = p.net.clone();
            cat.push("cat", Op::Concat, &["other", "pre", "other"]);
            let expected = naive::concat(&[&d2, &p.d, &d2], &[C, C, C], B, H * W);
            verify(&format!("concat {label}"), &cat, &p.x, &expected, &[B, 3 * C, H, W]);
        }
    }
    // Three operands (two compact through different maps, one dense).
    let mut p = pre((Some(0.5), Interpolation::Nearest));
    let other = conv_op(3, C, 3, 1, 12, Some(Perforation::uniform(0.4, 8)));
    let third = conv_op(3, C, 1, 0, 13, None);
    let (d2, d3) = (reference_conv(&other, &p.x64, 3, H, W), reference_conv(&third, &p.x64, 3, H, W));
    p.net.push("other", Op::Conv(other), &["input"]);
    p.net.push("third", Op::Conv(third), &["input"]);
    p.net.push("sum", Op::Add, &["other", "third", "pre"]);
    let expected: Vec<f64> = p.d.iter().zip(&d2).zip(&d3).map(|((a, b), c)| a + b + c).collect();
    verify("add of three", &p.net, &p.x, &expected, &[B, C, H, W]);
    // Two perforated convs of one geometry and mask (same seed): their maps are equal, so
    // the add runs on the compact tensors and only its output is gathered.
    let mut p = pre((Some(0.5), Interpolation::Nearest));
    let twin = conv_op(3, C, 3, 1, 14, Some(Perforation::uniform(0.5, 5)));
    let d2 = reference_conv(&twin, &p.x64, 3, H, W);
    p.net.push("twin", Op::Conv(twin), &["input"]);
    p.net.push("sum", Op::Add, &["pre", "twin"]);
    let plan = Plan::compile(&p.net, B, PlanOptions::default()).unwrap();
    let gathers = plan.steps().iter().filter(|s| s.op.kernel() == "gather_interp").count();
    assert_eq!(gathers, 1, "equal maps: only the output is gathered");
    let expected: Vec<f64> = p.d.iter().zip(&d2).map(|(a, b)| a + b).collect();
    verify("add of equal maps", &p.net, &p.x, &expected, &[B, C, H, W]);
    // Two operands through the very same map: the add runs on the compact tensor.
    let mut p = pre((Some(0.5), Interpolation::Nearest));
    p.net.then("relu", Op::Relu);
    p.net.push("sum", Op::Add, &["pre", "relu", "pre"]);
    let plan = Plan::compile(&p.net, B, PlanOptions::default()).unwrap();
    assert!(
        plan.steps().iter().filter(|s| s.op.kernel() == "gather_interp").count() == 1,
        "only the output is gathered"
    );
    let expected: Vec<f64> = p.d.iter().map(|v| 2.0 * v + naive::relu64(*v)).collect();
    verify("compact add", &p.net, &p.x, &expected, &[B, C, H, W]);
}

#[test]
fn flatten_linear_softmax() {
    for q in KEEPS {
        let mut p = pre(q);
        let mut rng = SeededRng::new(4);
        let (features, outs) = (C * H * W, 7);
        let linear = Linear {
            out_features: outs,
            weights: rng.vec_f32(outs * features, -0.1, 0.1).into(),
            bias: Some(rng.vec_f32(outs, -0.1, 0.1)),
        };
        let logits = naive::linear(&p.d, B, &linear.weights, linear.bias.as_ref().unwrap());
        p.net.then("flatten", Op::Flatten);
        p.net.then("fc", Op::Linear(linear));
        let mut probs = p.net.clone();
        verify(&format!("linear q={q:?}"), &p.net, &p.x, &logits, &[B, outs, 1, 1]);
        probs.then("prob", Op::Softmax);
        verify(&format!("softmax q={q:?}"), &probs, &p.x, &naive::softmax(&logits, outs), &[B, outs, 1, 1]);
    }
}

/// erf(x) in f64 by its Maclaurin series (|x| < 3 here), independent of the library's
/// rational approximation.
fn erf64(x: f64) -> f64 {
    if x.is_infinite() {
        return x.signum();
    }
    let (mut sum, mut term, mut n) = (0.0f64, x, 0.0f64);
    while term.abs() > 1e-17 * sum.abs().max(1e-300) || n < 3.0 {
        sum += term / (2.0 * n + 1.0);
        n += 1.0;
        term *= -x * x / n;
        if n > 200.0 {
            break;
        }
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

fn unary64(f: Unary, x: f64) -> f64 {
    let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
    match f {
        Unary::Sigmoid => sigmoid(x),
        Unary::HardSigmoid { alpha, beta } => (f64::from(alpha) * x + f64::from(beta)).clamp(0.0, 1.0),
        Unary::HardSwish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
        Unary::Tanh => x.tanh(),
        Unary::LeakyRelu { alpha } => {
            if x >= 0.0 {
                x
            } else {
                f64::from(alpha) * x
            }
        }
        Unary::Elu { alpha } => {
            if x > 0.0 {
                x
            } else {
                f64::from(alpha) * (x.exp() - 1.0)
            }
        }
        Unary::Erf => erf64(x),
        Unary::Gelu => 0.5 * x * (1.0 + erf64(x / 2f64.sqrt())),
        Unary::GeluTanh => {
            0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())
        }
        Unary::Exp => x.exp(),
        Unary::Log => x.ln(),
        Unary::Sqrt => x.sqrt(),
        Unary::Neg => -x,
        Unary::Abs => x.abs(),
        Unary::Reciprocal => 1.0 / x,
        Unary::Softplus => (1.0 + x.exp()).ln(),
        Unary::Pow { exponent } => x.powf(f64::from(exponent)),
        Unary::Silu => x * sigmoid(x),
        // NaN compares false.
        Unary::Greater { than } => f64::from(u8::from(x > f64::from(than))),
        Unary::Less { than } => f64::from(u8::from(x < f64::from(than))),
        Unary::Equal { to } => f64::from(u8::from(x == f64::from(to))),
        Unary::GreaterOrEqual { than } => f64::from(u8::from(x >= f64::from(than))),
        Unary::LessOrEqual { than } => f64::from(u8::from(x <= f64::from(than))),
    }
}

#[test]
fn unary_functions_affine_and_channel_selection_on_dense_and_compact() {
    let all = [
        Unary::Sigmoid,
        Unary::HardSigmoid { alpha: 0.2, beta: 0.5 },
        Unary::HardSwish,
        Unary::Tanh,
        Unary::LeakyRelu { alpha: 0.1 },
        Unary::Elu { alpha: 1.0 },
        Unary::Erf,
        Unary::Gelu,
        Unary::GeluTanh,
        Unary::Exp,
        Unary::Neg,
        Unary::Abs,
        Unary::Softplus,
        Unary::Pow { exponent: 3.0 },
        Unary::Pow { exponent: 2.0 },
        Unary::Silu,
        Unary::Greater { than: 0.1 },
        Unary::Less { than: -0.2 },
        Unary::Equal { to: 0.0 },
        Unary::GreaterOrEqual { than: 0.0 },
        Unary::LessOrEqual { than: 0.3 },
    ];
    for q in KEEPS {
        for f in all {
            let mut p = pre(q);
            p.net.then("f", Op::Unary(f));
            let expected: Vec<f64> = p.d.iter().map(|&v| unary64(f, v)).collect();
            verify(&format!("{} q={q:?}", f.name()), &p.net, &p.x, &expected, &[B, C, H, W]);
        }
        // ln, sqrt, 1/x on |x| + 0.5.
        for f in [Unary::Log, Unary::Sqrt, Unary::Reciprocal] {
            let mut p = pre(q);
            p.net.then("abs", Op::Unary(Unary::Abs));
            p.net.then("shift", Op::Affine(Affine { scale: vec![1.0], shift: vec![0.5] }));
            p.net.then("f", Op::Unary(f));
            let expected: Vec<f64> = p.d.iter().map(|&v| unary64(f, v.abs() + 0.5)).collect();
            verify(&format!("{} q={q:?}", f.name()), &p.net, &p.x, &expected, &[B, C, H, W]);
        }
        // Per-channel affine (with the ReLU after it fused), then a channel shuffle and a slice.
        let (scale, shift) = (vec![0.5f32, -1.5, 2.0, 0.25], vec![0.1f32, 0.0, -0.3, 0.2]);
        let mut p = pre(q);
        p.net.then("a", Op::Affine(Affine { scale: scale.clone(), shift: shift.clone() }));
        p.net.then("r", Op::Relu);
        p.net.then("shuffle", Op::SelectChannels { channels: vec![0, 2, 1, 3] });
        p.net.then("slice", Op::SelectChannels { channels: vec![3, 1, 0] });
        let plane = H * W;
        let affine = |k: usize| {
            let (img, c, at) = (k / (C * plane), (k / plane) % C, k % plane);
            let v = p.d[(img * C + c) * plane + at];
            naive::relu64(v * f64::from(scale[c]) + f64::from(shift[c]))
        };
        // Output channel k reads input channel shuffle[slice[k]].
        let source = [3usize, 2, 0];
        let expected: Vec<f64> = (0..B)
            .flat_map(|img| {
                source.iter().flat_map(move |&c| (0..plane).map(move |at| (img * C + c) * plane + at))
            })
            .map(affine)
            .collect();
        verify(&format!("affine+relu+select q={q:?}"), &p.net, &p.x, &expected, &[B, 3, H, W]);
        // Where(x > 0, x, −x): |x|, with NaN taking the second branch (−NaN).
        let mut p = pre(q);
        p.net.push("positive", Op::Unary(Unary::Greater { than: 0.0 }), &["pre"]);
        p.net.push("negated", Op::Unary(Unary::Neg), &["pre"]);
        p.net.push("where", Op::Where, &["positive", "pre", "negated"]);
        let expected: Vec<f64> = p.d.iter().map(|&v| if v > 0.0 { v } else { -v }).collect();
        verify(&format!("where q={q:?}"), &p.net, &p.x, &expected, &[B, C, H, W]);
    }
}

#[test]
fn binary_functions_with_broadcasting_on_dense_and_compact() {
    let plane = H * W;
    for q in KEEPS {
        for f in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div, Binary::Max, Binary::Min] {
            // Squeeze-and-excitation shape: x op t and t op y with t = sigmoid(mean(x)) + 0.5
            // per image and channel, then two operands of equal shape (denominators stay
            // away from 0).
            let mut p = pre(q);
            p.net.push("g", Op::GlobalAvgPool, &["pre"]);
            p.net.push("s", Op::Unary(Unary::Sigmoid), &["g"]);
            p.net.push("t", Op::Affine(Affine { scale: vec![1.0], shift: vec![0.5] }), &["s"]);
            p.net.push("e1", Op::Binary(f), &["pre", "t"]);
            p.net.push("s1", Op::Unary(Unary::Sigmoid), &["e1"]);
            p.net.push("e2", Op::Binary(f), &["t", "s1"]);
            p.net.push("s2", Op::Unary(Unary::Sigmoid), &["e2"]);
            p.net.push("e3", Op::Binary(f), &["e1", "s2"]);
            let g = |f: Binary, a: f64, b: f64| match f {
                Binary::Add => a + b,
                Binary::Sub => a - b,
                Binary::Mul => a * b,
                Binary::Div => a / b,
                Binary::Max => naive::max64(a, b),
                Binary::Min => naive::min64(a, b),
            };
            let s: Vec<f64> =
                p.d.chunks(plane)
                    .map(|c| 1.0 / (1.0 + (-c.iter().sum::<f64>() / plane as f64).exp()) + 0.5)
                    .collect();
            let expected: Vec<f64> =
                p.d.iter()
                    .enumerate()
                    .map(|(k, &x)| {
                        let t = s[k / plane];
                        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
                        let e1 = g(f, x, t);
                        let e2 = g(f, t, sig(e1));
                        g(f, e1, sig(e2))
                    })
                    .collect();
            verify(&format!("binary {} q={q:?}", f.name()), &p.net, &p.x, &expected, &[B, C, H, W]);
        }
    }
}

#[test]
fn channel_reductions_and_a_layer_norm_over_the_channels() {
    let plane = H * W;
    for q in KEEPS {
        // Mean, sum and max over the channels at each position.
        for r in [Reduce::Mean, Reduce::Sum, Reduce::Max] {
            let mut p = pre(q);
            p.net.then("r", Op::ReduceChannels(r));
            let expected: Vec<f64> = (0..B * plane)
                .map(|k| {
                    let (img, at) = (k / plane, k % plane);
                    let vals = (0..C).map(|c| p.d[(img * C + c) * plane + at]);
                    match r {
                        Reduce::Mean => vals.sum::<f64>() / C as f64,
                        Reduce::Sum => vals.sum(),
                        Reduce::Max => vals.fold(f64::NEG_INFINITY, naive::max64),
                    }
                })
                .collect();
            verify(&format!("reduce {r:?} q={q:?}"), &p.net, &p.x, &expected, &[B, 1, H, W]);
        }
        // Layer norm over the channels as an importer expands it, and mean − x (the
        // per-position operand first).
        let mut p = pre(q);
        p.net.push("mean", Op::ReduceChannels(Reduce::Mean), &["pre"]);
        p.net.push("centred", Op::Binary(Binary::Sub), &["pre", "mean"]);
        p.net.push("square", Op::Binary(Binary::Mul), &["centred", "centred"]);
        p.net.push("var", Op::ReduceChannels(Reduce::Mean), &["square"]);
        p.net.push("var_eps", Op::Affine(Affine { scale: vec![1.0], shift: vec![1e-3] }), &["var"]);
        p.net.push("std", Op::Unary(Unary::Sqrt), &["var_eps"]);
        p.net.push("normed", Op::Binary(Binary::Div), &["centred", "std"]);
        p.net.push("flipped", Op::Binary(Binary::Sub), &["mean", "normed"]);
        let expected: Vec<f64> = (0..B * C * plane)
            .map(|k| {
                let (img, at) = (k / (C * plane), k % plane);
                let vals: Vec<f64> = (0..C).map(|c| p.d[(img * C + c) * plane + at]).collect();
                let mean = vals.iter().sum::<f64>() / C as f64;
                let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / C as f64;
                mean - (p.d[k] - mean) / (var + 1e-3).sqrt()
            })
            .collect();
        verify(&format!("layer norm over channels q={q:?}"), &p.net, &p.x, &expected, &[B, C, H, W]);
    }
}

/// A resample in f64 from its taps: `Σ wr · wc · v` with `v` the input or the fill value,
/// taps of weight 0 skipped.
fn resample64(r: &Resample, x: &[f64], planes: usize, h: usize, w: usize) -> Vec<f64> {
    let (oh, ow, k) = (r.out_height(), r.out_width(), r.taps);
    let mut out = Vec::with_capacity(planes * oh * ow);
    for p in 0..planes {
        for y in 0..oh {
            for xo in 0..ow {
                let mut acc = 0.0f64;
                for rt in r.rows[y * k..(y + 1) * k].iter().filter(|t| t.weight != 0.0) {
                    for ct in r.cols[xo * k..(xo + 1) * k].iter().filter(|t| t.weight != 0.0) {
                        let v = match (rt.index, ct.index) {
                            (Some(i), Some(j)) => x[(p * h + i) * w + j],
                            _ => f64::from(r.fill),
                        };
                        acc += f64::from(rt.weight) * f64::from(ct.weight) * v;
                    }
                }
                out.push(acc);
            }
        }
    }
    out
}

#[test]
fn resample_pads_crops_slices_and_resizes_dense_and_compact_inputs() {
    type Case = (&'static str, Vec<Vec<Tap>>, Vec<Vec<Tap>>, f32);
    let cases: Vec<Case> = vec![
        (
            "reflect x edge",
            pad_axis(H, 2, 3, PadMode::Reflect).unwrap(),
            pad_axis(W, 1, -2, PadMode::Edge).unwrap(),
            0.0,
        ),
        (
            "wrap x constant",
            pad_axis(H, -1, 4, PadMode::Wrap).unwrap(),
            pad_axis(W, 3, 0, PadMode::Constant).unwrap(),
            0.5,
        ),
        (
            "nearest x linear",
            resize_axis(
                H,
                14,
                14.0 / 9.0,
                Coordinates::Asymmetric,
                ResizeMode::Nearest(Nearest::RoundPreferCeil),
            )
            .unwrap(),
            resize_axis(W, 5, 0.6, Coordinates::AlignCorners, ResizeMode::Linear).unwrap(),
            0.0,
        ),
        (
            "cubic crop x slice",
            resize_axis(
                H,
                7,
                0.8,
                Coordinates::TfCropAndResize { start: -0.2, end: 0.9 },
                ResizeMode::Cubic { a: -0.5, exclude_outside: true },
            )
            .unwrap(),
            slice_axis(W, -2, 0, -3).unwrap(),
            -1.5,
        ),
    ];
    for q in KEEPS {
        for (label, rows, cols, fill) in &cases {
            let mut p = pre(q);
            let r = Resample::new(rows, cols, *fill);
            let expected = resample64(&r, &p.d, B * C, H, W);
            let shape = [B, C, r.out_height(), r.out_width()];
            p.net.then("r", Op::Resample(r));
            verify(&format!("resample {label} q={q:?}"), &p.net, &p.x, &expected, &shape);
        }
    }
}

/// Attention over the positions of a (possibly perforated) conv's output, written with the
/// layers for tensors of any rank: a free reshape, a transposing strided copy, products of
/// two activations read through strides (two heads), a softmax over the channels, a
/// per-image constant, and a strided gather; against f64 loops over the logical tensors.
#[test]
fn attention_from_strided_views_matmuls_and_a_channel_softmax() {
    const L: usize = H * W;
    for q in KEEPS {
        let p = pre(q);
        // Finite inputs: softmax of infinities is NaN in both, but says nothing.
        let mut x = p.x.clone();
        x.iter_mut().filter(|v| !v.is_finite()).for_each(|v| *v = 0.5);
        let Op::Conv(conv) = &p.net.layers[0].op else { unreachable!() };
        let d = reference_conv(conv, &to_f64(x.as_slice().unwrap()), 3, H, W);
        let mut net = p.net.clone();
        net.then("tokens", Op::Reshape { shape: [C, L, 1] });
        // [L][C]: token-major.
        net.then(
            "t",
            Op::Strided(Strided { dims: vec![L, C], strides: vec![1, L], offset: 0, shape: [L, C, 1] }),
        );
        let scores = MatMul {
            batch: [1, 2],
            m: L,
            k: 2,
            n: L,
            a_strides: [0, 2, C, 1],
            b_strides: [0, 2 * L, L, 1],
            out_strides: [0, L, 1, 2 * L],
            shape: [L, 2 * L, 1],
        };
        net.push("scores", Op::MatMul(scores), &["t", "tokens"]);
        net.then("attn", Op::Softmax);
        let mix = MatMul {
            batch: [1, 2],
            m: L,
            k: L,
            n: 2,
            a_strides: [0, L, 1, 2 * L],
            b_strides: [0, 2, C, 1],
            out_strides: [0, 2 * L, 2, 1],
            shape: [C, L, 1],
        };
        net.push("mix", Op::MatMul(mix), &["attn", "t"]);
        let cls: Vec<f32> = SeededRng::new(41).vec_f32(C * L, -1.0, 1.0);
        net.push("cls", Op::Constant { shape: [C, L, 1], values: cls.clone() }, &["t"]);
        net.push("sum", Op::Add, &["mix", "cls"]);

        let mut want_sum = Vec::new();
        for img in 0..B {
            let t = |l: usize, f: usize| d[(img * C + f) * L + l];
            for h in 0..2 {
                for m in 0..L {
                    let s: Vec<f64> =
                        (0..L).map(|n| (0..2).map(|j| t(m, 2 * h + j) * t(n, 2 * h + j)).sum()).collect();
                    let top = s.iter().copied().fold(f64::MIN, f64::max);
                    let e: Vec<f64> = s.iter().map(|v| (v - top).exp()).collect();
                    let total: f64 = e.iter().sum();
                    for j in 0..2 {
                        let v: f64 = (0..L).map(|n| e[n] / total * t(n, 2 * h + j)).sum();
                        want_sum.push(v + f64::from(cls[h * 2 * L + m * 2 + j]));
                    }
                }
            }
        }
        verify(&format!("attention q={q:?}"), &net, &x, &want_sum, &[B, C, L, 1]);

        let sel = Strided { dims: vec![C, 10], strides: vec![L, 1], offset: 3, shape: [C * 10, 1, 1] };
        net.then("sel", Op::Strided(sel));
        let want_sel: Vec<f64> = (0..B)
            .flat_map(|img| {
                let s = &want_sum[img * C * L..(img + 1) * C * L];
                (0..C).flat_map(move |f| (0..10).map(move |t| s[3 + f * L + t]))
            })
            .collect();
        verify(&format!("attention gather q={q:?}"), &net, &x, &want_sel, &[B, C * 10, 1, 1]);
    }
}
