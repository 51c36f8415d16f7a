//! Backpropagation against central finite differences: every layer type, perforated convs
//! with each interpolation and the stride baseline, training-mode BatchNorm and dropout,
//! and a small perforated network end to end.

use perforate::network::{
    pad_axis, resize_axis, Affine, BatchNorm, Binary, Conv, Coordinates, InputSpec, Linear, Lrn, MatMul,
    Network, Op, PadMode, Perforation, Pool, Reduce, Resample, ResizeMode, Strided, Unary,
};
use perforate::rng::SeededRng;
use perforate::train::{Mode, Model, Tensor};
use perforate::{Interpolation, MaskStrategy};

const B: usize = 2;

fn conv(cin: usize, cout: usize, k: usize, pad: usize, seed: u64) -> Conv {
    let mut rng = SeededRng::new(seed);
    Conv::new(
        cout,
        [k, k],
        pad,
        rng.vec_f32(cout * cin * k * k, -0.4, 0.4),
        Some(rng.vec_f32(cout, -0.2, 0.2)),
    )
}

fn head(net: &mut Network, features: usize, seed: u64) {
    let mut rng = SeededRng::new(seed);
    net.then("flat", Op::Flatten);
    net.then(
        "fc",
        Op::Linear(Linear {
            out_features: 3,
            weights: rng.vec_f32(3 * features, -0.3, 0.3).into(),
            bias: Some(rng.vec_f32(3, -0.1, 0.1)),
        }),
    );
}

/// Σ r · logits for a fixed random r, in f64.
fn objective(net: &Network, x: &Tensor, mode: Mode, r: &[f32]) -> f64 {
    let model = Model::new(net.clone()).unwrap();
    let tape = model.forward(x.clone(), mode).unwrap();
    let logits = tape.value(model.logits_name()).unwrap();
    logits.data.iter().zip(r).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum()
}

fn agree(a: f64, b: f64) -> bool {
    (a - b).abs() <= 4e-3 + 3e-2 * a.abs().max(b.abs())
}

/// Central differences at two step sizes. Where they disagree, a step crossed a kink
/// (ReLU, max, clip) and the entry is skipped; otherwise the analytic value must match.
/// Returns whether the entry was checked.
fn compare(label: &str, analytic: f64, f: impl Fn(f32) -> f64) -> bool {
    let numeric = |eps: f32| (f(eps) - f(-eps)) / (2.0 * f64::from(eps));
    let (n1, n2) = (numeric(1e-3), numeric(4e-4));
    if (n1 - n2).abs() > 3e-3 + 5e-3 * n1.abs() {
        return false;
    }
    assert!(agree(analytic, n1), "{label}: analytic {analytic:.6}, numeric {n1:.6} ({n2:.6})");
    true
}

/// Checks the input gradient and sampled parameter gradients of `net` in `mode`.
fn check(label: &str, net: &Network, mode: Mode) {
    let spec = &net.input;
    let shape = [B, spec.channels, spec.height, spec.width];
    let mut rng = SeededRng::new(99);
    let x = Tensor::new(shape, rng.vec_f32(shape.iter().product(), -1.0, 1.0)).unwrap();
    let model = Model::new(net.clone()).unwrap();
    let tape = model.forward(x.clone(), mode).unwrap();
    let n_logits = tape.value(model.logits_name()).unwrap().data.len();
    let r = rng.vec_f32(n_logits, -1.0, 1.0);
    let grads = model.backward(&tape, r.clone(), &[]).unwrap();
    let (mut checked, mut skipped) = (0, 0);
    let mut tally = |ok: bool| if ok { checked += 1 } else { skipped += 1 };
    // Input entries.
    for k in (0..x.data.len()).step_by((x.data.len() / 12).max(1)) {
        let at = |delta: f32| {
            let mut moved = x.clone();
            moved.data[k] += delta;
            objective(net, &moved, mode, &r)
        };
        tally(compare(&format!("{label}: d input[{k}]"), f64::from(grads.input[k]), at));
    }
    // Parameters of every layer that has them.
    let mut perturbed = Model::new(net.clone()).unwrap();
    for name in model.param_names() {
        let analytic = &grads.params[&name];
        let sizes: Vec<usize> = perturbed.params_mut(&name).iter().map(|p| p.len()).collect();
        for (t, len) in sizes.into_iter().enumerate() {
            for k in (0..len).step_by((len / 6).max(1)) {
                let at = |delta: f32| {
                    let mut m = Model::new(net.clone()).unwrap();
                    m.params_mut(&name)[t][k] += delta;
                    objective(m.network(), &x, mode, &r)
                };
                tally(compare(&format!("{label}: d {name}[{t}][{k}]"), f64::from(analytic[t][k]), at));
            }
        }
    }
    assert!(skipped * 5 <= checked, "{label}: {skipped} entries crossed a kink, only {checked} checked");
}

/// input (3×9×9) → conv (3×3 pad 1, optionally perforated) → `tail` layers → flatten → fc.
fn net_with(perforation: Option<Perforation>, tail: &[(&str, Op)], features: usize) -> Network {
    let mut net = Network::new("t", InputSpec { name: "input".into(), channels: 3, height: 9, width: 9 });
    net.push("c1", Op::Conv(Conv { perforation, ..conv(3, 4, 3, 1, 1) }), &["input"]);
    for (name, op) in tail {
        net.then(*name, op.clone());
    }
    head(&mut net, features, 5);
    net
}

#[test]
fn perforated_convs_with_every_interpolation() {
    for interpolation in [Interpolation::Nearest, Interpolation::Zeros, Interpolation::Barycentric] {
        let p = Perforation { interpolation, ..Perforation::uniform(0.4, 3) };
        check(&format!("conv {interpolation:?}"), &net_with(Some(p), &[], 4 * 81), Mode::Eval);
    }
    let grid = Perforation {
        interpolation: Interpolation::Stride,
        strategy: MaskStrategy::Grid,
        ..Perforation::uniform(0.25, 3)
    };
    let plan =
        perforate::plan::Plan::compile(&net_with(Some(grid.clone()), &[], 4 * 81), 1, Default::default());
    // The stride baseline shrinks the map, so the head sees fewer features.
    let features = plan.err().map_or(4 * 81, |_| 4 * 16);
    let stride_net = net_with(Some(grid), &[], features);
    if perforate::plan::Plan::compile(&stride_net, 1, Default::default()).is_ok() {
        check("conv stride baseline", &stride_net, Mode::Eval);
    }
    // Strided, dilated, grouped geometry.
    let mut net = Network::new("t", InputSpec { name: "input".into(), channels: 4, height: 9, width: 9 });
    let mut c = conv(2, 6, 3, 2, 7);
    c.stride = [2, 2];
    c.dilation = [2, 2];
    c.groups = 2;
    c.perforation = Some(Perforation::uniform(0.6, 1));
    net.push("c1", Op::Conv(c), &["input"]);
    head(&mut net, 6 * 25, 3);
    check("conv stride2 dilation2 groups2 perforated", &net, Mode::Eval);
}

#[test]
fn pointwise_layers() {
    let p = Some(Perforation::uniform(0.5, 2));
    check("relu", &net_with(p.clone(), &[("r", Op::Relu)], 4 * 81), Mode::Eval);
    check("clip", &net_with(p.clone(), &[("cl", Op::Clip { min: -0.2, max: 0.3 })], 4 * 81), Mode::Eval);
    let lrn = Op::Lrn(Lrn { size: 3, alpha: 0.5, beta: 0.75, bias: 1.5 });
    check("lrn", &net_with(p.clone(), &[("n", lrn)], 4 * 81), Mode::Eval);
    let mut rng = SeededRng::new(4);
    let bn = BatchNorm {
        scale: rng.vec_f32(4, 0.5, 1.5),
        shift: rng.vec_f32(4, -0.5, 0.5),
        mean: rng.vec_f32(4, -0.2, 0.2),
        var: rng.vec_f32(4, 0.5, 1.5),
        epsilon: 1e-3,
    };
    check("bn frozen", &net_with(p.clone(), &[("bn", Op::BatchNorm(bn.clone()))], 4 * 81), Mode::Eval);
    check("bn training", &net_with(p.clone(), &[("bn", Op::BatchNorm(bn))], 4 * 81), Mode::Train { seed: 1 });
    check("dropout", &net_with(p, &[("d", Op::Dropout { ratio: 0.3 })], 4 * 81), Mode::Train { seed: 5 });
}

#[test]
fn elementwise_and_channel_layers() {
    let p = Some(Perforation::uniform(0.5, 2));
    let unary = [
        Unary::Sigmoid,
        Unary::HardSigmoid { alpha: 0.3, beta: 0.4 },
        Unary::HardSwish,
        Unary::Tanh,
        Unary::LeakyRelu { alpha: 0.1 },
        Unary::Elu { alpha: 0.8 },
        Unary::Erf,
        Unary::Gelu,
        Unary::GeluTanh,
        Unary::Exp,
        Unary::Neg,
        Unary::Softplus,
        Unary::Pow { exponent: 3.0 },
        Unary::Silu,
    ];
    for f in unary {
        check(f.name(), &net_with(p.clone(), &[("u", Op::Unary(f))], 4 * 81), Mode::Eval);
    }
    // Positive inputs for ln, sqrt and 1/x: |x| + 1 through an affine layer.
    for f in [Unary::Log, Unary::Sqrt, Unary::Reciprocal] {
        let tail = [
            ("abs", Op::Unary(Unary::Abs)),
            ("shift", Op::Affine(Affine { scale: vec![1.0], shift: vec![1.0] })),
            ("u", Op::Unary(f)),
        ];
        check(f.name(), &net_with(p.clone(), &tail, 4 * 81), Mode::Eval);
    }
    let affine = Op::Affine(Affine { scale: vec![0.5, -1.5, 2.0, 0.25], shift: vec![0.1, 0.0, -0.3, 0.2] });
    check("affine", &net_with(p.clone(), &[("a", affine)], 4 * 81), Mode::Eval);
    let select = Op::SelectChannels { channels: vec![3, 1, 1, 0, 2] };
    check("select_channels", &net_with(p.clone(), &[("s", select)], 5 * 81), Mode::Eval);
    // Resample: reflect padding of the rows with a linear resize of the columns, and a
    // cubic crop-and-resize (fill outside) with a constant pad that also crops.
    let rows = pad_axis(9, 2, 1, PadMode::Reflect).unwrap();
    let cols = resize_axis(9, 13, 13.0 / 9.0, Coordinates::HalfPixel, ResizeMode::Linear).unwrap();
    let r = Op::Resample(Resample::new(&rows, &cols, 0.0));
    check("resample reflect+linear", &net_with(p.clone(), &[("r", r)], 4 * 12 * 13), Mode::Eval);
    let cubic = ResizeMode::Cubic { a: -0.75, exclude_outside: false };
    let crop = Coordinates::TfCropAndResize { start: -0.1, end: 0.8 };
    let rows = resize_axis(9, 6, 0.7, crop, cubic).unwrap();
    let cols = pad_axis(9, -1, 2, PadMode::Constant).unwrap();
    let r = Op::Resample(Resample::new(&rows, &cols, 0.3));
    check("resample cubic crop+pad", &net_with(p.clone(), &[("r", r)], 4 * 6 * 10), Mode::Eval);
    // Where: the gradient flows to the branch taken (sigmoid and tanh of the conv's output).
    let mut net = net_with(p.clone(), &[], 0);
    net.layers.truncate(1);
    net.output = "c1".into();
    net.push("cond", Op::Unary(Unary::Greater { than: 0.0 }), &["c1"]);
    net.push("s", Op::Unary(Unary::Sigmoid), &["c1"]);
    net.push("t", Op::Unary(Unary::Tanh), &["c1"]);
    net.push("w", Op::Where, &["cond", "s", "t"]);
    head(&mut net, 4 * 81, 9);
    check("where", &net, Mode::Eval);

    // Binary: same shape (x and relu(x)) and a per-channel operand on either side
    // (squeeze-and-excitation: global pooling, sigmoid, scale).
    for f in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div, Binary::Max, Binary::Min] {
        let mut net = net_with(p.clone(), &[], 0);
        net.layers.truncate(1);
        net.output = "c1".into();
        net.push("g", Op::GlobalAvgPool, &["c1"]);
        net.push("s", Op::Unary(Unary::Sigmoid), &["g"]);
        net.push("t", Op::Affine(Affine { scale: vec![1.0], shift: vec![0.5] }), &["s"]);
        net.push("e1", Op::Binary(f), &["c1", "t"]);
        net.push("s1", Op::Unary(Unary::Sigmoid), &["e1"]);
        net.push("e2", Op::Binary(f), &["t", "s1"]);
        net.push("s2", Op::Unary(Unary::Sigmoid), &["e2"]);
        net.push("e3", Op::Binary(f), &["e1", "s2"]);
        head(&mut net, 4 * 81, 5);
        check(&format!("binary {}", f.name()), &net, Mode::Eval);
    }

    // Reductions over the channels and a layer norm built from them (per-position operands).
    for r in [Reduce::Mean, Reduce::Sum, Reduce::Max] {
        check(
            &format!("reduce {r:?}"),
            &net_with(p.clone(), &[("r", Op::ReduceChannels(r))], 81),
            Mode::Eval,
        );
    }
    let mut net = net_with(p, &[], 0);
    net.layers.truncate(1);
    net.output = "c1".into();
    net.push("mean", Op::ReduceChannels(Reduce::Mean), &["c1"]);
    net.push("centred", Op::Binary(Binary::Sub), &["c1", "mean"]);
    net.push("square", Op::Binary(Binary::Mul), &["centred", "centred"]);
    net.push("var", Op::ReduceChannels(Reduce::Mean), &["square"]);
    net.push("var_eps", Op::Affine(Affine { scale: vec![1.0], shift: vec![0.1] }), &["var"]);
    net.push("std", Op::Unary(Unary::Sqrt), &["var_eps"]);
    net.push("normed", Op::Binary(Binary::Div), &["centred", "std"]);
    net.push("flipped", Op::Binary(Binary::Sub), &["mean", "normed"]);
    head(&mut net, 4 * 81, 5);
    check("layer norm over channels", &net, Mode::Eval);
}

#[test]
fn pooling_layers() {
    let p = Some(Perforation::uniform(0.5, 2));
    let pool = |kernel, stride, pads, ceil_mode, count_include_pad| Pool {
        kernel: [kernel; 2],
        stride: [stride; 2],
        pads,
        ceil_mode,
        count_include_pad,
    };
    check(
        "max 3/2",
        &net_with(p.clone(), &[("mp", Op::MaxPool(pool(3, 2, [0; 4], false, false)))], 4 * 16),
        Mode::Eval,
    );
    check(
        "max 3/2 pad ceil",
        &net_with(p.clone(), &[("mp", Op::MaxPool(pool(3, 2, [1; 4], true, false)))], 4 * 25),
        Mode::Eval,
    );
    check(
        "avg 3/2 pad cip",
        &net_with(p.clone(), &[("ap", Op::AvgPool(pool(3, 2, [1; 4], false, true)))], 4 * 25),
        Mode::Eval,
    );
    check(
        "avg 2/2 ceil",
        &net_with(p.clone(), &[("ap", Op::AvgPool(pool(2, 2, [0; 4], true, false)))], 4 * 25),
        Mode::Eval,
    );
    check("global avg", &net_with(p, &[("g", Op::GlobalAvgPool)], 4), Mode::Eval);
}

#[test]
fn residual_blocks_with_batch_norm_and_relu() {
    // The backward defers a ReLU's cut to its input's consumer: a BatchNorm whose only
    // reader is a ReLU recomputes the cut, a ReLU after an Add is cut in the Add's pass,
    // values read twice sum their parts there, and a ReLU beside another reader of a
    // BatchNorm has its cut applied before the parts meet.
    let mut rng = SeededRng::new(12);
    let mut bn = || {
        Op::BatchNorm(BatchNorm {
            scale: rng.vec_f32(4, 0.5, 1.5),
            shift: rng.vec_f32(4, -0.3, 0.3),
            mean: rng.vec_f32(4, -0.2, 0.2),
            var: rng.vec_f32(4, 0.5, 1.5),
            epsilon: 1e-3,
        })
    };
    let mut net = Network::new("t", InputSpec { name: "input".into(), channels: 3, height: 6, width: 6 });
    net.push("c1", Op::Conv(conv(3, 4, 3, 1, 1)), &["input"]);
    net.then("bn1", bn());
    net.then("r1", Op::Relu);
    net.push(
        "c2",
        Op::Conv(Conv { perforation: Some(Perforation::uniform(0.5, 1)), ..conv(4, 4, 3, 1, 2) }),
        &["r1"],
    );
    net.then("bn2", bn());
    net.push("sum", Op::Add, &["bn2", "r1"]);
    net.then("r2", Op::Relu);
    net.push("c3", Op::Conv(conv(4, 4, 3, 1, 3)), &["r2"]);
    net.then("bn3", bn());
    net.then("r3", Op::Relu);
    net.push("sum2", Op::Add, &["r3", "bn3"]);
    net.push("sum3", Op::Add, &["sum2", "r2"]);
    head(&mut net, 4 * 36, 6);
    check("residual eval", &net, Mode::Eval);
    check("residual training", &net, Mode::Train { seed: 3 });
}

#[test]
fn add_concat_softmax_and_a_small_perforated_network() {
    // Residual add and channel concat of two branches, one perforated.
    let mut net = Network::new("t", InputSpec { name: "input".into(), channels: 3, height: 8, width: 8 });
    net.push(
        "a",
        Op::Conv(Conv { perforation: Some(Perforation::uniform(0.5, 1)), ..conv(3, 4, 3, 1, 1) }),
        &["input"],
    );
    net.push("ra", Op::Relu, &["a"]);
    net.push("b", Op::Conv(conv(4, 4, 3, 1, 2)), &["ra"]);
    net.push("sum", Op::Add, &["b", "a"]);
    net.push("cat", Op::Concat, &["sum", "a", "sum"]);
    net.then(
        "mp",
        Op::MaxPool(Pool {
            kernel: [2, 2],
            stride: [2, 2],
            pads: [0; 4],
            ceil_mode: false,
            count_include_pad: false,
        }),
    );
    head(&mut net, 12 * 16, 4);
    check("add + concat", &net, Mode::Eval);
    // Softmax inside the graph (its adjoint), then a final softmax the loss skips.
    let mut s = net.clone();
    s.then("sm", Op::Softmax);
    s.then(
        "fc2",
        Op::Linear(Linear {
            out_features: 3,
            weights: SeededRng::new(8).vec_f32(9, -1.0, 1.0).into(),
            bias: None,
        }),
    );
    s.then("prob", Op::Softmax);
    let model = Model::new(s.clone()).unwrap();
    assert_eq!(model.logits_name(), "fc2", "the loss reads the input of a final softmax");
    check("softmax", &s, Mode::Eval);
}

#[test]
fn impact_of_an_output_the_loss_ignores_is_zero() {
    // c1's channel 0 feeds nothing: a 1x1 conv with zero weights on it reads c1.
    let mut net = Network::new("t", InputSpec { name: "input".into(), channels: 2, height: 6, width: 6 });
    net.push("c1", Op::Conv(conv(2, 3, 3, 1, 1)), &["input"]);
    let mut w = SeededRng::new(3).vec_f32(2 * 3, -1.0, 1.0);
    w[0] = 0.0;
    w[3] = 0.0; // input channel 0 of both outputs
    net.push("pw", Op::Conv(Conv::new(2, [1, 1], 0, w, None)), &["c1"]);
    // Only the left half of the map reaches the loss: a crop by pooling the left columns
    // is not a layer, so zero the fc weights of the right half instead.
    let features = 2 * 36;
    let mut fw = SeededRng::new(4).vec_f32(3 * features, -1.0, 1.0);
    for o in 0..3 {
        for c in 0..2 {
            for p in 0..36 {
                if p % 6 >= 3 {
                    fw[o * features + c * 36 + p] = 0.0;
                }
            }
        }
    }
    net.then("flat", Op::Flatten);
    net.then("fc", Op::Linear(Linear { out_features: 3, weights: fw.into(), bias: None }));
    let model = Model::new(net).unwrap();
    let x = Tensor::new([2, 2, 6, 6], SeededRng::new(5).vec_f32(144, -1.0, 1.0)).unwrap();
    let tape = model.forward(x, Mode::Eval).unwrap();
    let grads = model.backward(&tape, vec![1.0; 6], &["c1".into(), "pw".into()]).unwrap();
    let pw = &grads.impact["pw"];
    for (p, &v) in pw.iter().enumerate() {
        if p % 6 >= 3 {
            assert_eq!(v, 0.0, "pw position {p} does not reach the loss");
        } else {
            assert!(v > 0.0, "pw position {p} does");
        }
    }
    assert!(grads.impact["c1"].iter().all(|v| v.is_finite()));
}

#[test]
fn attention_layers_over_tensors_of_any_rank() {
    // conv 4×9×9 → tokens [4, 81] → transposed copy [81, 4] → scores of two heads through
    // strides → softmax over the channels → mix → + constant → gather → fc.
    const L: usize = 81;
    for perforation in [None, Some(Perforation::uniform(0.5, 3))] {
        let mut net = Network::new("t", InputSpec { name: "input".into(), channels: 3, height: 9, width: 9 });
        net.push(
            "c1",
            Op::Conv(Conv { perforation: perforation.clone(), ..conv(3, 4, 3, 1, 1) }),
            &["input"],
        );
        net.then("tokens", Op::Reshape { shape: [4, L, 1] });
        net.then(
            "t",
            Op::Strided(Strided { dims: vec![L, 4], strides: vec![1, L], offset: 0, shape: [L, 4, 1] }),
        );
        let scores = MatMul {
            batch: [1, 2],
            m: L,
            k: 2,
            n: L,
            a_strides: [0, 2, 4, 1],
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
            b_strides: [0, 2, 4, 1],
            out_strides: [0, 2 * L, 2, 1],
            shape: [4, L, 1],
        };
        net.push("mix", Op::MatMul(mix), &["attn", "t"]);
        let cls = SeededRng::new(41).vec_f32(4 * L, -1.0, 1.0);
        net.push("cls", Op::Constant { shape: [4, L, 1], values: cls }, &["t"]);
        net.push("sum", Op::Add, &["mix", "cls"]);
        // A broadcast (stride 0) and a gather with an offset.
        let sel = Strided { dims: vec![3, 4, 5], strides: vec![0, L, 2], offset: 7, shape: [60, 1, 1] };
        net.then("sel", Op::Strided(sel));
        head(&mut net, 60, 6);
        check(&format!("attention perforation={perforation:?}"), &net, Mode::Eval);
    }
}
