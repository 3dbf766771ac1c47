//! Convolution of a batch of small images as GEMMs over the whole batch (the
//! convolutions lesson's last step, used by [`crate::ops::conv`] and
//! [`crate::ops::conv_backward`] when the output images are small).
//!
//! Per image, a 7x7 output is a GEMM only 49 columns wide: the micro-kernel's
//! 32-wide slivers run half empty and every tile pays its packing overheads for a
//! handful of pixels. Here the output pixels of *all* images are one long axis,
//! `q = n * H'*W' + p`, and each product runs over it:
//!
//! - forward: `y_g (O/g, q) = W_g (O/g, K) col_g (K, q)`, the patches gathered
//!   straight into the B panel ([`gemm_packed_b`]), tiles of 128 pixels that may
//!   span images; bias added on the copy out;
//! - input gradient: `dcol (K, q) = W_g^T (K, O/g) dy_g (O/g, q)`, then each entry
//!   added back onto the input pixel it was read from (col2im);
//! - weight gradient: `dW_g (O/g, K) = sum_q dy_g (O/g, q) col_g (K, q)^T`: the
//!   depth of the product is the whole batch, so `dW` is written once, not once per
//!   image.
//!
//! The gathers go through a `Taps` table: for each kernel tap `(ky, kx)` and output
//! pixel `p`, the offset `iy*W + ix` it reads in an input plane (or "padding").
//! Shapes as [`crate::Tensor::conv2d`]; `K = C/groups * kh * kw`, row `k = (c, ky, kx)`.
//! Jobs are runs of whole images, so each writes its own part of `y` or `dx`; the
//! weight gradient runs column strips of `dW`. Results do not depend on the number
//! of threads.
//!
//! ```
//! use tensor::Tensor;
//! // Two 2x2 images of ones, a 2x2 kernel of ones, padding 1, stride 2: each output
//! // pixel sees one corner of its image.
//! let x = Tensor::ones([2, 1, 2, 2]);
//! let w = Tensor::ones([1, 1, 2, 2]);
//! let y = x.conv2d(&w, None, (2, 2), (1, 1), (1, 1), 1).unwrap();
//! assert_eq!(y.to_vec().unwrap(), vec![1.0; 8]);
//! ```

use rayon::prelude::*;

use crate::matmul::kernels::{CTile, Kernel};
use crate::matmul::packed::{gemm_packed_b, PackedA};
use crate::matmul::MatRef;
use crate::ops::conv::Conv2dGeom;
use crate::ops::conv_taps::{segments, Gather, LaneMap, Taps, PAD};

/// Largest output image (pixels) the batched path takes; bigger images give the
/// per-image implicit GEMM tiles enough columns.
const MAX_PIXELS: usize = 1024;
/// Output pixels per GEMM tile (rounded to the kernel's `nr`).
const TILE: usize = 128;
/// Output pixels per job, about (whole images).
const JOB_PIXELS: usize = 2048;
/// Pixels per depth block of the weight gradient.
const WEIGHT_KC: usize = 256;
/// Whether [`conv2d`] and the two backwards take geometry `g`: at least two
/// images of at most [`MAX_PIXELS`] output pixels (and offsets that fit a `u32`).
pub(crate) fn use_batched(g: &Conv2dGeom) -> bool {
    g.n >= 2 && g.oh * g.ow <= MAX_PIXELS && g.c * g.h * g.w < (PAD / 2) as usize
}

/// Split lanes `j..j + len` of row `row` of a sliver-layout panel (`kc` rows,
/// `nr` lanes per sliver) at sliver boundaries: `f(panel offset, start in run, len)`.
#[inline(always)]
fn lanes(
    kc: usize,
    nr: usize,
    row: usize,
    j: usize,
    len: usize,
    mut f: impl FnMut(usize, usize, usize),
) {
    let mut d = 0;
    while d < len {
        let jj = j + d;
        let l = (nr - jj % nr).min(len - d);
        f((jj / nr) * kc * nr + row * nr + jj % nr, d, l);
        d += l;
    }
}

/// Zero lanes `tw..` of a `kc`-deep sliver-layout panel (only the last sliver has any).
fn zero_tail(panel: &mut [f32], kc: usize, nr: usize, tw: usize) {
    if !tw.is_multiple_of(nr) {
        let last = (tw / nr) * kc * nr;
        for row in panel[last..last + kc * nr].chunks_exact_mut(nr) {
            row[tw % nr..].fill(0.0);
        }
    }
}

/// Images per job: whole images, about [`JOB_PIXELS`] output pixels.
fn images_per_job(g: &Conv2dGeom) -> usize {
    (JOB_PIXELS / (g.oh * g.ow).max(1)).clamp(1, g.n.max(1))
}

/// The rows of group `gi` of `wt: (O, K)`, as a matrix `(O/g, K)`.
fn weight_rows<'a>(wt: &'a [f32], g: &Conv2dGeom, gi: usize) -> MatRef<'a> {
    let k = g.k();
    MatRef {
        data: wt,
        offset: gi * g.og * k,
        rows: g.og,
        cols: k,
        row_stride: k,
        col_stride: 1,
    }
}

/// Forward on contiguous buffers: `x: (N, C, H, W)`, `wt: (O, C/g, kh, kw)` ->
/// `(N, O, H', W')` data.
pub(crate) fn conv2d(
    kernel: Kernel,
    x: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    g: &Conv2dGeom,
) -> Vec<f32> {
    let (ohw, k, hw) = (g.oh * g.ow, g.k(), g.h * g.w);
    let mut out = vec![0.0f32; g.n * g.o * ohw];
    if out.is_empty() || k == 0 {
        if let Some(b) = bias {
            for (row, &bv) in out.chunks_mut(ohw.max(1)).zip(b.iter().cycle()) {
                row.fill(bv);
            }
        }
        return out;
    }
    let (nr, taps, gth) = (kernel.nr(), Taps::new(g), Gather::for_kernel(kernel));
    let packed: Vec<PackedA> = (0..g.groups)
        .map(|gi| PackedA::new(kernel, weight_rows(wt, g, gi)))
        .collect();
    let tile = TILE.next_multiple_of(nr);
    let panel_len = packed.iter().map(|a| a.panel_len(tile)).max().unwrap_or(0);
    let c_len = packed.iter().map(|a| a.c_len(tile)).max().unwrap_or(0);
    let ipj = images_per_job(g);
    out.par_chunks_mut(ipj * g.o * ohw)
        .enumerate()
        .for_each_init(
            || (vec![0.0f32; panel_len], vec![0.0f32; c_len]),
            |(panel, cbuf), (jb, dst)| {
                let total = dst.len() / g.o;
                for (gi, a) in packed.iter().enumerate() {
                    for t0 in (0..total).step_by(tile) {
                        let tw = tile.min(total - t0);
                        let ntp = tw.next_multiple_of(nr);
                        gemm_packed_b(a, ntp, panel, cbuf, |pc, kc, panel| {
                            zero_tail(panel, kc, nr, tw);
                            for (n, p, len, j) in segments(jb * ipj * ohw + t0, tw, ohw) {
                                let base = (n * g.c + gi * g.cg) * hw;
                                // Rows pc..pc + kc are k = (c, t) for these channels c.
                                for c in pc / taps.taps..(pc + kc).div_ceil(taps.taps) {
                                    let plane = &x[base + c * hw..base + (c + 1) * hw];
                                    let first = c * taps.taps;
                                    for t in
                                        pc.saturating_sub(first)..(pc + kc - first).min(taps.taps)
                                    {
                                        let idx = taps.row(t, p, len);
                                        lanes(kc, nr, first + t - pc, j, len, |at, d, l| {
                                            gth.gather(
                                                plane,
                                                &idx[d..d + l],
                                                &mut panel[at..at + l],
                                            );
                                        });
                                    }
                                }
                            }
                        });
                        for (n, p, len, j) in segments(t0, tw, ohw) {
                            for r in 0..g.og {
                                let o = gi * g.og + r;
                                let d = &mut dst[(n * g.o + o) * ohw + p..][..len];
                                let s = &cbuf[r * ntp + j..][..len];
                                match bias {
                                    Some(b) => {
                                        let bv = b[o];
                                        d.iter_mut().zip(s).for_each(|(d, &v)| *d = v + bv);
                                    }
                                    None => d.copy_from_slice(s),
                                }
                            }
                        }
                    }
                }
            },
        );
    out
}

/// Input gradient on contiguous buffers: `dy: (N, O, H', W')`, `wt: (O, C/g, kh, kw)`
/// -> `(N, C, H, W)` data.
pub(crate) fn backward_input(kernel: Kernel, dy: &[f32], wt: &[f32], g: &Conv2dGeom) -> Vec<f32> {
    let (ohw, k, hw) = (g.oh * g.ow, g.k(), g.h * g.w);
    let mut dx = vec![0.0f32; g.n * g.c * hw];
    if dx.is_empty() || k == 0 || ohw == 0 || g.og == 0 {
        return dx;
    }
    let (nr, taps, gth) = (kernel.nr(), Taps::new(g), Gather::for_kernel(kernel));
    // W_g^T: (K, O/g), read through swapped strides.
    let packed: Vec<PackedA> = (0..g.groups)
        .map(|gi| PackedA::new(kernel, weight_rows(wt, g, gi).t()))
        .collect();
    // Keep the (K, tile) gradient of the patches around half a megabyte.
    let tile = ((1usize << 17) / k).clamp(nr, 2 * TILE) / nr * nr;
    let panel_len = packed.iter().map(|a| a.panel_len(tile)).max().unwrap_or(0);
    let c_len = packed.iter().map(|a| a.c_len(tile)).max().unwrap_or(0);
    let ipj = images_per_job(g);
    dx.par_chunks_mut(ipj * g.c * hw).enumerate().for_each_init(
        || (vec![0.0f32; panel_len], vec![0.0f32; c_len]),
        |(panel, cbuf), (jb, dst)| {
            let total = dst.len() / (g.c * hw) * ohw;
            for (gi, a) in packed.iter().enumerate() {
                for t0 in (0..total).step_by(tile) {
                    let tw = tile.min(total - t0);
                    let ntp = tw.next_multiple_of(nr);
                    gemm_packed_b(a, ntp, panel, cbuf, |pc, kc, panel| {
                        zero_tail(panel, kc, nr, tw);
                        for (n, p, len, j) in segments(jb * ipj * ohw + t0, tw, ohw) {
                            for o in pc..pc + kc {
                                let src = &dy[(n * g.o + gi * g.og + o) * ohw + p..][..len];
                                lanes(kc, nr, o - pc, j, len, |at, d, l| {
                                    panel[at..at + l].copy_from_slice(&src[d..d + l]);
                                });
                            }
                        }
                    });
                    // col2im: add each entry onto the input pixel it was read from.
                    for (n, p, len, j) in segments(t0, tw, ohw) {
                        let base = (n * g.c + gi * g.cg) * hw;
                        for c in 0..g.cg {
                            let plane = &mut dst[base + c * hw..base + (c + 1) * hw];
                            for t in 0..taps.taps {
                                let src = &cbuf[(c * taps.taps + t) * ntp + j..][..len];
                                gth.scatter_add(plane, taps.row(t, p, len), src);
                            }
                        }
                    }
                }
            }
        },
    );
    dx
}

/// Weight gradient on contiguous buffers: `x: (N, C, H, W)`, `dy: (N, O, H', W')`
/// -> `(O, C/g, kh, kw)` data.
pub(crate) fn backward_weight(kernel: Kernel, x: &[f32], dy: &[f32], g: &Conv2dGeom) -> Vec<f32> {
    let (ohw, k, hw) = (g.oh * g.ow, g.k(), g.h * g.w);
    let mut dw = vec![0.0f32; g.o * k];
    let total = g.n * ohw;
    if dw.is_empty() || total == 0 {
        return dw;
    }
    let (nr, mr, taps, gth) = (
        kernel.nr(),
        kernel.mr(),
        Taps::new(g),
        Gather::for_kernel(kernel),
    );
    let (mpad, slivers) = (g.og.next_multiple_of(mr), k.div_ceil(nr));
    // Jobs: (group, strip of B slivers); each sums over every pixel in the same
    // order, so the split does not change the result.
    let strips = slivers.min(2 * rayon::current_num_threads().max(1));
    let per = slivers.div_ceil(strips);
    let strips = slivers.div_ceil(per);
    let jobs: Vec<(usize, usize)> = (0..g.groups)
        .flat_map(|gi| (0..strips).map(move |s| (gi, s)))
        .collect();
    let results: Vec<Vec<f32>> = jobs
        .into_par_iter()
        .map(|(gi, strip)| {
            let (s0, s1) = (strip * per, ((strip + 1) * per).min(slivers));
            let width = (s1 - s0) * nr;
            let mut c = vec![0.0f32; mpad * width];
            let mut apack = vec![0.0f32; mpad * WEIGHT_KC];
            let mut panel = vec![0.0f32; WEIGHT_KC * width];
            let maps: Vec<LaneMap> = (s0..s1)
                .map(|s| LaneMap::new(s * nr, nr, k, taps.taps, hw))
                .collect();
            for q0 in (0..total).step_by(WEIGHT_KC) {
                let kc = WEIGHT_KC.min(total - q0);
                // A = dy_g (O/g, kc): sliver t, column j holds rows t*mr .. t*mr + mr.
                let apack = &mut apack[..mpad * kc];
                for (t, sliver) in apack.chunks_exact_mut(kc * mr).enumerate() {
                    for r in 0..mr {
                        let o = t * mr + r;
                        if o >= g.og {
                            sliver.iter_mut().skip(r).step_by(mr).for_each(|v| *v = 0.0);
                            continue;
                        }
                        for (n, p, len, j) in segments(q0, kc, ohw) {
                            let src = &dy[(n * g.o + gi * g.og + o) * ohw + p..][..len];
                            let dst = sliver[j * mr + r..].iter_mut().step_by(mr);
                            dst.zip(src).for_each(|(d, &v)| *d = v);
                        }
                    }
                }
                // B = col_g^T (kc, K): row j of sliver s holds k = s*nr .. s*nr + nr.
                let panel = &mut panel[..kc * width];
                for (sliver, map) in panel.chunks_exact_mut(kc * nr).zip(&maps) {
                    for (n, p, len, j) in segments(q0, kc, ohw) {
                        let base = (n * g.c + gi * g.cg) * hw;
                        let xs = &x[base..base + g.cg * hw];
                        let rows = &mut sliver[j * nr..(j + len) * nr];
                        gth.lanes(xs, hw, taps.cols(p, len), taps.taps, map, rows);
                    }
                }
                for (si, b) in panel.chunks_exact(kc * nr).enumerate() {
                    for (t, a) in apack.chunks_exact(kc * mr).enumerate() {
                        let tile = CTile {
                            data: &mut c,
                            offset: t * mr * width + si * nr,
                            ld: width,
                            add: true,
                        };
                        kernel.run_packed(kc, a, b, tile);
                    }
                }
            }
            c
        })
        .collect();
    for (i, c) in results.iter().enumerate() {
        let (gi, strip) = (i / strips, i % strips);
        let width = c.len() / mpad;
        let k0 = strip * per * nr;
        let cols = width.min(k - k0);
        for r in 0..g.og {
            let d = &mut dw[(gi * g.og + r) * k + k0..][..cols];
            d.copy_from_slice(&c[r * width..r * width + cols]);
        }
    }
    dw
}

#[cfg(test)]
#[path = "conv_batched_tests.rs"]
pub(crate) mod tests;
