//! Mask strategies (METHOD.md §2): grid, pooling structure and weights, alone and through
//! a network.
#![allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // small test sizes

use perforate::network::{InputSpec, Network, Op, Perforation, Pool};
use perforate::plan::{Plan, PlanOptions, StepOp};
use perforate::{grid_offsets, grid_sequence, window_counts, Mask, MaskStrategy, PoolWindows};

/// The fractional-max-pooling sequence written out independently.
fn sequence(size: usize, k: usize, u: f64) -> Vec<usize> {
    (0..k).map(|i| ((size as f64 / k as f64) * (i as f64 + u)).ceil() as usize - 1).collect()
}

#[test]
fn grid_rows_and_columns_follow_the_pseudorandom_sequence() {
    // By hand: size 7, k 3, u = 0.5: ceil(7/3 * 0.5) - 1 = 1, ceil(7/3 * 1.5) - 1 = 3,
    // ceil(7/3 * 2.5) - 1 = 5.
    assert_eq!(grid_sequence(7, 3, 0.5), [1, 3, 5]);
    assert_eq!(grid_sequence(10, 5, 0.01), [0, 2, 4, 6, 8]);
    assert_eq!(grid_sequence(10, 5, 0.99), [1, 3, 5, 7, 9]);
    assert_eq!(grid_sequence(4, 4, 0.3), [0, 1, 2, 3]);
    for (h, w, q, seed) in
        [(7, 7, 0.25, 1), (17, 17, 0.5, 2), (12, 20, 0.3, 3), (33, 9, 0.1, 4), (5, 5, 1.0, 5)]
    {
        let mask = Mask::grid(h, w, q, seed).unwrap();
        let (u, v) = grid_offsets(seed);
        assert!(u > 0.0 && u < 1.0 && v > 0.0 && v < 1.0);
        let (kh, kw) = (((h as f64) * q.sqrt()).floor() as usize, ((w as f64) * q.sqrt()).floor() as usize);
        let rows = sequence(h, kh.max(1), u);
        let cols = sequence(w, kw.max(1), v);
        let expected: Vec<u32> =
            rows.iter().flat_map(|&y| cols.iter().map(move |&x| (y * w + x) as u32)).collect();
        assert_eq!(mask.positions(), &expected[..], "{h}x{w} q={q} seed={seed}");
        // Within one row or column of the requested fraction.
        let off = (mask.len() as f64 - q * (h * w) as f64).abs();
        assert!(off <= h.max(w) as f64, "{h}x{w} q={q}: kept {} of {}", mask.len(), h * w);
    }
    // Square maps: K = floor(sqrt(q H'W')).
    assert_eq!(Mask::grid(17, 17, 0.5, 9).unwrap().len(), 12 * 12);
    assert_eq!(Mask::grid(17, 17, 0.5, 9).unwrap(), Mask::grid(17, 17, 0.5, 9).unwrap(), "reproducible");
    assert!(Mask::grid(7, 7, 0.0, 1).is_err());
}

#[test]
fn pooling_structure_counts_overlapping_windows() {
    // AlexNet's 3x3 stride-2 pooling over a 7x7 map: 3x3 windows starting at 0, 2, 4.
    // Rows 2 and 4 lie in two windows, the others in one: count(y, x) = r[y] * r[x].
    let pool = PoolWindows { kernel: [3, 3], stride: [2, 2], pads: [0; 4], out: [3, 3] };
    let r = [1, 1, 2, 1, 2, 1, 1];
    let expected: Vec<u32> = (0..49).map(|p| r[p / 7] * r[p % 7]).collect();
    assert_eq!(window_counts(7, 7, &pool), expected);
    // Keeping 4 positions keeps exactly the four covered by 4 windows.
    let mask = Mask::pooling_structure(7, 7, 4.0 / 49.0, 3, &pool).unwrap();
    assert_eq!(mask.positions(), &[16, 18, 30, 32]);

    // Non-overlapping 2x2/2 windows: every position has count 1, so only the seeded
    // tie-break orders them, as in a uniform mask.
    let vgg = PoolWindows { kernel: [2, 2], stride: [2, 2], pads: [0; 4], out: [4, 4] };
    assert!(window_counts(8, 8, &vgg).iter().all(|&c| c == 1));
    let a = Mask::pooling_structure(8, 8, 0.5, 1, &vgg).unwrap();
    assert_eq!(a.len(), 32);
    assert_ne!(a, Mask::pooling_structure(8, 8, 0.5, 2, &vgg).unwrap(), "the seed decides");
}

fn net_with(strategy: MaskStrategy, pooled: bool) -> Network {
    let mut net = Network::new("s", InputSpec { name: "x".into(), channels: 2, height: 7, width: 7 });
    let conv = perforate::network::Conv {
        perforation: Some(Perforation { strategy, ..Perforation::uniform(4.0 / 49.0, 3) }),
        ..perforate::network::Conv::new(3, [3, 3], 1, vec![0.1; 54], None)
    };
    net.push("conv", Op::Conv(conv), &["x"]);
    net.then("relu", Op::Relu);
    if pooled {
        let pool =
            Pool { kernel: [3, 3], stride: [2, 2], pads: [0; 4], ceil_mode: false, count_include_pad: false };
        net.then("pool", Op::MaxPool(pool));
    }
    net
}

fn plan_mask(net: &Network) -> Vec<u32> {
    let plan = Plan::compile(net, 1, PlanOptions::default()).unwrap();
    let step = plan.steps().iter().find(|s| s.layer == "conv").unwrap();
    let StepOp::Conv { layer, .. } = &step.op else { panic!("conv step") };
    layer.mask().positions().to_vec()
}

#[test]
fn strategies_through_a_network() {
    // Pooling structure finds the max pool behind the ReLU.
    assert_eq!(plan_mask(&net_with(MaskStrategy::PoolingStructure, true)), [16, 18, 30, 32]);
    let e = Plan::compile(&net_with(MaskStrategy::PoolingStructure, false), 1, PlanOptions::default())
        .unwrap_err();
    assert!(
        e.to_string().contains("layer 'conv' (conv): the pooling_structure strategy needs a pooling layer"),
        "{e}"
    );
    // Weights: the four largest.
    let mut weights = vec![0.0; 49];
    for (p, w) in [(3, 5.0), (10, 4.0), (40, 3.0), (48, 2.0), (0, 1.0)] {
        weights[p] = w;
    }
    assert_eq!(plan_mask(&net_with(MaskStrategy::Weights { weights }, false)), [3, 10, 40, 48]);
    // Grid: the same mask as Mask::grid.
    let grid = Mask::grid(7, 7, 4.0 / 49.0, 3).unwrap();
    assert_eq!(plan_mask(&net_with(MaskStrategy::Grid, false)), grid.positions());
    // Networks saved before strategies existed read as uniform.
    let json = net_with(MaskStrategy::Uniform, false)
        .to_json()
        .unwrap()
        .replace(",\"strategy\":{\"name\":\"uniform\"}", "");
    assert!(!json.contains("strategy"));
    let back = Network::from_json(&json).unwrap();
    assert_eq!(plan_mask(&back), Mask::uniform(7, 7, 4.0 / 49.0, 3).unwrap().positions());
}

#[test]
fn perforation_report_lists_layers_and_speedup() {
    let mut net =
        perforate::network::zoo::build("vgg16", perforate::network::zoo::ZooConfig::scaled(0.125, 32))
            .unwrap();
    net.set_perforation_with("conv1_1", 0.5, 1, MaskStrategy::Grid).unwrap();
    net.set_perforation("conv3_2", 0.25, 2).unwrap();
    let report = perforate::network::PerforationReport::new(&net).unwrap();
    assert_eq!(report.layers.len(), 13, "every conv, fully connected layers excluded");
    let first = &report.layers[0];
    assert_eq!(
        (first.layer.as_str(), first.strategy.as_str(), first.output_size),
        ("conv1_1", "grid", [32, 32])
    );
    assert_eq!(first.kept_fraction, (22 * 22) as f64 / 1024.0, "K = floor(32 sqrt(0.5)) = 22");
    assert!((first.speedup - 1024.0 / 484.0).abs() < 1e-12);
    let c32 = report.layers.iter().find(|r| r.layer == "conv3_2").unwrap();
    assert_eq!((c32.strategy.as_str(), c32.kept_fraction, c32.speedup), ("uniform", 0.25, 4.0));
    assert_eq!(report.layers[1].strategy, "dense");
    assert!((report.theoretical_speedup - net.theoretical_speedup().unwrap()).abs() < 1e-12);
    let table = report.to_table();
    assert!(table.contains("conv3_2") && table.contains("theoretical speedup"), "{table}");
    let json: serde_json::Value = serde_json::from_str(&report.to_json().unwrap()).unwrap();
    assert_eq!(json["layers"][0]["strategy"], "grid");
    assert_eq!(json["layers"].as_array().unwrap().len(), 13);
}

/// The stride baseline: a grid-perforated conv whose output is only the grid (no
/// interpolation) equals the conv evaluated at the chosen rows and columns, and later
/// layers see the smaller map.
#[test]
fn stride_baseline_equals_the_conv_on_the_grid() {
    use perforate::cpu::CpuExecutor;
    use perforate::rng::SeededRng;
    use perforate::Interpolation;
    let (b, c, t, h) = (2, 2, 3, 9);
    let mut rng = SeededRng::new(5);
    let weights = rng.vec_f32(t * c * 9, -0.5, 0.5);
    let bias = rng.vec_f32(t, -0.5, 0.5);
    let x = rng.vec_f32(b * c * h * h, -1.0, 1.0);
    let perforation = Perforation {
        strategy: MaskStrategy::Grid,
        interpolation: Interpolation::Stride,
        ..Perforation::uniform(0.3, 4)
    };
    let conv = perforate::network::Conv {
        perforation: Some(perforation),
        ..perforate::network::Conv::new(t, [3, 3], 1, weights.clone(), Some(bias.clone()))
    };
    let mut net = Network::new("stride", InputSpec { name: "x".into(), channels: c, height: h, width: h });
    net.push("conv", Op::Conv(conv), &["x"]);
    let plan = Plan::compile(&net, b, PlanOptions::default()).unwrap();
    let grid = Mask::grid(h, h, 0.3, 4).unwrap();
    let (u, v) = grid_offsets(4);
    let k = (h as f64 * 0.3f64.sqrt()).floor() as usize;
    let (rows, cols) = (sequence(h, k, u), sequence(h, k, v));
    assert_eq!(grid.len(), rows.len() * cols.len());
    assert_eq!(plan.output_shape(), [b, t, k, k], "the output shrinks to the grid");

    // Reference: the direct convolution at each grid point, in f64.
    let mut expected = Vec::new();
    for img in 0..b {
        for o in 0..t {
            for &y in &rows {
                for &xx in &cols {
                    let mut acc = f64::from(bias[o]);
                    for ci in 0..c {
                        for ky in 0..3 {
                            for kx in 0..3 {
                                let (yi, xi) = (y as isize + ky as isize - 1, xx as isize + kx as isize - 1);
                                if yi < 0 || xi < 0 || yi >= h as isize || xi >= h as isize {
                                    continue;
                                }
                                let wv = weights[((o * c + ci) * 3 + ky) * 3 + kx];
                                acc += f64::from(wv)
                                    * f64::from(x[((img * c + ci) * h + yi as usize) * h + xi as usize]);
                            }
                        }
                    }
                    expected.push(acc);
                }
            }
        }
    }
    let input = ndarray::ArrayD::from_shape_vec(vec![b, c, h, h], x).unwrap();
    let out = CpuExecutor::new(&plan).unwrap().run(input.view()).unwrap();
    for (g, e) in out.iter().zip(&expected) {
        assert!((f64::from(*g) - e).abs() <= 1e-4 * (1.0 + e.abs()), "{g} vs {e}");
    }
    let speedup = net.theoretical_speedup().unwrap();
    assert!((speedup - (h * h) as f64 / (k * k) as f64).abs() < 1e-9, "{speedup}");

    // Only grid masks have rows and columns to shrink to.
    let mut uniform = net.clone();
    if let Op::Conv(conv) = &mut uniform.layers[0].op {
        conv.perforation.as_mut().unwrap().strategy = MaskStrategy::Uniform;
    }
    let e = Plan::compile(&uniform, 1, PlanOptions::default()).unwrap_err().to_string();
    assert!(e.contains("the stride baseline needs a grid mask"), "{e}");
}

#[test]
fn resize_baseline_reaches_the_requested_flop_ratio() {
    use perforate::network::zoo::{self, ZooConfig};
    for (name, resolution) in [("nin", 32), ("resnet18", 224)] {
        let net = zoo::build(name, ZooConfig::scaled(0.25, resolution)).unwrap();
        for speedup in [2.0, 3.0, 4.0] {
            let small = net.resized_for_speedup(speedup).unwrap();
            assert!(small.input.height < resolution);
            let full = Plan::compile(&net, 1, PlanOptions::default()).unwrap().flops() as f64;
            let got = full / Plan::compile(&small, 1, PlanOptions::default()).unwrap().flops() as f64;
            assert!(
                (got / speedup - 1.0).abs() <= 0.05,
                "{name} at {speedup}x: got {got:.3} with input {}",
                small.input.height
            );
        }
    }
    let vgg = zoo::build("vgg16", ZooConfig::scaled(0.125, 64)).unwrap();
    let e = vgg.resized_for_speedup(2.0).map(|n| n.input.height).unwrap_err().to_string();
    assert!(e.contains("the resize baseline needs global pooling before the classifier"), "{e}");
    assert!(vgg.resized_for_speedup(0.5).map(|n| n.input.height).is_err());
}
