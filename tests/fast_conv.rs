//! The fast CPU conv path (`cpu::FastConv`: implicit GEMM on every microkernel family this
//! CPU runs, the direct depthwise kernel and the narrow-product path) against the naive f64
//! reference and the reference twins (`im2col_masked → matmul_tiled`), over the shared
//! sweep, shapes that cross every blocking boundary, and seeded random geometries
//! (stride, padding, dilation, groups, every map kind, compact inputs).

mod common;

use common::{assert_close, sweep, to_f64, Keep, Problem};
use perforate::cpu::gemm::Microkernel;
use perforate::cpu::{CpuConv, FastConv};
use perforate::rng::SeededRng;
use perforate::{ConvGeometry, ConvSettings, MapKind, OutputForm};

const TOL: f64 = 1e-4;

fn check(p: &Problem) {
    if p.relu && p.interp == MapKind::Barycentric && p.keep_is_partial() {
        return; // no compact output: the ReLU must follow the interpolation
    }
    let built = p.build();
    let x = built.input.as_slice().unwrap();
    let twin = CpuConv::new(&built.layer, ConvSettings { output: OutputForm::Compact, ..Default::default() })
        .unwrap()
        .run(built.input.view())
        .unwrap();
    for kern in Microkernel::available() {
        let fast = FastConv::new(&built.layer, kern);
        // Stale values in the output must not matter: every element is written.
        let mut out = vec![f32::NAN; built.compact_ref.len()];
        fast.run(x, &mut out);
        let label = format!("{} [{} on {kern:?}]", p.label(), fast.name());
        assert_close(&label, &out, &built.compact_ref, TOL);
        assert_close(&format!("{label} vs twin"), &out, &to_f64(twin.as_slice().unwrap()), TOL);
    }
}

trait Partial {
    fn keep_is_partial(&self) -> bool;
}

impl Partial for Problem {
    fn keep_is_partial(&self) -> bool {
        !matches!(self.keep, Keep::Frac(q) if q >= 1.0)
    }
}

fn problem(name: &'static str, geometry: ConvGeometry, keep: Keep, seed: u64) -> Problem {
    Problem {
        name,
        geometry,
        keep,
        compact_input: false,
        relu: seed.is_multiple_of(2),
        seed,
        interp: MapKind::Nearest,
        in_interp: MapKind::Nearest,
    }
}

#[test]
fn sweep_matches_reference() {
    for p in sweep() {
        check(&p);
    }
}

#[test]
fn blocking_boundaries_depthwise_and_narrow_products() {
    let cases = [
        // Depth past one packed block (k = 576 > 256), channels not a multiple of any MR.
        ("k576_m70", ConvGeometry::new(64, 9, 9, 70, 3, 3).with_padding(1)),
        // Many columns: several column blocks per image and blocks spanning images.
        ("cols_900", ConvGeometry::new(3, 30, 30, 9, 3, 3).with_padding(1)),
        // 1x1 stride 1: contiguous packing.
        ("1x1_wide", ConvGeometry::new(24, 20, 20, 40, 1, 1)),
        // Depthwise, multiplier 1 and 2, stride 2, padding, dilation.
        ("depthwise", ConvGeometry::new(8, 13, 13, 8, 3, 3).with_padding(1).with_groups(8)),
        ("depthwise_s2", ConvGeometry::new(6, 14, 15, 6, 3, 3).with_padding(1).with_stride(2).with_groups(6)),
        (
            "depthwise_x2_d2",
            ConvGeometry::new(4, 11, 11, 8, 3, 3).with_padding(2).with_dilation(2).with_groups(4),
        ),
        (
            "depthwise_5x5_s2",
            ConvGeometry::new(5, 16, 16, 5, 5, 5).with_padding(2).with_stride(2).with_groups(5),
        ),
        // Depthwise past one block of 16 channels (channel-interleaved path): 40 output
        // channels from 20 inputs (multiplier 2), and 35 channels at stride 2.
        ("depthwise_40_x2", ConvGeometry::new(20, 9, 9, 40, 3, 3).with_padding(1).with_groups(20)),
        (
            "depthwise_35_s2",
            ConvGeometry::new(35, 12, 10, 35, 3, 3).with_padding(1).with_stride(2).with_groups(35),
        ),
        // Depthwise with planes above the interleaving threshold (per-plane path), at
        // stride 1 and 2.
        ("depthwise_24x24", ConvGeometry::new(18, 24, 24, 18, 3, 3).with_padding(1).with_groups(18)),
        (
            "depthwise_44x44_s2",
            ConvGeometry::new(3, 44, 44, 3, 3, 3).with_padding(1).with_stride(2).with_groups(3),
        ),
        // Stride 2 above the threshold with odd widths and pads 2 and 0 (the stride-2
        // phase split reads both parities of a row, from either first column).
        (
            "depthwise_45x47_s2_p2",
            ConvGeometry::new(3, 45, 47, 3, 5, 5).with_padding(2).with_stride(2).with_groups(3),
        ),
        ("depthwise_41x50_s2_p0", ConvGeometry::new(2, 41, 50, 2, 3, 3).with_stride(2).with_groups(2)),
        // Unstrided planes above 32x32 with dilation and a depth multiplier: the direct row
        // path (dense) and the expanded path (perforated output, compact input).
        (
            "depthwise_34x34_x2_d2",
            ConvGeometry::new(4, 34, 34, 8, 3, 3).with_padding(2).with_dilation(2).with_groups(4),
        ),
        // Grouped (ResNeXt-like) with many groups.
        ("groups8", ConvGeometry::new(32, 9, 9, 48, 3, 3).with_padding(1).with_groups(8)),
        // Fully connected as a 1x1 conv of a 1x1 map: the narrow-product path.
        ("fc", ConvGeometry::new(300, 1, 1, 37, 1, 1)),
    ];
    let cases = cases.into_iter().chain(row_conv_cases()).chain(pointwise_cases());
    let mut seed = 100;
    for (name, g) in cases {
        for batch in [1, 3, 8] {
            for keep in [Keep::Frac(1.0), Keep::Frac(0.5), Keep::Frac(0.25), Keep::One] {
                for compact_input in [false, true] {
                    seed += 1;
                    let mut p = problem(name, g.with_batch(batch), keep, seed);
                    p.compact_input = compact_input && g.in_h * g.in_w > 1;
                    check(&p);
                }
            }
        }
    }
}

/// First-layer shapes (at most 4 input channels), which take the row path when dense:
/// stride 2 with a partial channel panel and an odd left pad, dilation with uneven pads,
/// 4 channels with rows of two and a half tiles, a row of a full tile and a 3-wide one at
/// stride 2, stride 3 (the general phase split) with uneven pads; and convs of many input
/// channels at stride 1, which run along the padded grid.
fn row_conv_cases() -> [(&'static str, ConvGeometry); 7] {
    [
        ("row_conv_7x7_s2", ConvGeometry::new(3, 23, 21, 40, 7, 7).with_padding(3).with_stride(2)),
        (
            "row_conv_9x9_d2",
            ConvGeometry::new(1, 30, 25, 16, 9, 9).with_padding_tlbr(4, 3, 2, 5).with_dilation(2),
        ),
        ("row_conv_4ch_5x5", ConvGeometry::new(4, 17, 33, 70, 5, 5).with_padding(2)),
        ("row_conv_3x3_s2_51", ConvGeometry::new(3, 9, 101, 24, 3, 3).with_padding(1).with_stride(2)),
        (
            "row_conv_4x4_s3",
            ConvGeometry::new(2, 13, 40, 12, 4, 4).with_padding_tlbr(1, 2, 0, 1).with_stride(3),
        ),
        // Many input channels at stride 1 along the padded grid: three depth blocks
        // (360 taps), and dilation with two (144), output rows that end mid-vector.
        ("row_conv_grid_k360", ConvGeometry::new(40, 17, 18, 20, 3, 3).with_padding(1)),
        ("row_conv_grid_d2", ConvGeometry::new(16, 21, 30, 20, 3, 3).with_padding(2).with_dilation(2)),
    ]
}

/// The row-path cases really run on it (dense) with AVX-512 tiles, so the sweep above tests
/// it there; the AVX2 tiles (first layers only, and by default only on long rows) run the
/// first-layer cases here, forced, against the reference.
#[test]
fn row_conv_layers_take_the_row_path() {
    for kern in Microkernel::available() {
        for (seed, (name, g)) in (500..).zip(row_conv_cases()) {
            let p = problem(name, g.with_batch(2), Keep::Frac(1.0), seed);
            let built = p.build();
            match kern.name {
                "avx512" => {
                    assert_eq!(FastConv::new(&built.layer, kern).name(), "row_conv", "{name}");
                    check(&p);
                }
                "avx2" if g.in_channels <= 4 => {
                    let fast = FastConv::row(&built.layer, kern).expect("AVX2 row tiles for a first layer");
                    let mut out = vec![f32::NAN; built.compact_ref.len()];
                    fast.run(built.input.as_slice().unwrap(), &mut out);
                    assert_close(&format!("{} [row_conv on avx2]", p.label()), &out, &built.compact_ref, TOL);
                }
                _ => assert!(FastConv::row(&built.layer, kern).is_none(), "{name} on {}", kern.name),
            }
        }
    }
}

/// Batches of at least 4 images per thread take the grid path's whole-image tasks (each
/// image copied into the thread's own padded buffer, reused from image to image and from
/// layer to layer): two layers of different padding and width one after the other, each
/// on every image, against the reference.
#[test]
fn grid_tasks_of_whole_images_match_the_reference() {
    let batch = 4 * rayon::current_num_threads() + 1;
    let cases = [
        ("grid_images_p2", ConvGeometry::new(16, 13, 21, 20, 5, 5).with_padding(2)),
        ("grid_images_p1", ConvGeometry::new(8, 11, 17, 9, 3, 3).with_padding_tlbr(1, 0, 2, 1)),
    ];
    for (seed, (name, g)) in (700..).zip(cases) {
        let p = problem(name, g.with_batch(batch), Keep::Frac(1.0), seed);
        if Microkernel::detect().name == "avx512" {
            assert_eq!(FastConv::new(&p.build().layer, Microkernel::detect()).name(), "row_conv", "{name}");
        }
        check(&p);
    }
}

/// 1x1 stride-1 shapes for the in-place pointwise product: planes that end in a partial
/// vector and in one or two of a tile's three vectors (AVX-512; AVX2 tiles hold two), a
/// plane of one vector, output channels not a multiple of its 8- or 6-row panels, depth
/// past one block (400 > 160 channels), groups.
fn pointwise_cases() -> [(&'static str, ConvGeometry); 5] {
    [
        ("pointwise_7x9_m13", ConvGeometry::new(20, 7, 9, 13, 1, 1)),
        ("pointwise_11x11_k400", ConvGeometry::new(400, 11, 11, 21, 1, 1)),
        ("pointwise_4x4", ConvGeometry::new(5, 4, 4, 9, 1, 1)),
        ("pointwise_6x17_g3", ConvGeometry::new(12, 6, 17, 30, 1, 1).with_groups(3)),
        ("pointwise_20x20", ConvGeometry::new(24, 20, 20, 40, 1, 1)),
    ]
}

/// The pointwise cases run on that path dense, perforated and on compact inputs through
/// nearest and zeros maps (gathered columns), plus strided and padded 1x1 convs, across
/// batch sizes and several threads' split of tiles and panels: with AVX-512 tiles by
/// `FastConv::new`'s choice (at batch 1 a small perforated plane may take the HWC path
/// instead; from batch 2 on it must be this one), with AVX2 tiles forced (its rule takes
/// the path at batch 1 and on small planes only).
#[test]
fn pointwise_layers_take_their_path() {
    let strided = [
        ("pointwise_s2_p1", ConvGeometry::new(16, 15, 17, 24, 1, 1).with_stride(2).with_padding(1)),
        ("pointwise_s2_28", ConvGeometry::new(8, 28, 28, 20, 1, 1).with_stride(2)),
    ];
    let mut families = 0;
    for kern in Microkernel::available().into_iter().filter(|k| matches!(k.name, "avx512" | "avx2")) {
        families += 1;
        let mut seed = 600;
        for (name, g) in pointwise_cases().into_iter().chain(strided) {
            for batch in [1, 2, 5] {
                for (keep, compact_input, in_interp) in [
                    (Keep::Frac(1.0), false, MapKind::Nearest),
                    (Keep::Frac(0.5), false, MapKind::Nearest),
                    (Keep::Frac(1.0), true, MapKind::Nearest),
                    (Keep::Frac(0.5), true, MapKind::Zeros),
                ] {
                    seed += 1;
                    let mut p = problem(name, g.with_batch(batch), keep, seed);
                    p.compact_input = compact_input;
                    p.in_interp = in_interp;
                    let built = p.build();
                    if kern.name == "avx512" {
                        let fast = FastConv::new(&built.layer, kern);
                        if built.layer.mask().len() >= 16 && (batch > 1 || fast.name() != "hwc_conv") {
                            assert_eq!(
                                fast.name(),
                                "pointwise",
                                "{name} batch {batch} {keep:?} {compact_input}"
                            );
                        }
                        check(&p);
                        continue;
                    }
                    let fast = FastConv::pointwise(&built.layer, kern).expect("a 1x1 conv on AVX2 tiles");
                    let mut out = vec![f32::NAN; built.compact_ref.len()];
                    fast.run(built.input.as_slice().unwrap(), &mut out);
                    assert_close(
                        &format!("{} [pointwise on avx2]", p.label()),
                        &out,
                        &built.compact_ref,
                        TOL,
                    );
                }
            }
        }
    }
    if families == 0 {
        eprintln!("skipped: no AVX-512 or AVX2 tiles on this CPU");
    }
}

/// Dense outputs on compact inputs, which the implicit GEMM expands per task (one image, or
/// the images a folded tile block spans) before reading them as a dense input: every map
/// kind, groups, padding and dilation, batches that fold and that do not; the expansion
/// must be what runs.
#[test]
fn compact_inputs_expanded_per_task() {
    let cases = [
        ("12x12", ConvGeometry::new(16, 12, 12, 16, 3, 3).with_padding(1)),
        ("7x7_fold", ConvGeometry::new(8, 7, 7, 24, 3, 3).with_padding(1)),
        ("groups2", ConvGeometry::new(12, 10, 9, 8, 3, 3).with_padding(1).with_groups(2)),
        ("dilated", ConvGeometry::new(6, 11, 11, 10, 3, 3).with_padding(2).with_dilation(2)),
    ];
    let mut seed = 500;
    for (name, g) in cases {
        for batch in [1, 2, 5] {
            for in_interp in [MapKind::Nearest, MapKind::Zeros, MapKind::Barycentric] {
                seed += 1;
                let p = Problem {
                    compact_input: true,
                    in_interp,
                    ..problem(name, g.with_batch(batch), Keep::Frac(1.0), seed)
                };
                let built = p.build();
                for kern in Microkernel::available() {
                    let fast = FastConv::new(&built.layer, kern);
                    if fast.name() == "implicit_gemm" {
                        assert!(format!("{fast:?}").contains("input expanded"), "{}: {fast:?}", p.label());
                    }
                    // A second run on new input must not reuse the first run's expansion.
                    let x = built.input.as_slice().unwrap();
                    let mut out = vec![0.0; built.compact_ref.len()];
                    fast.run(&vec![0.0; x.len()], &mut out);
                    fast.run(x, &mut out);
                    assert_close(&format!("{} second run", p.label()), &out, &built.compact_ref, TOL);
                }
                check(&p);
            }
        }
    }
}

/// The HWC path forced on seeded random geometries (channel counts around its 16-, 24-
/// (AVX2) and 32-wide channel tiles, partial 8-position tiles, groups, stride, padding, dilation,
/// perforated outputs, compact nearest and zeros inputs) against the naive reference, with
/// the channel-last copy and, where no tap reads padding, reading the input as stored.
#[test]
fn hwc_path_on_random_geometries() {
    let mut rng = SeededRng::new(4242);
    let mut pick = |n: usize| usize::try_from(rng.next_u64() % n as u64).expect("below n");
    let (mut ran, mut ran_direct) = (0, 0);
    for seed in 0..50u64 {
        let groups = [1, 1, 1, 2, 3][pick(5)];
        let in_channels = groups * (1 + pick(12));
        let out_channels = groups * [1, 5, 16, 17, 20, 24, 32, 33, 40, 48][pick(10)];
        let (kh, kw) = (1 + pick(3), 1 + pick(3));
        let dilation = 1 + pick(2);
        let (in_h, in_w) = (dilation * (kh - 1) + 1 + pick(12), dilation * (kw - 1) + 1 + pick(12));
        // A third without padding: the direct mode's case.
        let pad = if pick(3) == 0 { [0; 4] } else { [pick(3), pick(3), pick(3), pick(3)] };
        let g = ConvGeometry::new(in_channels, in_h, in_w, out_channels, kh, kw)
            .with_stride(1 + pick(2))
            .with_padding_tlbr(pad[0], pad[1], pad[2], pad[3])
            .with_dilation(dilation)
            .with_groups(groups)
            .with_batch(1 + pick(3));
        if g.validate().is_err() {
            continue;
        }
        let keep = match pick(4) {
            0 => Keep::Frac(1.0),
            _ => Keep::Frac(0.1 + 0.8 * pick(100) as f64 / 100.0),
        };
        let p = Problem {
            name: "hwc",
            geometry: g,
            keep,
            compact_input: pick(2) == 0 && in_h * in_w > 1,
            relu: pick(2) == 0,
            seed: 3000 + seed,
            interp: [MapKind::Nearest, MapKind::Zeros][pick(2)],
            in_interp: [MapKind::Nearest, MapKind::Zeros][pick(2)],
        };
        let built = p.build();
        if FastConv::hwc(&built.layer, false).is_none() {
            eprintln!("skipping the HWC path: not available on this CPU");
            return;
        }
        for direct in [false, true] {
            // Direct (the input as stored) only runs where no tap reads padding.
            let Some(fast) = FastConv::hwc(&built.layer, direct) else { continue };
            let mut out = vec![f32::NAN; built.compact_ref.len()];
            fast.run(built.input.as_slice().unwrap(), &mut out);
            assert_close(&format!("{} [hwc direct={direct}]", p.label()), &out, &built.compact_ref, TOL);
            ran_direct += usize::from(direct);
        }
        ran += 1;
    }
    assert!(
        ran > 30 && ran_direct > 5,
        "only {ran} geometries were valid, {ran_direct} without padding taps"
    );
}

/// Seeded random geometries: a property test over the whole parameter space.
#[test]
fn random_geometries_match_reference() {
    let problems = common::random_problems(2016, 60);
    assert!(problems.len() > 40, "only {} random geometries were valid", problems.len());
    for p in &problems {
        check(p);
    }
}

/// A 2-channel `h` x `w` input through a 3x3 conv to `out_channels` (perforated as given,
/// weights seeded by `case`) and then the pooling `op`, compiled at batch 2; `None` where
/// the geometry does not compile.
fn conv_then_pool(
    (h, w): (usize, usize),
    out_channels: usize,
    perforation: Option<perforate::network::Perforation>,
    op: perforate::network::Op,
    case: u64,
) -> Option<perforate::plan::Plan> {
    use perforate::network::{Conv, InputSpec, Network, Op};
    use perforate::plan::{Plan, PlanOptions};
    let mut net = Network::new("pool", InputSpec { name: "input".into(), channels: 2, height: h, width: w });
    let weights = SeededRng::new(case).vec_f32(out_channels * 2 * 9, -0.5, 0.5);
    let conv = Conv { perforation, ..Conv::new(out_channels, [3, 3], 1, weights, None) };
    net.push("conv", Op::Conv(conv), &["input"]);
    net.then("pool", op);
    Plan::compile(&net, 2, PlanOptions::default()).ok()
}

/// Runs `plan` (from [`conv_then_pool`]) `runs` times on one fast executor against the
/// reference executor's twins, on `data` (2 images of 2 channels of `h` x `w`).
fn check_pooling(
    plan: &perforate::plan::Plan,
    (h, w): (usize, usize),
    data: Vec<f32>,
    runs: usize,
    case: u64,
) {
    use ndarray::{ArrayD, IxDyn};
    use perforate::cpu::CpuExecutor;
    let x = ArrayD::from_shape_vec(IxDyn(&[2, 2, h, w]), data).unwrap();
    let exec = CpuExecutor::new(plan).unwrap();
    let twin = CpuExecutor::reference(plan).unwrap().run(x.view()).unwrap();
    for run in 0..runs {
        let fast = exec.run(x.view()).unwrap();
        let label = format!("case {case} run {run}: {h}x{w} {:?}", plan.steps().last().map(|s| &s.op));
        assert_close(&label, fast.as_slice().unwrap(), &to_f64(twin.as_slice().unwrap()), 1e-5);
    }
}

/// The executor's fast pooling (register rows or separable ones, compact inputs expanded per plane) against the reference executor's `pool2d` twin: seeded random windows, strides, pads,
/// ceil mode, max/average, count_include_pad, on a dense input and on the compact output of
/// a perforated conv (nearest, zeros and barycentric maps).
#[test]
fn random_pooling_matches_the_twin() {
    use perforate::network::{Op, Perforation, Pool};
    use perforate::Interpolation;

    let mut rng = SeededRng::new(77);
    let mut pick = |n: usize| usize::try_from(rng.next_u64() % n as u64).expect("below n");
    let mut checked = 0;
    for case in 0..120u64 {
        // Rows up to 80 wide (output rows of up to five 16-lane chunks on the register
        // path), windows up to 6 wide (6 with stride 3 leaves the register path for the
        // separable one).
        let (h, w) = (1 + pick(24), 1 + pick(80));
        let kernel = [1 + pick(6), 1 + pick(6)];
        let stride = [1 + pick(3), 1 + pick(3)];
        let pads = [pick(kernel[0]), pick(kernel[1]), pick(kernel[0]), pick(kernel[1])];
        let pool = Pool { kernel, stride, pads, ceil_mode: pick(2) == 0, count_include_pad: pick(2) == 0 };
        let op = if pick(2) == 0 { Op::MaxPool(pool) } else { Op::AvgPool(pool) };
        let interpolation =
            [Interpolation::Nearest, Interpolation::Zeros, Interpolation::Barycentric][pick(3)];
        let perforation = match pick(3) {
            0 => None,
            _ => Some(Perforation { interpolation, ..Perforation::uniform(0.4, case) }),
        };
        let Some(plan) = conv_then_pool((h, w), 3, perforation, op, case) else { continue };
        let mut data = SeededRng::new(case + 9).vec_f32(4 * h * w, -1.0, 1.0);
        // A NaN in a third of the cases: max pooling keeps it (the fast path's vector
        // maxima would drop it; planes holding one take the NaN-keeping windows).
        if case % 3 == 1 {
            data[pick(4 * h * w)] = f32::NAN;
        }
        check_pooling(&plan, (h, w), data, 1, case);
        checked += 1;
    }
    assert!(checked > 40, "only {checked} pooling cases compiled");
}

/// Pooling a compact input through the window table (on AVX-512 CPUs regrouped for
/// gathers) over many planes (2 images x 128 channels: many tasks share the map's one
/// table), run twice by the same executor (the second run reads the kept table): random
/// windows that hold no more taps than the plane has positions, max and average, nearest
/// maps of a perforated conv, a NaN in some cases, against the twin.
#[test]
fn many_plane_pooling_through_the_map_matches_the_twin() {
    use perforate::network::{Op, Perforation, Pool};

    let mut rng = SeededRng::new(313);
    let mut pick = |n: usize| usize::try_from(rng.next_u64() % n as u64).expect("below n");
    let mut checked = 0;
    for case in 0..16u64 {
        let (h, w) = (4 + pick(20), 4 + pick(40));
        // Strides at least the window: windows do not overlap (the table's rule).
        let kernel = [1 + pick(3), 1 + pick(3)];
        let stride = [kernel[0] + pick(2), kernel[1] + pick(2)];
        let pads = [pick(kernel[0]), pick(kernel[1]), pick(kernel[0]), pick(kernel[1])];
        let pool = Pool { kernel, stride, pads, ceil_mode: pick(2) == 0, count_include_pad: pick(2) == 0 };
        let op = if case % 2 == 0 { Op::MaxPool(pool) } else { Op::AvgPool(pool) };
        let perforation = Some(Perforation::uniform(0.3 + 0.4 * pick(10) as f64 / 10.0, case));
        let Some(plan) = conv_then_pool((h, w), 128, perforation, op, case) else { continue };
        let mut data = SeededRng::new(case + 5).vec_f32(4 * h * w, -1.0, 1.0);
        if case % 4 == 2 {
            data[pick(4 * h * w)] = f32::NAN;
        }
        check_pooling(&plan, (h, w), data, 2, case);
        checked += 1;
    }
    assert!(checked > 10, "only {checked} pooling cases compiled");
}

/// Stride-2 windows 2 and 3 wide over even-width planes without left padding (the flat
/// AVX2 kernel's geometry: each plane's rows read as one array), against the twin: widths
/// 2 to 64, heights 1 to 20, top, bottom and right padding, floor and ceil, max and
/// average, dense and compact inputs, a NaN in some planes, and several planes per run.
#[test]
fn narrow_stride2_pooling_matches_the_twin() {
    use ndarray::{ArrayD, IxDyn};
    use perforate::cpu::CpuExecutor;
    use perforate::network::{Conv, InputSpec, Network, Op, Perforation, Pool};
    use perforate::plan::{Plan, PlanOptions};

    let mut rng = SeededRng::new(91);
    let mut pick = |n: usize| usize::try_from(rng.next_u64() % n as u64).expect("below n");
    let mut checked = 0;
    for case in 0..90u64 {
        let (h, w) = (1 + pick(20), 2 * (1 + pick(32)));
        let kw = 2 + pick(2);
        let kh = 1 + pick(3);
        let pads = [pick(kh), 0, pick(kh), pick(kw)];
        let pool = Pool {
            kernel: [kh, kw],
            stride: [1 + pick(2), 2],
            pads,
            ceil_mode: pick(2) == 0,
            count_include_pad: pick(2) == 0,
        };
        let op = if pick(2) == 0 { Op::MaxPool(pool) } else { Op::AvgPool(pool) };
        let mut net =
            Network::new("pool", InputSpec { name: "input".into(), channels: 2, height: h, width: w });
        if pick(3) == 0 {
            // A compact input: the plane is expanded, then pooled as a dense one.
            let weights = SeededRng::new(case).vec_f32(3 * 2 * 9, -0.5, 0.5);
            let perforation = Some(Perforation::uniform(0.5, case));
            net.push(
                "conv",
                Op::Conv(Conv { perforation, ..Conv::new(3, [3, 3], 1, weights, None) }),
                &["input"],
            );
            net.then("pool", op);
        } else {
            net.push("pool", op, &["input"]);
        }
        let Ok(plan) = Plan::compile(&net, 3, PlanOptions::default()) else { continue };
        let mut data = SeededRng::new(case + 5).vec_f32(6 * h * w, -1.0, 1.0);
        if case % 4 == 1 {
            data[pick(6 * h * w)] = f32::NAN;
        }
        let x = ArrayD::from_shape_vec(IxDyn(&[3, 2, h, w]), data).unwrap();
        let fast = CpuExecutor::new(&plan).unwrap().run(x.view()).unwrap();
        let twin = CpuExecutor::reference(&plan).unwrap().run(x.view()).unwrap();
        let label = format!("case {case}: {h}x{w} {:?}", plan.steps().last().map(|s| &s.op));
        assert_close(&label, fast.as_slice().unwrap(), &to_f64(twin.as_slice().unwrap()), 1e-5);
        checked += 1;
    }
    assert!(checked > 60, "only {checked} pooling cases compiled");
}

/// A NaN at every column in turn under 3x3 stride-2 windows (the separable kernels' shared
/// loads check a pair of loads at a time for NaN): max pooling keeps it wherever a window
/// covers it, on rows ending inside and past a vector, with and without padding.
#[test]
fn pooling_keeps_a_nan_in_every_column() {
    use ndarray::{ArrayD, IxDyn};
    use perforate::cpu::CpuExecutor;
    use perforate::network::{InputSpec, Network, Op, Pool};
    use perforate::plan::{Plan, PlanOptions};

    for w in [9usize, 14, 17, 28, 33, 35, 50] {
        for pad in [0usize, 1] {
            let pool = Pool {
                kernel: [3, 3],
                stride: [2, 2],
                pads: [pad; 4],
                ceil_mode: false,
                count_include_pad: false,
            };
            let mut net =
                Network::new("pool", InputSpec { name: "input".into(), channels: 1, height: 3, width: w });
            net.push("pool", Op::MaxPool(pool), &["input"]);
            let plan = Plan::compile(&net, 1, PlanOptions::default()).unwrap();
            let (fast, twin) = (CpuExecutor::new(&plan).unwrap(), CpuExecutor::reference(&plan).unwrap());
            for j in 0..w {
                let mut data = SeededRng::new(j as u64).vec_f32(3 * w, -1.0, 1.0);
                data[w + j] = f32::NAN;
                let x = ArrayD::from_shape_vec(IxDyn(&[1, 1, 3, w]), data).unwrap();
                let (a, b) = (fast.run(x.view()).unwrap(), twin.run(x.view()).unwrap());
                assert!(
                    b.iter().any(|v| v.is_nan()) || pad == 0 && j + 1 == w,
                    "the twin drops the NaN at {j}"
                );
                assert_close(
                    &format!("width {w}, pad {pad}, NaN at column {j}"),
                    a.as_slice().unwrap(),
                    &to_f64(b.as_slice().unwrap()),
                    1e-6,
                );
            }
        }
    }
}

/// Global pooling (one window over the whole unpadded plane), which the fast path reduces
/// directly: max and average, dense and through every map kind, planes shorter and longer
/// than a vector, against the twin.
#[test]
fn global_pooling_matches_the_twin() {
    use ndarray::{ArrayD, IxDyn};
    use perforate::cpu::CpuExecutor;
    use perforate::network::{Conv, InputSpec, Network, Op, Perforation, Pool};
    use perforate::plan::{Plan, PlanOptions};
    use perforate::Interpolation;

    let kinds =
        [None, Some(Interpolation::Nearest), Some(Interpolation::Zeros), Some(Interpolation::Barycentric)];
    for (case, &(h, w)) in [(1usize, 1usize), (3, 5), (7, 7), (9, 13), (2, 33)].iter().enumerate() {
        for (k, interp) in kinds.iter().enumerate() {
            for max in [false, true] {
                let pool = Pool {
                    kernel: [h, w],
                    stride: [1, 1],
                    pads: [0; 4],
                    ceil_mode: false,
                    count_include_pad: false,
                };
                let op = if max { Op::MaxPool(pool) } else { Op::AvgPool(pool) };
                let perforation = interp.map(|interpolation| Perforation {
                    interpolation,
                    ..Perforation::uniform(0.5, case as u64)
                });
                let mut net = Network::new(
                    "global",
                    InputSpec { name: "input".into(), channels: 2, height: h, width: w },
                );
                let weights = SeededRng::new(case as u64).vec_f32(5 * 2 * 9, -0.5, 0.5);
                let conv = Conv { perforation, ..Conv::new(5, [3, 3], 1, weights, None) };
                net.push("conv", Op::Conv(conv), &["input"]);
                net.then("pool", op);
                let Ok(plan) = Plan::compile(&net, 3, PlanOptions::default()) else {
                    assert!(interp.is_some() && h * w < 4, "{h}x{w} dense must compile");
                    continue;
                };
                let mut data = SeededRng::new(case as u64 + 5).vec_f32(6 * h * w, -1.0, 1.0);
                // A NaN in image 1 (images 0 and 2 stay finite): max keeps it.
                data[2 * h * w + (case * 7) % (2 * h * w)] = f32::NAN;
                let x = ArrayD::from_shape_vec(IxDyn(&[3, 2, h, w]), data).unwrap();
                let fast = CpuExecutor::new(&plan).unwrap().run(x.view()).unwrap();
                let twin = CpuExecutor::reference(&plan).unwrap().run(x.view()).unwrap();
                assert_eq!(fast.shape(), &[3, 5, 1, 1]);
                let label = format!("{h}x{w} map {k} max {max}");
                assert_close(&label, fast.as_slice().unwrap(), &to_f64(twin.as_slice().unwrap()), 1e-5);
            }
        }
    }
}
