//! Implicit-GEMM convolution: `out[T, cols] = W[T, k] · B[k, cols]` per group, where the
//! column matrix B is never formed. Each task packs the B panel it multiplies straight from
//! the input, through the mask and (for a compact input) the previous layer's map.
//!
//! Blocking (BLIS order): the layer's columns (images × mask positions, one run) split into
//! blocks of `nc`, the output channels of each group into blocks of whole `MR` panels; one
//! task = (group, channel block, column block), all tasks of the layer in one parallel
//! region. Inside a task: for each depth block of `kc` rows, pack B (`nc/NR` micro-panels
//! of `kc × NR`), then for each micro-panel (L1-resident) run the microkernel over every
//! weight panel of the block (L2-resident), accumulating into the task's C buffer; the
//! epilogue adds the bias, applies the ReLU and scatters columns to `[B, T, N]`.

use std::cell::RefCell;

use rayon::prelude::*;

use super::pack::{pack_fn, PackFn, TileRead};
use super::taps::{Taps, PAD};
use super::SendPtr;
use crate::cpu::gemm::{pack_a, Microkernel};
use crate::cpu::read_mapped;
use crate::layer::ConvLayer;

/// Depth of one packed B block (rows of k).
const KC: usize = 256;
/// Target columns of one task.
const NC: usize = 256;

/// Per-thread workspace, grown on first use and reused (no allocation in steady state).
#[derive(Default)]
struct Scratch {
    /// Packed B: `tiles × kc × NR`.
    b: Vec<f32>,
    /// The task's output block: `rows × ldc`.
    c: Vec<f32>,
    /// Column taps of the task, `[kh·kw][ldc]`, image offset added (or [`PAD`]).
    cols: Vec<u32>,
    /// Image of each column (barycentric reads need it apart from the tap).
    imgs: Vec<u32>,
    /// Per (kernel offset, tile): how the tile reads a channel.
    reads: Vec<TileRead>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// A convolution (any groups, stride, padding, dilation, mask, input map) on packed
/// microkernels.
pub(crate) struct ImplicitGemm {
    kern: Microkernel,
    groups: usize,
    cg: usize,
    tg: usize,
    k: usize,
    khkw: usize,
    batch: usize,
    plane: usize,
    out_channels: usize,
    panels: usize,
    /// `[group][panel][k][MR]`.
    a: Vec<f32>,
    bias: Vec<f32>,
    relu: bool,
    taps: Taps,
    pack: PackFn,
}

impl std::fmt::Debug for ImplicitGemm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ImplicitGemm({:?}, groups {}, m {}, k {}, n {})", self.kern, self.groups, self.tg, self.k, self.taps.n_pos)
    }
}

impl ImplicitGemm {
    pub fn new(layer: &ConvLayer, relu: bool, kern: Microkernel) -> Self {
        let g = layer.geometry();
        let (k, tg) = (g.k_per_group(), g.out_channels_per_group());
        let (w, lda) = layer.packed_weights();
        let panels = tg.div_ceil(kern.mr);
        let a = (0..g.groups).flat_map(|grp| pack_a(&w[grp * tg * lda..], tg, k, lda, kern.mr)).collect();
        ImplicitGemm {
            kern,
            groups: g.groups,
            cg: g.in_channels_per_group(),
            tg,
            k,
            khkw: g.kernel_h * g.kernel_w,
            batch: g.batch,
            plane: layer.input_plane(),
            out_channels: g.out_channels,
            panels,
            a,
            bias: layer.bias().to_vec(),
            relu,
            taps: Taps::new(layer),
            pack: pack_fn(kern.name),
        }
    }

    /// `x` is the `[B, C, plane]` input, `out` the `[B, T, N]` output.
    pub fn run(&self, x: &[f32], out: &mut [f32]) {
        let (nr, n_pos) = (self.kern.nr, self.taps.n_pos);
        let n_total = self.batch * n_pos;
        assert!(out.len() >= n_total * self.out_channels, "conv output buffer too small");
        assert!(x.len() >= self.batch * self.cg * self.groups * self.plane, "conv input too short");
        assert!(x.len() < i32::MAX as usize, "conv input indices must fit in i32 (gather offsets)");
        let want = 2 * rayon::current_num_threads();
        let mut nc = NC.next_multiple_of(nr).min(n_total.next_multiple_of(nr));
        let col_blocks = n_total.div_ceil(nc);
        // Too few column blocks for the threads: split the channels, then the columns.
        let m_blocks = want.div_ceil(self.groups * col_blocks).clamp(1, self.panels);
        let per_block = self.panels.div_ceil(m_blocks);
        let m_blocks = self.panels.div_ceil(per_block);
        if self.groups * m_blocks * col_blocks < want && n_total > nr {
            let split = want.div_ceil(self.groups * m_blocks);
            nc = n_total.div_ceil(split).next_multiple_of(nr);
        }
        let col_blocks = n_total.div_ceil(nc);
        let tasks = self.groups * m_blocks * col_blocks;
        let out = SendPtr(out.as_mut_ptr());
        let run_task = |t: usize| {
            let (grp, rest) = (t % self.groups, t / self.groups);
            let (mb, cb) = (rest % m_blocks, rest / m_blocks);
            let panels = mb * per_block..((mb + 1) * per_block).min(self.panels);
            let j0 = cb * nc;
            let cols = nc.min(n_total - j0);
            SCRATCH.with(|s| self.task(&mut s.borrow_mut(), x, out, grp, panels, j0, cols));
        };
        if tasks == 1 {
            run_task(0);
        } else {
            (0..tasks).into_par_iter().for_each(run_task);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn task(
        &self,
        s: &mut Scratch,
        x: &[f32],
        out: SendPtr,
        grp: usize,
        panels: std::ops::Range<usize>,
        j0: usize,
        cols: usize,
    ) {
        let (mr, nr, n_pos) = (self.kern.mr, self.kern.nr, self.taps.n_pos);
        let tiles = cols.div_ceil(nr);
        let ldc = tiles * nr;
        let image_stride = self.cg * self.groups * self.plane;
        let bary = self.taps.map_kind == 3;

        // Column taps with the image offset added (barycentric: the dense position alone).
        s.cols.resize(self.khkw * ldc, PAD);
        s.imgs.resize(ldc, 0);
        for jj in 0..ldc {
            s.imgs[jj] = ((j0 + jj) / n_pos) as u32;
        }
        for c in 0..self.khkw {
            let row = self.taps.row(c);
            let dst = &mut s.cols[c * ldc..(c + 1) * ldc];
            let (mut img, mut e) = ((j0 / n_pos), j0 % n_pos);
            for (jj, d) in dst.iter_mut().enumerate() {
                *d = if jj >= cols {
                    PAD
                } else {
                    let t = row[e];
                    let v = if t == PAD || bary { t } else { t + (img * image_stride) as u32 };
                    e += 1;
                    if e == n_pos {
                        (img, e) = (img + 1, 0);
                    }
                    v
                };
            }
        }
        s.reads.clear();
        if !bary {
            for c in 0..self.khkw {
                for tile in 0..tiles {
                    let t = &s.cols[c * ldc + tile * nr..c * ldc + (tile + 1) * nr];
                    s.reads.push(TileRead::new(t));
                }
            }
        }

        let rows = panels.len() * mr;
        s.c.resize(rows * ldc, 0.0);
        let depth_blocks = self.k.div_ceil(KC);
        let kc = self.k.div_ceil(depth_blocks);
        s.b.resize(tiles * kc * nr, 0.0);
        for p0 in (0..self.k).step_by(kc) {
            let kcb = kc.min(self.k - p0);
            // Pack B: row r of the block is (input channel, kernel offset) = (r / khkw, r % khkw).
            for r in p0..p0 + kcb {
                let (ci, c) = (r / self.khkw, r % self.khkw);
                let base = (grp * self.cg + ci) * self.plane;
                let taps = &s.cols[c * ldc..(c + 1) * ldc];
                if !bary {
                    let b = s.b[(r - p0) * nr..].as_mut_ptr();
                    // SAFETY: every tap that is not PAD is inside x from `base` (the tap
                    // table's construction), and B holds `tiles` micro-panels of kcb·NR.
                    unsafe { (self.pack)(x.as_ptr().add(base), taps, &s.reads[c * tiles..(c + 1) * tiles], b, kcb * nr, nr) };
                    continue;
                }
                let src = &x[base..];
                for tile in 0..tiles {
                    let dst = &mut s.b[(tile * kcb + (r - p0)) * nr..][..nr];
                    let tt = &taps[tile * nr..(tile + 1) * nr];
                    let imgs = &s.imgs[tile * nr..(tile + 1) * nr];
                    for ((d, &t), &img) in dst.iter_mut().zip(tt).zip(imgs) {
                        *d = if t == PAD {
                            0.0
                        } else {
                            read_mapped(3, &self.taps.map_table, &src[img as usize * image_stride..], t as usize)
                        };
                    }
                }
            }
            for tile in 0..tiles {
                let b = s.b[tile * kcb * nr..].as_ptr();
                for (i, panel) in panels.clone().enumerate() {
                    let a = self.a[((grp * self.panels + panel) * self.k + p0) * mr..].as_ptr();
                    let c = s.c[i * mr * ldc + tile * nr..].as_mut_ptr();
                    // SAFETY: the A panel holds k·MR floats from p0 (kcb·MR read), the B
                    // micro-panel kcb·NR, and C has MR rows of ldc ≥ (tile+1)·NR floats.
                    unsafe { self.kern.run(kcb, a, b, c, ldc, p0 > 0) };
                }
            }
        }

        // Epilogue: bias, ReLU, scatter each row's columns by image.
        for i in 0..rows {
            let m = panels.start * mr + i;
            if m >= self.tg {
                break;
            }
            let ch = grp * self.tg + m;
            let beta = self.bias[ch];
            let crow = &s.c[i * ldc..i * ldc + cols];
            let mut jj = 0;
            while jj < cols {
                let (img, e) = ((j0 + jj) / n_pos, (j0 + jj) % n_pos);
                let run = (n_pos - e).min(cols - jj);
                // SAFETY: (img, ch, e..e+run) lies inside the [B, T, N] output, and no other
                // task writes this channel block's columns.
                let dst = unsafe {
                    std::slice::from_raw_parts_mut(out.ptr().add((img * self.out_channels + ch) * n_pos + e), run)
                };
                let src = &crow[jj..jj + run];
                if self.relu {
                    for (d, &v) in dst.iter_mut().zip(src) {
                        *d = (v + beta).max(0.0);
                    }
                } else {
                    for (d, &v) in dst.iter_mut().zip(src) {
                        *d = v + beta;
                    }
                }
                jj += run;
            }
        }
    }
}
