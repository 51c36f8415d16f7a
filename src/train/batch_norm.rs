//! BatchNorm forward and backward on dense NCHW tensors, frozen (running statistics) or
//! training (batch statistics), with the ReLU that follows fused into both directions:
//! the forward applies it in its output pass, and the backward recomputes where it cut
//! (from the input and the statistics, exactly as the forward computed the output)
//! instead of a separate masking pass over the gradient. The backward also sums the
//! gradient's parts (one per reader of the output) as it reads them.

use rayon::prelude::*;

use super::buffers;
use crate::network::BatchNorm;

/// Batch normalisation statistics of a training-mode forward.
#[derive(Clone, Debug)]
pub(crate) struct BnBatch {
    /// Per-channel batch mean.
    pub mean: Vec<f32>,
    /// Per-channel biased batch variance.
    pub var: Vec<f32>,
    /// Per-channel `1 / sqrt(var + ε)`: the backward recomputes x̂ = (x − mean)·inv from
    /// the input rather than keeping it (one write and a buffer less per layer).
    pub inv: Vec<f32>,
}

/// `f(channel, plane_in, plane_out)` over every `[plane]`-long channel plane of a
/// `[B, C, plane]` tensor, in parallel.
fn per_plane(
    x: &[f32],
    out: &mut [f32],
    channels: usize,
    plane: usize,
    f: impl Fn(usize, &[f32], &mut [f32]) + Sync,
) {
    out.par_chunks_mut(plane.max(1))
        .zip(x.par_chunks(plane.max(1)))
        .enumerate()
        .with_min_len((1 << 14) / plane.max(1) + 1)
        .for_each(|(j, (o, v))| f(j % channels, v, o));
}

/// Per channel `c`, the sums over images of `f(c, start)`, where `f` reduces the plane
/// of channel `c` starting at `start` in the `[B, C, plane]` tensor (in f32 partial sums;
/// the planes' results are accumulated in f64). In parallel over blocks of whole images,
/// each read front to back (one stream, not one 3 KB run per image and channel); the
/// blocks depend on the shape only and are summed in order, so the result does not
/// depend on the threads.
fn channel_sums<const K: usize>(
    len: usize,
    channels: usize,
    plane: usize,
    f: impl Fn(usize, usize) -> [f32; K] + Sync,
) -> Vec<[f64; K]> {
    let image = (channels * plane).max(1);
    let images = len / image;
    // About 256 KB of each tensor per block, and at least 16 blocks where there are 16
    // images (whole blocks per thread on 2, 4, 8 or 16 threads: 13 blocks left one of
    // two threads idle for a block's time).
    let block = ((1 << 16) / image).min(images.div_ceil(16)).max(1);
    let partial: Vec<Vec<[f64; K]>> = (0..images.div_ceil(block))
        .into_par_iter()
        .map(|b| {
            let mut acc = vec![[0.0f64; K]; channels];
            for n in b * block..((b + 1) * block).min(images) {
                for (c, a) in acc.iter_mut().enumerate() {
                    let v = f(c, (n * channels + c) * plane);
                    for k in 0..K {
                        a[k] += f64::from(v[k]);
                    }
                }
            }
            acc
        })
        .collect();
    let mut sums = vec![[0.0f64; K]; channels];
    for p in partial {
        for (s, v) in sums.iter_mut().zip(p) {
            for k in 0..K {
                s[k] += v[k];
            }
        }
    }
    sums
}

/// `(Σ a·(b − m), Σ a)` in 16 partial sums (vectorisable).
fn dot_and_sum(a: &[f32], b: &[f32], m: f32) -> [f32; 2] {
    let (mut d, mut s) = ([0.0f32; 16], [0.0f32; 16]);
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .fold([0.0f32; 2], |[d, s], (x, y)| [d + x * (y - m), s + x]);
    for (x, y) in ca.zip(cb) {
        for l in 0..16 {
            d[l] += x[l] * (y[l] - m);
            s[l] += x[l];
        }
    }
    [d.iter().sum::<f32>() + tail[0], s.iter().sum::<f32>() + tail[1]]
}

/// `(Σ (x − m), Σ (x − m)²)` in 16 partial sums: shifted by an estimate `m` of the mean
/// so that the variance does not cancel.
fn shifted_moments(x: &[f32], m: f32) -> [f32; 2] {
    let (mut s, mut q) = ([0.0f32; 16], [0.0f32; 16]);
    let cx = x.chunks_exact(16);
    let tail = cx.remainder().iter().fold([0.0f32; 2], |[s, q], v| [s + (v - m), q + (v - m) * (v - m)]);
    for v in cx {
        for l in 0..16 {
            let d = v[l] - m;
            s[l] += d;
            q[l] += d * d;
        }
    }
    [s.iter().sum::<f32>() + tail[0], q.iter().sum::<f32>() + tail[1]]
}

/// Where a BatchNorm's per-channel output function ([`Cut`]) comes from.
enum Output<'a> {
    /// Running statistics, folded per channel into `a·v + b`.
    Frozen { a: Vec<f32>, b: Vec<f32> },
    /// Batch statistics.
    Batch { bn: &'a BatchNorm, batch: &'a BnBatch },
}

impl<'a> Output<'a> {
    /// Running statistics when `batch` is `None`, else the batch's.
    fn of(bn: &'a BatchNorm, batch: Option<&'a BnBatch>) -> Self {
        match batch {
            Some(batch) => Output::Batch { bn, batch },
            None => {
                let (a, b) = bn.affine();
                Output::Frozen { a, b }
            }
        }
    }

    /// Channel `c`'s output function.
    #[inline]
    fn channel(&self, c: usize) -> Cut {
        match self {
            Output::Frozen { a, b } => Cut::Frozen { a: a[c], b: b[c] },
            Output::Batch { bn, batch } => {
                Cut::Batch { m: batch.mean[c], k: batch.inv[c], a: bn.scale[c], b: bn.shift[c] }
            }
        }
    }
}

/// BatchNorm forward: frozen (running statistics) or training (batch statistics),
/// through the ReLU that follows when `relu`.
pub(crate) fn bn_forward(
    x: &[f32],
    channels: usize,
    plane: usize,
    bn: &BatchNorm,
    train: bool,
    relu: bool,
) -> (Vec<f32>, Option<BnBatch>) {
    let mut y = buffers::scratch(x.len());
    // The ReLU that follows, when it is fused here (NaN kept, as in the executors).
    let act = |v: f32| if relu { crate::cpu::nan::relu_keep_nan(v) } else { v };
    let batch = train.then(|| batch_statistics(x, channels, plane, bn.epsilon));
    let output = Output::of(bn, batch.as_ref());
    per_plane(x, &mut y, channels, plane, |c, v, o| {
        let f = output.channel(c);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is available.
            return unsafe { avx2::output(v, o, f, relu) };
        }
        o.iter_mut().zip(v).for_each(|(o, &v)| *o = act(f.value(v)));
    });
    (y, batch)
}

/// The batch mean and biased variance per channel, as moments about each channel's
/// first value (exact for constant channels).
fn batch_statistics(x: &[f32], channels: usize, plane: usize, epsilon: f32) -> BnBatch {
    let per = x.len() / channels;
    let sums = channel_sums(x.len(), channels, plane, |c, start| {
        let (v, m) = (&x[start..start + plane], x[c * plane]);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is available.
            return unsafe { avx2::shifted_moments(v, m) };
        }
        shifted_moments(v, m)
    });
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)]
    let (mean, var): (Vec<f32>, Vec<f32>) = sums
        .iter()
        .enumerate()
        .map(|(c, [s, q])| {
            let d = s / per as f64;
            ((f64::from(x[c * plane]) + d) as f32, (q / per as f64 - d * d).max(0.0) as f32)
        })
        .unzip();
    let inv = var.iter().map(|v| 1.0 / (v + epsilon).sqrt()).collect();
    BnBatch { mean, var, inv }
}

/// The gradient arriving at a BatchNorm's output: the sum of `parts` (one per reader,
/// summed in this order), zero wherever the ReLU that follows cut the output (`relu`).
pub(crate) struct Incoming<'a> {
    pub parts: &'a [&'a [f32]],
    pub relu: bool,
}

/// Values per piece of a plane that the portable backward assembles the incoming
/// gradient in.
const PIECE: usize = 256;

/// How the backward turns the incoming gradient `g` at input `v` into the input's.
enum DxTerm {
    /// Batch statistics: `k·(g − mean − (v − m)·q)`.
    Batch { k: f32, mean: f32, m: f32, q: f32 },
    /// Running statistics: `k·g`.
    Frozen { k: f32 },
}

impl DxTerm {
    #[inline(always)]
    fn at(&self, g: f32, v: f32) -> f32 {
        match *self {
            DxTerm::Batch { k, mean, m, q } => k * (g - mean - (v - m) * q),
            DxTerm::Frozen { k } => k * g,
        }
    }
}

impl Incoming<'_> {
    /// `(Σ g·(x − m), Σ g)` over `range` (a plane of channel `c`), `g` the incoming
    /// gradient there.
    fn sums(
        &self,
        output: &Output<'_>,
        c: usize,
        range: std::ops::Range<usize>,
        x: &[f32],
        m: f32,
    ) -> [f32; 2] {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is available; the parts and `x` hold `range` (asserted there).
            return unsafe { avx2::sums(self.parts, self.cut(output, c), range, x, m) };
        }
        let mut s = [0.0f32; 2];
        self.pieces(output, c, range, x, |_, g, x| {
            let [d, t] = dot_and_sum(g, x, m);
            s = [s[0] + d, s[1] + t];
        });
        s
    }

    /// The input gradient over `range` (a plane of channel `c`) into `out`.
    fn dx(
        &self,
        output: &Output<'_>,
        c: usize,
        range: std::ops::Range<usize>,
        x: &[f32],
        out: &mut [f32],
        term: &DxTerm,
    ) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as in `sums`; `out` holds the range's length (asserted there).
            return unsafe { avx2::dx(self.parts, self.cut(output, c), range, x, out, term) };
        }
        self.pieces(output, c, range, x, |at, g, x| {
            for ((o, &g), &v) in out[at..at + g.len()].iter_mut().zip(g).zip(x) {
                *o = term.at(g, v);
            }
        });
    }

    /// The recomputed ReLU cut of channel `c`, if one is pending.
    fn cut(&self, output: &Output<'_>, c: usize) -> Option<Cut> {
        self.relu.then(|| output.channel(c))
    }

    /// Calls `f(offset, g, x)` on consecutive pieces of `range` (a plane of channel `c`):
    /// `g` the incoming gradient there, `x` the BatchNorm's input, `offset` the piece's
    /// start in the range.
    fn pieces(
        &self,
        output: &Output<'_>,
        c: usize,
        range: std::ops::Range<usize>,
        x: &[f32],
        mut f: impl FnMut(usize, &[f32], &[f32]),
    ) {
        if self.parts.len() == 1 && !self.relu {
            f(0, &self.parts[0][range.clone()], &x[range]);
            return;
        }
        let cut = self.cut(output, c);
        let mut g = [0.0f32; PIECE];
        for start in range.clone().step_by(PIECE) {
            let len = PIECE.min(range.end - start);
            let (g, x) = (&mut g[..len], &x[start..start + len]);
            g.copy_from_slice(&self.parts[0][start..start + len]);
            for part in &self.parts[1..] {
                g.iter_mut().zip(&part[start..start + len]).for_each(|(g, v)| *g += v);
            }
            if let Some(cut) = cut {
                g.iter_mut().zip(x).for_each(|(g, &v)| *g = if cut.passes(v) { *g } else { 0.0 });
            }
            f(start - range.start, g, x);
        }
    }
}

/// One channel's output before the ReLU, the one formula of the forward's output and of
/// the backward's recomputed ReLU cut (which must match the forward's bit for bit).
#[derive(Clone, Copy)]
enum Cut {
    /// Running statistics folded into `a·v + b`.
    Frozen { a: f32, b: f32 },
    /// Batch statistics: `a·((v − m)·k) + b` (`a` the scale, `k` = 1/sqrt(var + ε)).
    Batch { m: f32, k: f32, a: f32, b: f32 },
}

impl Cut {
    /// The forward's output (before the ReLU) at input `v`.
    #[inline(always)]
    fn value(self, v: f32) -> f32 {
        match self {
            Cut::Frozen { a, b } => a * v + b,
            Cut::Batch { m, k, a, b } => a * ((v - m) * k) + b,
        }
    }

    /// Whether the forward's output at input `v` was positive (a NaN was not).
    #[inline(always)]
    fn passes(self, v: f32) -> bool {
        self.value(v) > 0.0
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! The backward's two passes 8 values at a time, the incoming gradient summed and
    //! cut in registers.

    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{Cut, DxTerm};

    /// The incoming gradient at `i`: the parts summed in order, cut where the forward's
    /// output was not positive (the same operations as the forward, so the same bits).
    #[inline(always)]
    unsafe fn incoming(parts: &[&[f32]], cut: Option<Cut>, x: __m256, i: usize) -> __m256 {
        // SAFETY (all of this module): the callers assert every part holds the range.
        unsafe {
            let mut g = _mm256_loadu_ps(parts[0].as_ptr().add(i));
            for p in &parts[1..] {
                g = _mm256_add_ps(g, _mm256_loadu_ps(p.as_ptr().add(i)));
            }
            let Some(cut) = cut else { return g };
            _mm256_and_ps(g, _mm256_cmp_ps::<_CMP_GT_OQ>(value(cut, x), _mm256_setzero_ps()))
        }
    }

    /// The incoming gradient at `i`, one value (the ranges' tails).
    fn incoming_one(parts: &[&[f32]], cut: Option<Cut>, v: f32, i: usize) -> f32 {
        let g = parts[1..].iter().fold(parts[0][i], |g, p| g + p[i]);
        match cut {
            Some(cut) if !cut.passes(v) => 0.0,
            _ => g,
        }
    }

    fn check(parts: &[&[f32]], range: &Range<usize>, x: &[f32]) {
        assert!(
            parts.iter().all(|p| p.len() >= range.end) && x.len() >= range.end,
            "BatchNorm gradient shorter than its input"
        );
    }

    /// The forward's output of one plane `v` into `o` (the cut's formula), through the
    /// ReLU when `relu` (NaN kept: `max(0, v)` returns its second operand for NaN).
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn output(v: &[f32], o: &mut [f32], f: Cut, relu: bool) {
        let n8 = v.len().min(o.len()) / 8 * 8;
        // SAFETY: i + 8 <= n8, inside both.
        unsafe {
            for i in (0..n8).step_by(8) {
                let x = _mm256_loadu_ps(v.as_ptr().add(i));
                let y = value(f, x);
                _mm256_storeu_ps(
                    o.as_mut_ptr().add(i),
                    if relu { _mm256_max_ps(_mm256_setzero_ps(), y) } else { y },
                );
            }
        }
        for (o, &x) in o[n8..].iter_mut().zip(&v[n8..]) {
            let y = f.value(x);
            *o = if relu { crate::cpu::nan::relu_keep_nan(y) } else { y };
        }
    }

    /// `(Σ (x − m), Σ (x − m)²)` of one plane.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn shifted_moments(v: &[f32], m: f32) -> [f32; 2] {
        let n16 = v.len() / 16 * 16;
        // SAFETY: i + 16 <= n16, inside `v`.
        let (s, q) = unsafe {
            let mv = _mm256_set1_ps(m);
            let (mut s0, mut s1, mut q0, mut q1) =
                (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
            for i in (0..n16).step_by(16) {
                let a = _mm256_sub_ps(_mm256_loadu_ps(v.as_ptr().add(i)), mv);
                let b = _mm256_sub_ps(_mm256_loadu_ps(v.as_ptr().add(i + 8)), mv);
                s0 = _mm256_add_ps(s0, a);
                s1 = _mm256_add_ps(s1, b);
                q0 = _mm256_add_ps(q0, _mm256_mul_ps(a, a));
                q1 = _mm256_add_ps(q1, _mm256_mul_ps(b, b));
            }
            (horizontal(_mm256_add_ps(s0, s1)), horizontal(_mm256_add_ps(q0, q1)))
        };
        v[n16..].iter().fold([s, q], |[s, q], x| [s + (x - m), q + (x - m) * (x - m)])
    }

    /// The sum of the 8 lanes.
    #[inline(always)]
    unsafe fn horizontal(v: __m256) -> f32 {
        let mut lanes = [0.0f32; 8];
        // SAFETY: 8 floats.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), v) };
        lanes.iter().sum()
    }

    /// The forward's output at 8 inputs (the same operations as `Cut::value`).
    #[inline(always)]
    unsafe fn value(f: Cut, x: __m256) -> __m256 {
        // SAFETY: register arithmetic only.
        unsafe {
            match f {
                Cut::Frozen { a, b } => _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(a), x), _mm256_set1_ps(b)),
                Cut::Batch { m, k, a, b } => {
                    let t = _mm256_mul_ps(_mm256_sub_ps(x, _mm256_set1_ps(m)), _mm256_set1_ps(k));
                    _mm256_add_ps(_mm256_mul_ps(_mm256_set1_ps(a), t), _mm256_set1_ps(b))
                }
            }
        }
    }

    /// See `Incoming::sums`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn sums(
        parts: &[&[f32]],
        cut: Option<Cut>,
        range: Range<usize>,
        x: &[f32],
        m: f32,
    ) -> [f32; 2] {
        check(parts, &range, x);
        let end8 = range.start + (range.len() / 8) * 8;
        // SAFETY: i + 8 <= end8 <= range.end, inside every operand.
        unsafe {
            let mv = _mm256_set1_ps(m);
            let (mut d0, mut d1, mut s0, mut s1) =
                (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = range.start;
            while i + 16 <= end8 {
                let (xa, xb) = (_mm256_loadu_ps(x.as_ptr().add(i)), _mm256_loadu_ps(x.as_ptr().add(i + 8)));
                let (ga, gb) = (incoming(parts, cut, xa, i), incoming(parts, cut, xb, i + 8));
                d0 = _mm256_add_ps(d0, _mm256_mul_ps(ga, _mm256_sub_ps(xa, mv)));
                d1 = _mm256_add_ps(d1, _mm256_mul_ps(gb, _mm256_sub_ps(xb, mv)));
                s0 = _mm256_add_ps(s0, ga);
                s1 = _mm256_add_ps(s1, gb);
                i += 16;
            }
            if i < end8 {
                let xa = _mm256_loadu_ps(x.as_ptr().add(i));
                let ga = incoming(parts, cut, xa, i);
                d0 = _mm256_add_ps(d0, _mm256_mul_ps(ga, _mm256_sub_ps(xa, mv)));
                s0 = _mm256_add_ps(s0, ga);
            }
            let s = [horizontal(_mm256_add_ps(d0, d1)), horizontal(_mm256_add_ps(s0, s1))];
            (end8..range.end).fold(s, |[d, t], i| {
                let g = incoming_one(parts, cut, x[i], i);
                [d + g * (x[i] - m), t + g]
            })
        }
    }

    /// See `Incoming::dx`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn dx(
        parts: &[&[f32]],
        cut: Option<Cut>,
        range: Range<usize>,
        x: &[f32],
        out: &mut [f32],
        term: &DxTerm,
    ) {
        check(parts, &range, x);
        assert!(out.len() >= range.len(), "BatchNorm input gradient shorter than its range");
        let end8 = range.start + (range.len() / 8) * 8;
        // SAFETY: i + 8 <= end8 <= range.end, inside every operand; `out` at i − start.
        unsafe {
            let o = out.as_mut_ptr().sub(range.start);
            let mut i = range.start;
            match *term {
                DxTerm::Batch { k, mean, m, q } => {
                    let (kv, meanv, mv, qv) =
                        (_mm256_set1_ps(k), _mm256_set1_ps(mean), _mm256_set1_ps(m), _mm256_set1_ps(q));
                    while i < end8 {
                        let xv = _mm256_loadu_ps(x.as_ptr().add(i));
                        let g = incoming(parts, cut, xv, i);
                        let r =
                            _mm256_sub_ps(_mm256_sub_ps(g, meanv), _mm256_mul_ps(_mm256_sub_ps(xv, mv), qv));
                        _mm256_storeu_ps(o.add(i), _mm256_mul_ps(kv, r));
                        i += 8;
                    }
                }
                DxTerm::Frozen { k } => {
                    let kv = _mm256_set1_ps(k);
                    while i < end8 {
                        let xv = _mm256_loadu_ps(x.as_ptr().add(i));
                        _mm256_storeu_ps(o.add(i), _mm256_mul_ps(kv, incoming(parts, cut, xv, i)));
                        i += 8;
                    }
                }
            }
        }
        for i in end8..range.end {
            out[i - range.start] = term.at(incoming_one(parts, cut, x[i], i), x[i]);
        }
    }
}

/// BatchNorm backward: `(dx, dscale, dshift)` from the incoming gradient `dy`; `batch`
/// holds the statistics of a training-mode forward (`None`: frozen).
pub(crate) fn bn_backward(
    x: &[f32],
    dy: &Incoming<'_>,
    channels: usize,
    plane: usize,
    bn: &BatchNorm,
    batch: Option<&BnBatch>,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let output = Output::of(bn, batch);
    let (mean, inv): (&[f32], Vec<f32>) = match batch {
        Some(b) => (&b.mean, b.inv.clone()),
        None => (&bn.mean, bn.var.iter().map(|v| 1.0 / (v + bn.epsilon).sqrt()).collect()),
    };
    // Σ dy·x̂ = inv · Σ dy·(x − mean), and Σ dy.
    let sums =
        channel_sums(x.len(), channels, plane, |c, at| dy.sums(&output, c, at..at + plane, x, mean[c]));
    #[allow(clippy::cast_possible_truncation)]
    let (dscale, dshift): (Vec<f32>, Vec<f32>) =
        sums.iter().enumerate().map(|(c, [d, s])| ((f64::from(inv[c]) * d) as f32, *s as f32)).unzip();
    #[allow(clippy::cast_precision_loss)]
    let per = (x.len() / channels) as f32;
    let mut dx = buffers::scratch(x.len());
    dx.par_chunks_mut(plane.max(1)).enumerate().with_min_len((1 << 14) / plane.max(1) + 1).for_each(
        |(j, o)| {
            let c = j % channels;
            let k = bn.scale[c] * inv[c];
            let term = match batch {
                // dx = k·(g − Σg/n − x̂·Σ(g·x̂)/n), x̂ = (x − mean)·inv.
                Some(_) => {
                    DxTerm::Batch { k, mean: dshift[c] / per, m: mean[c], q: inv[c] * (dscale[c] / per) }
                }
                None => DxTerm::Frozen { k },
            };
            dy.dx(&output, c, j * plane..(j + 1) * plane, x, o, &term);
        },
    );
    (dx, dscale, dshift)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    /// The backward by its definition in f64: `g` the parts summed and cut where the
    /// forward's output `y` is not positive (when `relu`).
    #[allow(clippy::too_many_arguments)]
    fn reference(
        x: &[f32],
        y: &[f32],
        parts: &[Vec<f32>],
        relu: bool,
        c: usize,
        plane: usize,
        bn: &BatchNorm,
        batch: Option<&BnBatch>,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let g: Vec<f64> = (0..x.len())
            .map(|i| if relu && y[i] <= 0.0 { 0.0 } else { parts.iter().map(|p| f64::from(p[i])).sum() })
            .collect();
        let per = (x.len() / c) as f64;
        let ch = |i: usize| (i / plane) % c;
        let (mean, inv): (Vec<f64>, Vec<f64>) = (0..c)
            .map(|k| match batch {
                Some(b) => (f64::from(b.mean[k]), f64::from(b.inv[k])),
                None => (f64::from(bn.mean[k]), 1.0 / (f64::from(bn.var[k]) + f64::from(bn.epsilon)).sqrt()),
            })
            .unzip();
        let (mut dscale, mut dshift) = (vec![0.0; c], vec![0.0; c]);
        for i in 0..x.len() {
            dscale[ch(i)] += g[i] * (f64::from(x[i]) - mean[ch(i)]) * inv[ch(i)];
            dshift[ch(i)] += g[i];
        }
        let dx = (0..x.len())
            .map(|i| {
                let k = ch(i);
                let s = f64::from(bn.scale[k]) * inv[k];
                match batch {
                    Some(_) => {
                        let xhat = (f64::from(x[i]) - mean[k]) * inv[k];
                        s * (g[i] - dshift[k] / per - xhat * dscale[k] / per)
                    }
                    None => s * g[i],
                }
            })
            .collect();
        (dx, dscale, dshift)
    }

    #[test]
    fn backward_matches_the_definition_with_parts_and_relu() {
        let mut rng = SeededRng::new(21);
        // Planes below, at and past the vector width and the portable piece size.
        for (b, c, plane) in [(2, 3, 1), (3, 2, 7), (2, 4, 9), (2, 2, 17), (1, 3, 300)] {
            let len = b * c * plane;
            let bn = BatchNorm {
                scale: rng.vec_f32(c, 0.5, 1.5),
                shift: rng.vec_f32(c, -0.5, 0.5),
                mean: rng.vec_f32(c, -0.3, 0.3),
                var: rng.vec_f32(c, 0.5, 1.5),
                epsilon: 1e-3,
            };
            let x = rng.vec_f32(len, -2.0, 2.0);
            for train in [false, true] {
                for relu in [false, true] {
                    let (y, batch) = bn_forward(&x, c, plane, &bn, train, relu);
                    for n_parts in 1..=3 {
                        let parts: Vec<Vec<f32>> =
                            (0..n_parts).map(|_| rng.vec_f32(len, -1.0, 1.0)).collect();
                        let slices: Vec<&[f32]> = parts.iter().map(Vec::as_slice).collect();
                        let dy = Incoming { parts: &slices, relu };
                        let (dx, ds, dsh) = bn_backward(&x, &dy, c, plane, &bn, batch.as_ref());
                        let (rdx, rds, rdsh) = reference(&x, &y, &parts, relu, c, plane, &bn, batch.as_ref());
                        let label = format!("{b}x{c}x{plane} train {train} relu {relu} parts {n_parts}");
                        for (name, got, want) in
                            [("dx", &dx, &rdx), ("dscale", &ds, &rds), ("dshift", &dsh, &rdsh)]
                        {
                            assert_eq!(got.len(), want.len(), "{label}: {name} length");
                            for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
                                assert!(
                                    (f64::from(*g) - w).abs() <= 1e-4 * (1.0 + w.abs()),
                                    "{label}: {name}[{i}] {g} against {w}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
