//! Batched convolution through channels-last patches: the variant of
//! [`crate::ops::conv_batched`] for layers with many input channels (the
//! convolutions lesson).
//!
//! Gathering an unfolded row `(c, ky, kx)` from an NCHW input reads one float here,
//! one there. With the input turned channels-last, `xt: (N, H*W, C)`, the patch of
//! output pixel `p` for tap `t` is the `C/groups` adjacent floats
//! `xt[n, idx_t(p), group channels]` (or zeros in the padding): so the unfolded
//! input is built pixel-major, `colt: (pixels, K)` with `K = kh*kw * C/groups` in
//! `(t, c)` order, by plain copies. The products then run with pixels as the
//! micro-kernel's rows, A read in place:
//!
//! - forward: `y^T (q, O/g) = colt (q, K) W_g^T (K, O/g)`, written back to NCHW with
//!   the bias;
//! - input gradient: `dcolt (q, K) = dy^T (q, O/g) W_g (O/g, K)` (dy read in place
//!   through its strides), each pixel's `C/groups` run added back onto `dx^T`, which is
//!   turned back to NCHW at the end;
//! - weight gradient: `dW_g (O/g, K) = sum_q dy_g (O/g, q) colt (q, K)`, colt read in
//!   place as B.
//!
//! The weights are permuted to `(O, kh*kw, C/g)` to match. Shapes as
//! [`crate::Tensor::conv2d`]. Results do not depend on the number of threads.
//!
//! ```
//! use tensor::Tensor;
//! // Sixteen channels of ones, two images, a 1x1 kernel of ones: each output is 16.
//! let x = Tensor::ones([2, 16, 3, 3]);
//! let y = x.conv2d(&Tensor::ones([1, 16, 1, 1]), None, (1, 1), (0, 0), (1, 1), 1).unwrap();
//! assert_eq!(y.to_vec().unwrap(), vec![16.0; 18]);
//! ```

use rayon::prelude::*;

use crate::matmul::kernels::{ABlock, BSliver, CTile, Kernel, MR};
use crate::ops::conv::Conv2dGeom;
use crate::ops::conv_taps::{segments, Gather, Taps};

/// Fewest input channels per group for this path (below it, a patch run is too
/// short to beat the gathers of [`crate::ops::conv_batched`]).
pub(crate) const MIN_CHANNELS: usize = 8;
/// Output pixels per tile (a multiple of `MR`).
const TILE: usize = 96;
/// Depth block of the micro-kernel.
const KC: usize = 256;
/// Output pixels per job, about (whole images).
const JOB_PIXELS: usize = 2048;

/// Whether this path takes `g` (already a batched geometry).
pub(crate) fn takes(g: &Conv2dGeom) -> bool {
    g.cg >= MIN_CHANNELS
}

/// `(N, C, P) -> (N, P, C)` (or back, with `c` and `p` swapped), by 8 x 8 blocks
/// ([`Gather::transpose8`]: in registers on AVX2).
fn transpose(gth: Gather, x: &[f32], n: usize, c: usize, p: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; n * c * p];
    transpose_into(gth, x, c, p, &mut out);
    out
}

/// [`transpose`] into `out` (as long as `x`, whole `(C, P)` images).
fn transpose_into(gth: Gather, x: &[f32], c: usize, p: usize, out: &mut [f32]) {
    const B: usize = 8;
    if c * p == 0 {
        return;
    }
    for (src, dst) in x.chunks_exact(c * p).zip(out.chunks_exact_mut(c * p)) {
        let (cb, pb) = (c - c % B, p - p % B);
        for c0 in (0..cb).step_by(B) {
            for p0 in (0..pb).step_by(B) {
                gth.transpose8(&src[c0 * p + p0..], p, &mut dst[p0 * c + c0..], c);
            }
        }
        // The edges: channels past cb, pixels past pb.
        for ci in 0..c {
            let pixels = if ci < cb { pb..p } else { 0..p };
            for pi in pixels {
                dst[pi * c + ci] = src[ci * p + pi];
            }
        }
    }
}

/// The weights of `wt: (O, C/g, kh*kw)` as `(O, kh*kw, C/g)`.
fn permute_weights(wt: &[f32], g: &Conv2dGeom) -> Vec<f32> {
    let taps = g.kh * g.kw;
    transpose(Gather::Scalar, wt, g.o, g.cg, taps)
}

/// Columns `k0..k1` of rows `q0..q0 + len` of `colt` for group `gi`: with
/// `k = t*cg + ci`, `dst[j*ld + k - k0] = xt[n, idx_t(p), gi*cg + ci]`, 0 in the
/// padding; columns past `k1 - k0` are left alone.
#[allow(clippy::too_many_arguments)]
fn build_cols(
    xt: &[f32],
    g: &Conv2dGeom,
    taps: &Taps,
    gi: usize,
    (q0, len): (usize, usize),
    (k0, k1): (usize, usize),
    ld: usize,
    dst: &mut [f32],
) {
    let (ohw, hw, cg) = (g.oh * g.ow, g.h * g.w, g.cg);
    let (t0, t1) = (k0 / cg, k1.div_ceil(cg));
    for (n, p, l, j) in segments(q0, len, ohw) {
        let img = &xt[n * hw * g.c..(n + 1) * hw * g.c];
        for (jj, offs) in taps.cols(p, l).chunks_exact(taps.taps).enumerate() {
            let row = &mut dst[(j + jj) * ld..];
            for (t, &o) in offs.iter().enumerate().take(t1).skip(t0) {
                // This tap's columns t*cg.. clipped to k0..k1.
                let (a, b) = ((t * cg).max(k0), ((t + 1) * cg).min(k1));
                let run = &mut row[a - k0..b - k0];
                if (o as usize) < hw {
                    let at = o as usize * g.c + gi * cg;
                    run.copy_from_slice(&img[at + a - t * cg..at + b - t * cg]);
                } else {
                    run.fill(0.0);
                }
            }
        }
    }
}

/// `B` packed for the micro-kernel: `ceil(cols / nr)` slivers, sliver `s` row `p`
/// = `m[p][s*nr ..]` for the `rows x cols` row-major matrix `m` transposed or not.
fn pack_b(kernel: Kernel, m: &[f32], rows: usize, cols: usize, transposed: bool) -> Vec<f32> {
    // As B, the matrix is (depth, cols): element (p, j) = m[p][j], or m[j][p]
    // when `transposed` (then m is cols x rows).
    let nr = kernel.nr();
    let mut out = vec![0.0f32; cols.div_ceil(nr) * nr * rows];
    for (s, sliver) in out.chunks_exact_mut(rows * nr).enumerate() {
        for (p, row) in sliver.chunks_exact_mut(nr).enumerate() {
            for (l, d) in row.iter_mut().enumerate() {
                let j = s * nr + l;
                if j < cols {
                    *d = if transposed {
                        m[j * rows + p]
                    } else {
                        m[p * cols + j]
                    };
                }
            }
        }
    }
    out
}

/// `C (m x nr*slivers) (+)= A (m x kc, rows read in place) * B (packed slivers)` for
/// one depth block; rows of A past `m` repeat the last row (their C rows are scratch,
/// `c` has `m` rounded up to `MR` rows).
#[allow(clippy::too_many_arguments)]
fn block_product(
    kernel: Kernel,
    a: &[f32],
    a_row: impl Fn(usize) -> usize,
    a_step: usize,
    m: usize,
    kc: usize,
    b: &[f32],
    b_stride: usize,
    slivers: usize,
    c: &mut [f32],
    ldc: usize,
    add: bool,
) {
    let nr = kernel.nr();
    for s in 0..slivers {
        let bs = BSliver {
            data: &b[s * b_stride..],
            stride: nr,
        };
        for r0 in (0..m).step_by(MR) {
            let rows = std::array::from_fn(|r| a_row((r0 + r).min(m - 1)));
            let tile = CTile {
                data: c,
                offset: r0 * ldc + s * nr,
                ld: ldc,
                add,
            };
            kernel.run(
                kc,
                ABlock {
                    data: a,
                    rows,
                    step: a_step,
                },
                bs,
                nr,
                tile,
            );
        }
    }
}

/// Images per job: whole images, about [`JOB_PIXELS`] output pixels.
fn images_per_job(g: &Conv2dGeom) -> usize {
    (JOB_PIXELS / (g.oh * g.ow).max(1)).clamp(1, g.n.max(1))
}

/// Forward on contiguous buffers (`x: (N, C, H, W)`, `wt: (O, C/g, kh, kw)`) ->
/// `(N, O, H', W')` data.
pub(crate) fn conv2d(
    kernel: Kernel,
    x: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    g: &Conv2dGeom,
) -> Vec<f32> {
    let (ohw, k, hw, nr) = (g.oh * g.ow, g.k(), g.h * g.w, kernel.nr());
    let gth = Gather::for_kernel(kernel);
    let mut out = vec![0.0f32; g.n * g.o * ohw];
    if out.is_empty() || k == 0 {
        // No input channels: every output is the bias.
        if let Some(b) = bias {
            for (row, &bv) in out.chunks_mut(ohw.max(1)).zip(b.iter().cycle()) {
                row.fill(bv);
            }
        }
        return out;
    }
    let (taps, wp) = (Taps::new(g), permute_weights(wt, g));
    // B = W_g^T (K, O/g) per group.
    let packed: Vec<Vec<f32>> = (0..g.groups)
        .map(|gi| {
            pack_b(
                kernel,
                &wp[gi * g.og * k..(gi + 1) * g.og * k],
                k,
                g.og,
                true,
            )
        })
        .collect();
    let (slivers, ipj) = (g.og.div_ceil(nr), images_per_job(g));
    let ldc = slivers * nr;
    out.par_chunks_mut(ipj * g.o * ohw)
        .enumerate()
        .for_each_init(
            || {
                (
                    vec![0.0f32; TILE * k],
                    vec![0.0f32; TILE.next_multiple_of(MR) * ldc],
                )
            },
            |(colt, cbuf), (jb, dst)| {
                let total = dst.len() / g.o;
                // This job's images, channels-last (small enough to stay in cache).
                let x0 = jb * ipj * g.c * hw;
                let xt = transpose(
                    gth,
                    &x[x0..x0 + total / ohw * g.c * hw],
                    total / ohw,
                    g.c,
                    hw,
                );
                for (gi, b) in packed.iter().enumerate() {
                    for t0 in (0..total).step_by(TILE) {
                        let tw = TILE.min(total - t0);
                        build_cols(&xt, g, &taps, gi, (t0, tw), (0, k), k, colt);
                        for pc in (0..k).step_by(KC) {
                            let kc = KC.min(k - pc);
                            let b = &b[pc * nr..];
                            block_product(
                                kernel,
                                colt,
                                |r| r * k + pc,
                                1,
                                tw,
                                kc,
                                b,
                                k * nr,
                                slivers,
                                cbuf,
                                ldc,
                                pc > 0,
                            );
                        }
                        // Back to (N, O, pixels), with the bias.
                        for (n, p, len, j) in segments(t0, tw, ohw) {
                            for r in 0..g.og {
                                let o = gi * g.og + r;
                                let bv = bias.map_or(0.0, |b| b[o]);
                                let d = &mut dst[(n * g.o + o) * ohw + p..][..len];
                                for (i, d) in d.iter_mut().enumerate() {
                                    *d = cbuf[(j + i) * ldc + r] + bv;
                                }
                            }
                        }
                    }
                }
            },
        );
    out
}

/// Input gradient on contiguous buffers (`dy: (N, O, H', W')`, `wt`) ->
/// `(N, C, H, W)` data.
pub(crate) fn backward_input(kernel: Kernel, dy: &[f32], wt: &[f32], g: &Conv2dGeom) -> Vec<f32> {
    let (ohw, k, hw, nr) = (g.oh * g.ow, g.k(), g.h * g.w, kernel.nr());
    let gth = Gather::for_kernel(kernel);
    let mut dx = vec![0.0f32; g.n * g.c * hw];
    if dx.is_empty() || k == 0 || ohw == 0 || g.og == 0 {
        return dx;
    }
    let (taps, wp) = (Taps::new(g), permute_weights(wt, g));
    // B = W_g (O/g, K) per group.
    let packed: Vec<Vec<f32>> = (0..g.groups)
        .map(|gi| {
            pack_b(
                kernel,
                &wp[gi * g.og * k..(gi + 1) * g.og * k],
                g.og,
                k,
                false,
            )
        })
        .collect();
    let (slivers, ipj, cg) = (k.div_ceil(nr), images_per_job(g), g.cg);
    let ldc = slivers * nr;
    let tile = (TILE / 2).next_multiple_of(MR);
    dx.par_chunks_mut(ipj * g.c * hw).enumerate().for_each_init(
        || (vec![0.0f32; tile * ldc], vec![0.0f32; ipj * g.c * hw]),
        |(cbuf, local), (jb, dst)| {
            let total = dst.len() / (g.c * hw) * ohw;
            // This job's dx^T (channels-last), small enough to stay in cache.
            let dxt = &mut local[..dst.len()];
            dxt.fill(0.0);
            let q_job = jb * ipj * ohw;
            for (gi, b) in packed.iter().enumerate() {
                for t0 in (0..total).step_by(tile) {
                    let tw = tile.min(total - t0);
                    // Row r of A = dy^T: pixel q = q_job + t0 + r, read along o.
                    let a_row = |r: usize| {
                        let q = q_job + t0 + r;
                        ((q / ohw) * g.o + gi * g.og) * ohw + q % ohw
                    };
                    for pc in (0..g.og).step_by(KC) {
                        let kc = KC.min(g.og - pc);
                        let b = &b[pc * nr..];
                        let row = |r| a_row(r) + pc * ohw;
                        block_product(
                            kernel,
                            dy,
                            row,
                            ohw,
                            tw,
                            kc,
                            b,
                            g.og * nr,
                            slivers,
                            cbuf,
                            ldc,
                            pc > 0,
                        );
                    }
                    // col2im: each pixel's run for tap t goes back onto its input pixel.
                    for (n, p, len, j) in segments(t0, tw, ohw) {
                        let img = &mut dxt[n * hw * g.c..(n + 1) * hw * g.c];
                        let cols = taps.cols(p, len);
                        for (jj, offs) in cols.chunks_exact(taps.taps).enumerate() {
                            let row = &cbuf[(j + jj) * ldc..(j + jj) * ldc + k];
                            for (&o, run) in offs.iter().zip(row.chunks_exact(cg)) {
                                if (o as usize) < hw {
                                    let at = o as usize * g.c + gi * cg;
                                    let d = &mut img[at..at + cg];
                                    d.iter_mut().zip(run).for_each(|(d, &v)| *d += v);
                                }
                            }
                        }
                    }
                }
            }
            transpose_into(gth, dxt, hw, g.c, dst);
        },
    );
    dx
}

/// Weight gradient on contiguous buffers (`x: (N, C, H, W)`, `dy: (N, O, H', W')`)
/// -> `(O, C/g, kh, kw)` data.
pub(crate) fn backward_weight(kernel: Kernel, x: &[f32], dy: &[f32], g: &Conv2dGeom) -> Vec<f32> {
    let (ohw, k, hw, nr) = (g.oh * g.ow, g.k(), g.h * g.w, kernel.nr());
    let gth = Gather::for_kernel(kernel);
    let total = g.n * ohw;
    if g.o * k == 0 || total == 0 {
        return vec![0.0f32; g.o * k];
    }
    let (taps, ipj) = (Taps::new(g), images_per_job(g));
    let mpad = g.og.next_multiple_of(MR);
    let slivers = k.div_ceil(nr);
    // Jobs: (group, strip of K's slivers), each over every pixel in the same order,
    // so the split does not change the result.
    let strips = slivers.min(rayon::current_num_threads().max(1));
    let per = slivers.div_ceil(strips);
    let strips = slivers.div_ceil(per);
    let jobs: Vec<(usize, usize)> = (0..g.groups)
        .flat_map(|gi| (0..strips).map(move |s| (gi, s)))
        .collect();
    let results: Vec<Vec<f32>> = jobs
        .into_par_iter()
        .map(|(gi, strip)| {
            let (k0, k1) = (strip * per * nr, ((strip + 1) * per * nr).min(k));
            let ldc = (k1 - k0).next_multiple_of(nr);
            let mut c = vec![0.0f32; mpad * ldc];
            let mut apack = vec![0.0f32; mpad * KC];
            let mut colt = vec![0.0f32; KC * ldc];
            let mut xt_buf = vec![0.0f32; ipj * g.c * hw];
            // Runs of whole images, turned channels-last one run at a time (small
            // enough to stay in cache); depth blocks within a run.
            for r0 in (0..total).step_by(ipj * ohw) {
                let rl = (ipj * ohw).min(total - r0);
                let (n0, nimg) = (r0 / ohw, rl / ohw);
                let xt = &mut xt_buf[..nimg * g.c * hw];
                transpose_into(gth, &x[n0 * g.c * hw..(n0 + nimg) * g.c * hw], g.c, hw, xt);
                for q0 in (r0..r0 + rl).step_by(KC) {
                    let kc = KC.min(r0 + rl - q0);
                    // A = dy_g (O/g, kc): sliver t, column j holds rows t*MR .. t*MR + MR.
                    let apack = &mut apack[..mpad * kc];
                    for (t, sliver) in apack.chunks_exact_mut(kc * MR).enumerate() {
                        for r in 0..MR {
                            let o = t * MR + r;
                            if o >= g.og {
                                sliver.iter_mut().skip(r).step_by(MR).for_each(|v| *v = 0.0);
                                continue;
                            }
                            for (n, p, len, j) in segments(q0, kc, ohw) {
                                let src = &dy[(n * g.o + gi * g.og + o) * ohw + p..][..len];
                                let dst = sliver[j * MR + r..].iter_mut().step_by(MR);
                                dst.zip(src).for_each(|(d, &v)| *d = v);
                            }
                        }
                    }
                    // B = colt (kc, k0..k1) in place, row stride ldc (the columns past
                    // k1 - k0 stay 0).
                    build_cols(xt, g, &taps, gi, (q0 - r0, kc), (k0, k1), ldc, &mut colt);
                    for s in 0..ldc / nr {
                        for t in 0..mpad / MR {
                            let tile = CTile {
                                data: &mut c,
                                offset: t * MR * ldc + s * nr,
                                ld: ldc,
                                add: true,
                            };
                            let b = BSliver {
                                data: &colt[s * nr..],
                                stride: ldc,
                            };
                            kernel.run(kc, ABlock::packed(apack, t, kc), b, nr, tile);
                        }
                    }
                }
            }
            c
        })
        .collect();
    // dW' (O, kh*kw, C/g) -> (O, C/g, kh*kw).
    let mut dwp = vec![0.0f32; g.o * k];
    for (i, c) in results.iter().enumerate() {
        let (gi, strip) = (i / strips, i % strips);
        let (k0, k1) = (strip * per * nr, ((strip + 1) * per * nr).min(k));
        let ldc = c.len() / mpad;
        for r in 0..g.og {
            let d = &mut dwp[(gi * g.og + r) * k + k0..(gi * g.og + r) * k + k1];
            d.copy_from_slice(&c[r * ldc..r * ldc + k1 - k0]);
        }
    }
    transpose(Gather::Scalar, &dwp, g.o, g.kh * g.kw, g.cg)
}

#[cfg(test)]
#[path = "conv_nhwc_tests.rs"]
mod tests;
