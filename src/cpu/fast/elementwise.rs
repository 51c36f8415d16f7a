//! Element-wise steps on the fast path: the `gather_interp` twin's arithmetic with AVX-512
//! gathers for nearest maps, and the `unary` and `binary` twins with the function chosen
//! once per call (so the loops vectorise) and a polynomial exponential.

use rayon::prelude::*;

use crate::cpu::{read_mapped, MIN_PARALLEL_ELEMENTS};
use crate::interp::ZERO_TAP;
use crate::network::{Binary, Unary};
use crate::params::{BinaryParams, GatherInterpParams, UnaryParams};

/// The `gather_interp` twin: compact planes to dense through the map, plus the addend of a
/// residual Add (`addend` may be empty when `p.residual` is 0), then the ReLU.
pub(crate) fn gather_fast(
    p: &GatherInterpParams,
    input: &[f32],
    map: &[u32],
    addend: &[f32],
    dense: &mut [f32],
) {
    let (n_pos, plane, planes) = (p.n_pos as usize, p.plane as usize, p.planes as usize);
    let words = if p.map_kind == 3 { 6 } else { 1 };
    assert!(dense.len() >= plane * planes && input.len() >= n_pos * planes && map.len() >= plane * words);
    let (relu, residual, in_place) = (p.relu != 0, p.residual == 1, p.residual == 2);
    assert!(!residual || addend.len() >= plane * planes, "gather_interp addend shorter than the output");
    let nearest = NearestMap::of(p.map_kind, map, plane);
    dense[..plane * planes]
        .par_chunks_mut(plane)
        .enumerate()
        .zip(input.par_chunks(n_pos))
        .with_min_len(MIN_PARALLEL_ELEMENTS.div_ceil(plane))
        .for_each(|((t, dst), src)| {
            let add = if residual { &addend[t * plane..(t + 1) * plane] } else { &[][..] };
            gather_plane(p.map_kind, map, nearest, src, add, in_place, relu, dst);
        });
}

/// Two `gather_interp` steps in one pass, plane by plane: `first` (no addend, no ReLU)
/// writes `dense`, then `second` adds its own compact input into it in place (`residual`
/// 2) and applies its ReLU, while the plane is still in cache. This is the residual Add of
/// two compact operands with different maps, which the plan lowers to that pair of steps
/// (the CPU executor fuses them, see `CpuExecutor`); the result is the pair's.
pub(crate) fn gather_pair_fast(
    first: (&GatherInterpParams, &[f32], &[u32]),
    second: (&GatherInterpParams, &[f32], &[u32]),
    dense: &mut [f32],
) {
    let ((p1, x1, m1), (p2, x2, m2)) = (first, second);
    let (plane, planes) = (p1.plane as usize, p1.planes as usize);
    assert!(
        gathers_pair(p1, p2),
        "gather pair: the first gather plain, the second in place on the same shape"
    );
    let words = |p: &GatherInterpParams| if p.map_kind == 3 { 6 } else { 1 };
    let (n1, n2) = (p1.n_pos as usize, p2.n_pos as usize);
    assert!(dense.len() >= plane * planes && x1.len() >= n1 * planes && x2.len() >= n2 * planes);
    assert!(m1.len() >= plane * words(p1) && m2.len() >= plane * words(p2));
    let (near1, near2) = (NearestMap::of(p1.map_kind, m1, plane), NearestMap::of(p2.map_kind, m2, plane));
    dense[..plane * planes]
        .par_chunks_mut(plane)
        .zip(x1.par_chunks(n1).zip(x2.par_chunks(n2)))
        .with_min_len(MIN_PARALLEL_ELEMENTS.div_ceil(plane))
        .for_each(|(dst, (a, b))| {
            if let (Some(n1), Some(n2)) = (near1, near2) {
                gather_nearest_pair(dst, (a, n1), (b, n2), p2.relu != 0);
            } else {
                gather_plane(p1.map_kind, m1, near1, a, &[], false, false, dst);
                gather_plane(p2.map_kind, m2, near2, b, &[], true, p2.relu != 0, dst);
            }
        });
}

/// Whether two `gather_interp` steps form a pair [`gather_pair_fast`] runs as one: the first
/// plain (no addend, no ReLU), the second adding in place (`residual` 2) on the same shape.
/// (Whether the second runs in place on the first's output is the plan's to say.)
pub(crate) fn gathers_pair(first: &GatherInterpParams, second: &GatherInterpParams) -> bool {
    first.residual == 0
        && first.relu == 0
        && second.residual == 2
        && (first.plane, first.planes) == (second.plane, second.planes)
}

/// One plane of `gather_interp`: `dst[s] = act(src through the map at s + addend)`, the
/// addend `add[s]` when given, else `dst[s]` itself when `in_place`, else none. A nearest
/// map comes checked (`nearest`, built once per call for every plane).
#[allow(clippy::too_many_arguments)]
fn gather_plane(
    kind: u32,
    map: &[u32],
    nearest: Option<NearestMap<'_>>,
    src: &[f32],
    add: &[f32],
    in_place: bool,
    relu: bool,
    dst: &mut [f32],
) {
    if let Some(m) = nearest {
        gather_nearest(dst, src, m, add, in_place, relu);
        return;
    }
    for (s, d) in dst.iter_mut().enumerate() {
        let mut v = read_mapped(kind, map, src, s);
        if let Some(a) = add.get(s) {
            v += a;
        } else if in_place {
            v += *d;
        }
        *d = if relu { crate::cpu::nan::relu_keep_nan(v) } else { v };
    }
}

/// A compact input's map (a [`crate::MapKind::code`] and its table over `plane` dense
/// positions), prepared once for the plane-by-plane expansions through it: a nearest map's
/// bound is found here, not again for every plane.
#[derive(Clone, Copy)]
pub(crate) struct Expansion<'a> {
    kind: u32,
    table: &'a [u32],
    nearest: Option<NearestMap<'a>>,
}

impl<'a> Expansion<'a> {
    /// The expansion through `table` (kind `kind`) onto planes of `plane` positions.
    pub(crate) fn new(kind: u32, table: &'a [u32], plane: usize) -> Self {
        Expansion { kind, table, nearest: NearestMap::of(kind, table, plane) }
    }

    /// One compact plane `src` into the dense plane `dense`: the `gather_interp` twin's
    /// values, with the hardware gather for nearest maps where the CPU has one.
    pub(crate) fn expand(&self, src: &[f32], dense: &mut [f32]) {
        match (self.kind, self.nearest) {
            (_, Some(m)) => gather_nearest(dense, src, m, &[], false, false),
            (2, _) => gather_or_zero(src, src.len(), &self.table[..dense.len()], dense),
            (kind, _) => {
                for (s, d) in dense.iter_mut().enumerate() {
                    *d = read_mapped(kind, self.table, src, s);
                }
            }
        }
    }
}

/// `b[p·w + j] = x[p·in_plane + src[j]]`, 0 where `src[j]` is [`ZERO_TAP`], for the
/// `p < b.len() / w` planes of `x` and the `w = src.len()` positions `src` names: a zeros
/// map's expansion (one plane), and the pointwise path's gathered columns (a task's columns
/// of every input channel). One hardware gather per 16 positions and plane.
pub(crate) fn gather_or_zero(x: &[f32], in_plane: usize, src: &[u32], b: &mut [f32]) {
    let w = src.len();
    if w == 0 {
        return;
    }
    assert!(src.iter().all(|&i| i == ZERO_TAP || (i as usize) < in_plane), "map index outside its plane");
    assert!(b.len().is_multiple_of(w) && x.len() >= b.len() / w * in_plane);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && in_plane * (b.len() / w) < i32::MAX as usize {
        // SAFETY: the feature was detected; every index is ZERO_TAP or inside a plane, and
        // every plane offset fits the gather's i32 (checked above).
        return unsafe { gather_or_zero_avx512(x, in_plane, src, b) };
    }
    for (p, row) in b.chunks_exact_mut(w).enumerate() {
        for (d, &i) in row.iter_mut().zip(src) {
            *d = if i == ZERO_TAP { 0.0 } else { x[p * in_plane + i as usize] };
        }
    }
}

/// [`gather_or_zero`] with one hardware gather per 16 positions of a plane.
///
/// # Safety
/// AVX-512F is available; `gather_or_zero`'s checks hold.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_or_zero_avx512(x: &[f32], in_plane: usize, src: &[u32], b: &mut [f32]) {
    use std::arch::x86_64::*;
    let w = src.len();
    for j0 in (0..w).step_by(16) {
        let lanes = crate::cpu::gemm::lane_mask(w - j0);
        // SAFETY: lanes under `lanes` read src[j0..]; lanes whose index is ZERO_TAP are
        // masked out of the gather and read nothing; the others read inside plane p; the
        // stores write b[p·w + j0..] under `lanes`.
        unsafe {
            let idx = _mm512_maskz_loadu_epi32(lanes, src.as_ptr().add(j0).cast());
            #[allow(clippy::cast_possible_wrap)]
            let keep = lanes & _mm512_cmpneq_epi32_mask(idx, _mm512_set1_epi32(ZERO_TAP as i32));
            for (p, row) in b.chunks_exact_mut(w).enumerate() {
                let plane = x.as_ptr().add(p * in_plane);
                let v = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), keep, idx, plane.cast());
                _mm512_mask_storeu_ps(row.as_mut_ptr().add(j0), lanes, v);
            }
        }
    }
}

/// `dst[i] = act(src[map[i]] + add[i])` (a nearest map: every index is inside `src`; `add`
/// is empty or as long as `dst`; with `in_place`, the addend is `dst[i]` itself; `act` a
/// ReLU when `relu`).
fn gather_nearest(
    dst: &mut [f32],
    src: &[f32],
    map: NearestMap<'_>,
    add: &[f32],
    in_place: bool,
    relu: bool,
) {
    assert!(map.fits(src), "nearest map index outside the compact plane");
    let n = dst.len().min(map.table.len());
    let (map, dst) = (&map.table[..n], &mut dst[..n]);
    assert!(add.is_empty() || add.len() >= n, "addend shorter than the plane");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && src.len() < i32::MAX as usize {
        // SAFETY: the feature was detected and every index was checked against `src`.
        return unsafe { gather_nearest_avx512(dst, src, map, add, in_place, relu) };
    }
    // SAFETY: every index was checked against `src`; `add` is empty or covers `dst`.
    unsafe { gather_nearest_scalar(dst, src, map, add, in_place, relu) };
}

/// A nearest map's table with the bound of its indices found once: a gather through it
/// checks one length per plane instead of the whole table again.
#[derive(Clone, Copy)]
struct NearestMap<'a> {
    table: &'a [u32],
    /// One past the largest index (0 for an empty table).
    bound: usize,
}

impl<'a> NearestMap<'a> {
    /// `table` and its bound: a max reduction (vectorised), not a short-circuiting scan.
    fn new(table: &'a [u32]) -> Self {
        let bound = table.iter().fold(None, |m: Option<u32>, &i| Some(m.map_or(i, |m| m.max(i))));
        NearestMap { table, bound: bound.map_or(0, |b| b as usize + 1) }
    }

    /// The checked table of a map of kind `kind` over `plane` positions, for nearest maps.
    fn of(kind: u32, table: &'a [u32], plane: usize) -> Option<Self> {
        (kind == 1).then(|| NearestMap::new(&table[..plane]))
    }

    /// Whether every index lies inside `src`.
    fn fits(self, src: &[f32]) -> bool {
        self.bound <= src.len()
    }
}

/// The residual Add of two compact operands through nearest maps, in one pass:
/// `dst[i] = act(b[mb[i]] + a[ma[i]])` (the [`gather_pair_fast`] pair's value: the second
/// operand added to the first). The maps are as long as `dst`.
fn gather_nearest_pair(
    dst: &mut [f32],
    (a, ma): (&[f32], NearestMap<'_>),
    (b, mb): (&[f32], NearestMap<'_>),
    relu: bool,
) {
    let n = dst.len();
    assert!(ma.fits(a) && mb.fits(b), "nearest map index outside the compact plane");
    let (ma, mb) = (ma.table, mb.table);
    assert!(ma.len() == n && mb.len() == n, "gather pair maps differ from the plane");
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") && a.len().max(b.len()) < i32::MAX as usize {
        // SAFETY: the feature was detected and every index was checked against its operand.
        return unsafe { gather_nearest_pair_avx512(dst, (a, ma), (b, mb), relu) };
    }
    let out = |v: f32| if relu { crate::cpu::nan::relu_keep_nan(v) } else { v };
    for i in 0..n {
        // SAFETY: i < n, the length of dst and both maps; every index was checked against
        // its operand. (Unchecked: bounds checks made this scalar gather 1.5x slower.)
        unsafe {
            let (x, y) = (
                *a.get_unchecked(*ma.get_unchecked(i) as usize),
                *b.get_unchecked(*mb.get_unchecked(i) as usize),
            );
            *dst.get_unchecked_mut(i) = out(y + x);
        }
    }
}

/// [`gather_nearest_pair`] with one hardware gather per operand and 16 positions.
///
/// # Safety
/// The CPU has AVX-512F; the maps are as long as `dst` and every entry indexes its
/// operand, which is shorter than 2^31.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_nearest_pair_avx512(
    dst: &mut [f32],
    (a, ma): (&[f32], &[u32]),
    (b, mb): (&[f32], &[u32]),
    relu: bool,
) {
    use std::arch::x86_64::*;
    let n = dst.len();
    let mut i = 0;
    while i < n {
        let lanes = crate::cpu::gemm::lane_mask(n - i);
        // SAFETY: lanes under `lanes` read the maps and write dst at i..n; masked-out lanes
        // read nothing; every index is inside its operand.
        unsafe {
            let ia = _mm512_maskz_loadu_epi32(lanes, ma.as_ptr().add(i).cast());
            let ib = _mm512_maskz_loadu_epi32(lanes, mb.as_ptr().add(i).cast());
            let zero = _mm512_setzero_ps();
            let x = _mm512_mask_i32gather_ps::<4>(zero, lanes, ia, a.as_ptr().cast());
            let y = _mm512_mask_i32gather_ps::<4>(zero, lanes, ib, b.as_ptr().cast());
            let mut v = _mm512_add_ps(y, x);
            if relu {
                // max_ps(0, v) returns v when v is NaN, as the twin's relu_keep_nan.
                v = _mm512_max_ps(zero, v);
            }
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(i), lanes, v);
        }
        i += 16;
    }
}

/// The scalar [`gather_nearest`] (CPUs without AVX-512: the AVX2 hardware gather measured
/// slower than scalar loads on an AMD EPYC), one loop per form, no per-element branch on it.
///
/// # Safety
/// `map` is as long as `dst` and every entry indexes `src`; `add` is empty or at least as
/// long as `dst`.
#[inline(always)]
unsafe fn gather_nearest_scalar(
    dst: &mut [f32],
    src: &[f32],
    map: &[u32],
    add: &[f32],
    in_place: bool,
    relu: bool,
) {
    let out = |v: f32| if relu { crate::cpu::nan::relu_keep_nan(v) } else { v };
    let n = dst.len();
    debug_assert!(map.len() == n && (add.is_empty() || add.len() >= n));
    // SAFETY (each loop): i < n, the length of dst, map and (when used) add; every index
    // is inside src. (Unchecked: bounds checks made these loops 1.5x slower.)
    let at = |i: usize| unsafe { *src.get_unchecked(*map.get_unchecked(i) as usize) };
    if !add.is_empty() {
        for i in 0..n {
            unsafe { *dst.get_unchecked_mut(i) = out(at(i) + *add.get_unchecked(i)) };
        }
    } else if in_place {
        for i in 0..n {
            unsafe { *dst.get_unchecked_mut(i) = out(at(i) + *dst.get_unchecked(i)) };
        }
    } else {
        for i in 0..n {
            unsafe { *dst.get_unchecked_mut(i) = out(at(i)) };
        }
    }
}

/// # Safety
/// The CPU has AVX-512F; `map` is as long as `dst` and every entry indexes `src`, which is
/// shorter than 2^31; `add` is empty or at least as long as `dst`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_nearest_avx512(
    dst: &mut [f32],
    src: &[f32],
    map: &[u32],
    add: &[f32],
    in_place: bool,
    relu: bool,
) {
    use std::arch::x86_64::*;
    let n = dst.len().min(map.len());
    let residual = !add.is_empty();
    assert!(!residual || add.len() >= n, "addend shorter than the plane");
    let zero = _mm512_setzero_ps();
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: 16 indices, addends and outputs at i are in bounds; every index is inside
        // src.
        unsafe {
            let idx = _mm512_loadu_si512(map.as_ptr().add(i).cast());
            let mut v = _mm512_i32gather_ps::<4>(idx, src.as_ptr());
            if residual {
                v = _mm512_add_ps(v, _mm512_loadu_ps(add.as_ptr().add(i)));
            } else if in_place {
                v = _mm512_add_ps(v, _mm512_loadu_ps(dst.as_ptr().add(i)));
            }
            if relu {
                // max_ps(0, v) returns v when v is NaN, as the twin's relu_keep_nan.
                v = _mm512_max_ps(zero, v);
            }
            _mm512_storeu_ps(dst.as_mut_ptr().add(i), v);
        }
        i += 16;
    }
    let add = if residual { &add[i..n] } else { &[][..] };
    // SAFETY: the tail's map, addend and outputs are equally long; indices inside src.
    unsafe { gather_nearest_scalar(&mut dst[i..n], src, &map[i..n], add, in_place, relu) };
}

/// e^x to about 2 ulp for x in [−87, 88]: Cody–Waite reduction x = n·ln 2 + r,
/// |r| ≤ ln 2 / 2, a degree-7 Taylor polynomial for e^r and 2^n from the exponent bits.
/// Past the f32 range it is +inf above ln(f32::MAX) and 0 below −104 (e^−87 between −104
/// and −87, where the exact value is subnormal); NaN stays NaN. Branch-free (selects),
/// so loops over it vectorise.
#[inline(always)]
fn exp_approx(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x_in = x;
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // t's low mantissa bits hold n + 2^22; n + 127 is the biased exponent of 2^n.
    let biased = t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127) << 23;
    let e = p * f32::from_bits(biased);
    let e = if x_in > 88.722_84 { f32::INFINITY } else { e };
    if x_in < -104.0 {
        0.0
    } else {
        e
    }
}

/// `v = min(v, cap)` for every element (the cap of a fused ReLU6-style activation), in
/// chunks the compiler vectorises.
pub(crate) fn cap_in_place(values: &mut [f32], cap: f32) {
    const CHUNK: usize = 4096;
    values
        .par_chunks_mut(CHUNK)
        .with_min_len(MIN_PARALLEL_ELEMENTS / CHUNK)
        .for_each(|c| c.iter_mut().for_each(|v| *v = crate::cpu::nan::cap_keep_nan(*v, cap)));
}

/// Applies `f` to every element, in chunks the compiler vectorises (`f` is inlined).
fn map_elements(input: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    const CHUNK: usize = 4096;
    out.par_chunks_mut(CHUNK)
        .zip(input.par_chunks(CHUNK))
        .with_min_len(MIN_PARALLEL_ELEMENTS / CHUNK)
        .for_each(|(o, i)| o.iter_mut().zip(i).for_each(|(o, &x)| *o = f(x)));
}

/// The `unary` twin with the function chosen once per call, and the exponential of the
/// logistic functions computed by [`exp_approx`].
pub(crate) fn unary_fast(p: &UnaryParams, input: &[f32], out: &mut [f32]) {
    let n = p.len as usize;
    let (input, out) = (&input[..n], &mut out[..n]);
    match Unary::from_code(p.op, p.alpha, p.beta) {
        Unary::Sigmoid => map_elements(input, out, |x| 1.0 / (1.0 + exp_approx(-x))),
        Unary::Silu => map_elements(input, out, |x| x / (1.0 + exp_approx(-x))),
        Unary::Exp => map_elements(input, out, exp_approx),
        Unary::HardSwish => map_elements(input, out, |x| x * (x / 6.0 + 0.5).clamp(0.0, 1.0)),
        Unary::HardSigmoid { alpha, beta } => {
            map_elements(input, out, |x| (alpha * x + beta).clamp(0.0, 1.0))
        }
        Unary::Neg => map_elements(input, out, |x| -x),
        Unary::Abs => map_elements(input, out, f32::abs),
        Unary::LeakyRelu { alpha } => map_elements(input, out, |x| if x >= 0.0 { x } else { alpha * x }),
        f => map_elements(input, out, |x| f.apply(x)),
    }
}

/// The `binary` twin with the function chosen once per call and whole planes per step.
pub(crate) fn binary_fast(p: &BinaryParams, a: &[f32], b: &[f32], out: &mut [f32]) {
    match Binary::from_code(p.op) {
        Binary::Add => binary_with(p, a, b, out, |x, y| x + y),
        Binary::Sub => binary_with(p, a, b, out, |x, y| x - y),
        Binary::Mul => binary_with(p, a, b, out, |x, y| x * y),
        Binary::Div => binary_with(p, a, b, out, |x, y| x / y),
        Binary::Max => binary_with(p, a, b, out, crate::cpu::nan::max_keep_nan),
        Binary::Min => binary_with(p, a, b, out, crate::cpu::nan::min_keep_nan),
    }
}

fn binary_with(
    p: &BinaryParams,
    a: &[f32],
    b: &[f32],
    out: &mut [f32],
    f: impl Fn(f32, f32) -> f32 + Sync + Copy,
) {
    let n = p.len as usize;
    let plane = (p.plane as usize).max(1);
    let channels = (p.channels as usize).max(1);
    // Rows: one plane (per channel of an image) for the broadcast modes, chunks otherwise.
    let row = if p.broadcast == 0 { 4096 } else { plane };
    out[..n].par_chunks_mut(row).enumerate().with_min_len(MIN_PARALLEL_ELEMENTS / row + 1).for_each(
        |(k, o)| {
            let start = k * row;
            let len = o.len();
            match p.broadcast {
                1 => {
                    let y = b[k];
                    o.iter_mut().zip(&a[start..start + len]).for_each(|(o, &x)| *o = f(x, y));
                }
                2 => {
                    let x = a[k];
                    o.iter_mut().zip(&b[start..start + len]).for_each(|(o, &y)| *o = f(x, y));
                }
                3 => {
                    let at = (k / channels) * plane;
                    let per = &b[at..at + plane];
                    o.iter_mut().zip(&a[start..start + len]).zip(per).for_each(|((o, &x), &y)| *o = f(x, y));
                }
                4 => {
                    let at = (k / channels) * plane;
                    let per = &a[at..at + plane];
                    o.iter_mut().zip(&b[start..start + len]).zip(per).for_each(|((o, &y), &x)| *o = f(x, y));
                }
                _ => {
                    let (x, y) = (&a[start..start + len], &b[start..start + len]);
                    o.iter_mut().zip(x.iter().zip(y)).for_each(|(o, (&x, &y))| *o = f(x, y));
                }
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::exp_approx;

    #[test]
    fn exp_approx_is_within_a_few_ulp() {
        let mut worst = 0.0f64;
        for k in -8699..8799 {
            let x = k as f32 * 0.01 + 0.003;
            let want = f64::from(x).exp();
            let err = (f64::from(exp_approx(x)) - want).abs() / want;
            worst = worst.max(err);
        }
        assert!(worst < 5e-7, "worst relative error {worst:e}");
        // Past the range: overflow to inf, underflow to 0, NaN kept (as f32::exp).
        assert_eq!(exp_approx(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_approx(89.0), f32::INFINITY);
        assert_eq!(exp_approx(f32::NEG_INFINITY), 0.0);
        assert!(exp_approx(f32::NAN).is_nan());
    }
}
