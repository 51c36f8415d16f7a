//! Every layer type of a network, on a dense input and on the compact output of a
//! perforated convolution: the CPU plan against naive f64 references (with fusion on and
//! off), and the GPU plan against the CPU plan.

mod common;

use common::{assert_close, gpu_or_skip, naive, naive_conv, to_f64};
use ndarray::{ArrayD, IxDyn};
use perforate::cpu::CpuExecutor;
use perforate::gpu::GpuExecutor;
use perforate::network::{BatchNorm, Conv, InputSpec, Linear, Lrn, Network, Op, Perforation, Pool};
use perforate::plan::{Plan, PlanOptions};
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
            map.taps(q).iter().map(|&(k, w)| f64::from(w) * kept(k)).sum()
        })
        .collect()
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
    let data = SeededRng::new(3).vec_f32(B * 3 * H * W, -1.0, 1.0);
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
        let expected: Vec<f64> = p.d.iter().map(|v| v.max(0.0)).collect();
        verify(&format!("relu q={q:?}"), &p.net, &p.x, &expected, &[B, C, H, W]);
        let mut p = pre(q);
        p.net.then("relu6", Op::Clip { min: -0.25, max: 0.5 });
        let expected: Vec<f64> = p.d.iter().map(|v| v.clamp(-0.25, 0.5)).collect();
        verify(&format!("clip q={q:?}"), &p.net, &p.x, &expected, &[B, C, H, W]);
    }
}

#[test]
fn pooling_dense_and_through_the_map() {
    type Case = ([usize; 2], [usize; 2], [usize; 4], bool, bool, bool, [usize; 2]);
    let cases: [Case; 7] = [
        // kernel, stride, pads, ceil, avg, count_include_pad, expected output size
        ([3, 3], [2, 2], [0; 4], false, false, false, [4, 4]),
        ([3, 3], [2, 2], [1; 4], true, false, false, [5, 5]),
        ([2, 2], [2, 2], [0; 4], true, false, false, [5, 5]),
        ([3, 3], [2, 2], [1; 4], false, true, true, [5, 5]),
        ([3, 3], [2, 2], [1; 4], false, true, false, [5, 5]),
        ([2, 2], [2, 2], [0, 0, 1, 1], true, true, true, [5, 5]),
        ([3, 2], [1, 2], [1, 0, 1, 1], false, true, false, [9, 5]),
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
                .map(|v| v.max(0.0))
                .collect();
        verify(&format!("conv+bn+relu q={q:?}"), &p.net, &p.x, &expected, &[B, C, H, W]);
        let mut p = pre(q);
        p.net.then("relu", Op::Relu);
        p.net.then("bn", Op::BatchNorm(bn.clone()));
        let relu: Vec<f64> = p.d.iter().map(|v| v.max(0.0)).collect();
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
    for (q1, q2) in [(None, None), (Some(0.5), None), (Some(0.5), Some(0.3)), (None, Some(0.7))] {
        let mut p = pre((q1, Interpolation::Nearest));
        let other = conv_op(3, C, 3, 1, 12, q2.map(|kept_fraction| Perforation::uniform(kept_fraction, 6)));
        let d2 = reference_conv(&other, &p.x64, 3, H, W);
        p.net.push("other", Op::Conv(other), &["input"]);
        let mut add = p.net.clone();
        add.push("sum", Op::Add, &["pre", "other"]);
        add.then("relu", Op::Relu);
        let expected: Vec<f64> = p.d.iter().zip(&d2).map(|(a, b)| (a + b).max(0.0)).collect();
        verify(&format!("add q={q1:?},{q2:?}"), &add, &p.x, &expected, &[B, C, H, W]);
        let mut cat = p.net.clone();
        cat.push("cat", Op::Concat, &["other", "pre", "other"]);
        let expected = naive::concat(&[&d2, &p.d, &d2], &[C, C, C], B, H * W);
        verify(&format!("concat q={q1:?},{q2:?}"), &cat, &p.x, &expected, &[B, 3 * C, H, W]);
    }
    // Two operands through the very same map: the add runs on the compact tensor.
    let mut p = pre((Some(0.5), Interpolation::Nearest));
    p.net.then("relu", Op::Relu);
    p.net.push("sum", Op::Add, &["pre", "relu", "pre"]);
    let plan = Plan::compile(&p.net, B, PlanOptions::default()).unwrap();
    assert!(
        plan.steps().iter().filter(|s| s.op.kernel() == "gather_interp").count() == 1,
        "only the output is gathered"
    );
    let expected: Vec<f64> = p.d.iter().map(|v| 2.0 * v + v.max(0.0)).collect();
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
            weights: rng.vec_f32(outs * features, -0.1, 0.1),
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
