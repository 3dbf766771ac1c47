//! 2-d convolution as implicit GEMM (introduced in the convolutions lesson, which
//! starts from the direct loops kept in [`crate::ops::conv_naive`] and goes through
//! explicit im2col + GEMM in [`crate::ops::conv_im2col`]).
//!
//! `x: (N, C, H, W)`, `weight: (O, C/groups, kh, kw)`, `bias: (O,)` ->
//! `(N, O, H', W')` with `H' = (H + 2*ph - dh*(kh-1) - 1) / sh + 1` (same for `W'`).
//! An unbatched `(C, H, W)` input gives `(O, H', W')`, as in PyTorch.
//!
//! The idea: the convolution of one image and group is the GEMM
//! `out_g (O/groups, H'*W') = W_g (O/groups, K) * col (K, H'*W')`, `K = C/groups*kh*kw`,
//! where `col` is the unfolded input (im2col). Implicit GEMM never builds `col`:
//!
//! - the weights are packed once into the micro-kernel's A slivers
//!   ([`PackedA`]) and reused for every pixel tile and image;
//! - the output pixels are cut into tiles of 128; for each tile and depth block
//!   (up to 1024 rows of `K`), [`crate::ops::conv_pack`] writes the patches straight
//!   into the B panel the micro-kernel reads, and [`gemm_packed_b`] runs the same
//!   micro-kernel as `matmul` into a small per-tile buffer;
//! - the bias is added as the tile is copied into the output;
//! - jobs of (image, group, run of tiles), and row blocks of the weights when there
//!   are too few tiles to go round, run on rayon threads.
//!
//! Extra memory, whatever the image size: the packed weights (the size of
//! `weight`), and per thread one B panel (`1024 x 128` floats, 512 KB) and one
//! C buffer (`O/groups x 128` floats, 256 KB at 512 channels).
//!
//! A batch of small images (two or more, at most 32x32 output pixels) is done
//! instead as one GEMM over all the images' pixels: [`crate::ops::conv_nhwc`]
//! (channels-last patches, 8+ input channels per group) or
//! [`crate::ops::conv_batched`] (gathered patches).
//!
//! ```
//! use tensor::Tensor;
//! let x = Tensor::arange(0.0, 9.0, 1.0).unwrap().reshape([1, 1, 3, 3]).unwrap();
//! let w = Tensor::ones([1, 1, 2, 2]);
//! let y = x.conv2d(&w, None, (1, 1), (0, 0), (1, 1), 1).unwrap();
//! assert_eq!(y.dims(), &[1, 1, 2, 2]);
//! assert_eq!(y.to_vec().unwrap(), vec![8.0, 12.0, 20.0, 24.0]);
//! ```

use rayon::prelude::*;

use crate::error::{Result, TensorError};
use crate::matmul::kernels::{Kernel, MR};
use crate::matmul::packed::{gemm_packed_b, PackedA};
use crate::matmul::MatRef;
use crate::ops::conv_pack::PatchPacker;
use crate::ops::{conv_batched, conv_nhwc};
use crate::tensor::Tensor;

/// Output pixels per tile (rounded to the kernel's `nr`): one tile's C buffer
/// (`O/groups x tile`) stays in L2 while the depth blocks add into it.
const TILE_PIXELS: usize = 128;

/// The resolved, validated sizes of one conv2d call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Conv2dGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub groups: usize,
    /// Input channels per group.
    pub cg: usize,
    /// Output channels per group.
    pub og: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dh: usize,
    pub dw: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Conv2dGeom {
    /// Check shapes and hyper-parameters; `input` must be (N, C, H, W).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        op: &'static str,
        input: &[usize],
        weight: &[usize],
        bias: Option<&[usize]>,
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Self> {
        let bad = |msg: String| Err(TensorError::invalid(op, msg));
        let &[n, c, h, w] = input else {
            return bad(format!(
                "input must be (N, C, H, W) or (C, H, W), got {input:?}"
            ));
        };
        let &[o, cg, kh, kw] = weight else {
            return bad(format!(
                "weight must be (O, C/groups, kh, kw), got {weight:?}"
            ));
        };
        if groups == 0 {
            return bad("groups must be at least 1, got 0".into());
        }
        if stride.0 == 0 || stride.1 == 0 {
            return bad(format!("stride must be positive, got {stride:?}"));
        }
        if dilation.0 == 0 || dilation.1 == 0 {
            return bad(format!("dilation must be positive, got {dilation:?}"));
        }
        if c % groups != 0 || o % groups != 0 {
            return bad(format!(
                "input channels {c} and output channels {o} must both be divisible by \
                 groups {groups} (input {input:?}, weight {weight:?})"
            ));
        }
        if cg * groups != c {
            return bad(format!(
                "input {input:?} has {c} channels but weight {weight:?} with groups {groups} \
                 expects {} (= {cg} * {groups})",
                cg * groups
            ));
        }
        if kh == 0 || kw == 0 {
            return bad(format!("kernel size must be positive, weight {weight:?}"));
        }
        if let Some(b) = bias {
            if b != [o] {
                return bad(format!(
                    "bias must be ({o},) for weight {weight:?}, got {b:?}"
                ));
            }
        }
        let ekh = dilation.0 * (kh - 1) + 1;
        let ekw = dilation.1 * (kw - 1) + 1;
        let (hp, wp) = (h + 2 * padding.0, w + 2 * padding.1);
        if ekh > hp || ekw > wp {
            return bad(format!(
                "kernel ({kh}, {kw}) with dilation {dilation:?} spans ({ekh}, {ekw}), larger \
                 than the padded input ({hp}, {wp}) (input {input:?}, padding {padding:?})"
            ));
        }
        Ok(Conv2dGeom {
            n,
            c,
            h,
            w,
            o,
            groups,
            cg,
            og: o / groups,
            kh,
            kw,
            sh: stride.0,
            sw: stride.1,
            ph: padding.0,
            pw: padding.1,
            dh: dilation.0,
            dw: dilation.1,
            oh: (hp - ekh) / stride.0 + 1,
            ow: (wp - ekw) / stride.1 + 1,
        })
    }

    /// Length of one unfolded patch: `C/groups * kh * kw`.
    pub fn k(&self) -> usize {
        self.cg * self.kh * self.kw
    }

    /// 1x1 kernel, stride 1, no padding: the input is its own im2col matrix.
    pub fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }
}

impl Tensor {
    /// 2-d convolution (cross-correlation, as `torch.nn.functional.conv2d`).
    ///
    /// `self: (N, C, H, W)` or `(C, H, W)`, `weight: (O, C/groups, kh, kw)`,
    /// `bias: (O,)` -> `(N, O, H', W')`. Any layout is accepted (non-contiguous
    /// inputs are copied once).
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Tensor> {
        run_conv2d(
            "conv2d", self, weight, bias, stride, padding, dilation, groups, conv2d_cpu,
        )
    }
}

/// What `conv2d` and `conv2d_naive` share around their loops: an unbatched
/// `(C, H, W)` input gets a batch dim of 1 (removed again from the result), shapes
/// and hyper-parameters are checked into a [`Conv2dGeom`] (errors name `op`), and
/// `kernel` gets the contiguous data of x, weight and bias and returns the
/// `(N, O, H', W')` output data.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_conv2d(
    op: &'static str,
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
    kernel: impl FnOnce(&[f32], &[f32], Option<&[f32]>, &Conv2dGeom) -> Vec<f32>,
) -> Result<Tensor> {
    let unbatched = x.rank() == 3;
    let x = if unbatched {
        x.unsqueeze(0)?
    } else {
        x.clone()
    };
    let g = Conv2dGeom::new(
        op,
        x.dims(),
        weight.dims(),
        bias.map(|b| b.dims()),
        stride,
        padding,
        dilation,
        groups,
    )?;
    #[cfg(feature = "wgpu")]
    if x.is_gpu() || weight.is_gpu() {
        let y = crate::wgpu::conv::conv2d(&x, weight, bias, &g)?;
        return if unbatched { y.squeeze(0) } else { Ok(y) };
    }
    let x = x.contiguous()?;
    let w = weight.contiguous()?;
    let b = bias.map(Tensor::contiguous).transpose()?;
    let out = kernel(
        contiguous_data(&x)?,
        contiguous_data(&w)?,
        b.as_ref().map(contiguous_data).transpose()?,
        &g,
    );
    let y = Tensor::from_vec(out, [g.n, g.o, g.oh, g.ow])?;
    if unbatched {
        y.squeeze(0)
    } else {
        Ok(y)
    }
}

/// The data of a tensor known to be contiguous.
pub(crate) fn contiguous_data(t: &Tensor) -> Result<&[f32]> {
    t.contiguous_slice()?.ok_or_else(|| {
        TensorError::invalid(
            "contiguous_data",
            format!("tensor {:?} is not contiguous", t.dims()),
        )
    })
}

/// How the output is cut into jobs.
struct Plan {
    /// Output pixels per tile, the unit of [`gemm_packed_b`] (the last tile of an
    /// image may be shorter).
    tile: usize,
    /// Output pixels per job: a run of whole tiles (the last run may be shorter).
    span: usize,
    /// Jobs per (image, group, row block).
    spans: usize,
    /// Output channels per row block of the weights (a multiple of `MR`).
    mrows: usize,
    /// Row blocks per group.
    mblocks: usize,
}

impl Plan {
    fn new(g: &Conv2dGeom, nr: usize, threads: usize) -> Plan {
        let ohw = g.oh * g.ow;
        let tile = if ohw <= TILE_PIXELS.max(nr) {
            ohw
        } else {
            TILE_PIXELS.next_multiple_of(nr)
        };
        let tiles = ohw.div_ceil(tile);
        // At most MAX_SPANS jobs per image: plenty to share out, and the list of
        // output row pieces stays small for big images.
        let span = tiles.div_ceil(MAX_SPANS) * tile;
        let spans = ohw.div_ceil(span);
        // Too few jobs for the threads: split the output channels too (each block
        // then packs its own panels, a small cost against the multiply-adds).
        let jobs = g.n * g.groups * spans;
        let want = 2 * threads;
        let mut mrows = g.og.next_multiple_of(MR);
        if jobs < want && threads > 1 {
            let split = want.div_ceil(jobs).min(g.og.div_ceil(MR));
            mrows = g.og.div_ceil(split).next_multiple_of(MR);
        }
        Plan {
            tile,
            span,
            spans,
            mrows,
            mblocks: g.og.div_ceil(mrows),
        }
    }
}

/// Most jobs per (image, group, row block) (see [`Plan::new`]).
const MAX_SPANS: usize = 64;

/// One job: image `n`, group `gi`, pixel run `t` (pixels `t*span ..`), weight row
/// block `mb`, and the pieces of output rows it writes (one per output channel).
struct Job<'o> {
    n: usize,
    gi: usize,
    t: usize,
    mb: usize,
    rows: Vec<&'o mut [f32]>,
}

/// The convolution on contiguous buffers; returns the (N, O, H', W') data.
fn conv2d_cpu(x: &[f32], wt: &[f32], bias: Option<&[f32]>, g: &Conv2dGeom) -> Vec<f32> {
    if conv_batched::use_batched(g) {
        if conv_nhwc::takes(g) {
            return conv_nhwc::conv2d(Kernel::detect(), x, wt, bias, g);
        }
        return conv_batched::conv2d(Kernel::detect(), x, wt, bias, g);
    }
    conv2d_with(Kernel::detect(), x, wt, bias, g)
}

/// [`conv2d_cpu`] with a chosen micro-kernel (tests run every kernel the CPU has).
pub(crate) fn conv2d_with(
    kernel: Kernel,
    x: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    g: &Conv2dGeom,
) -> Vec<f32> {
    let ohw = g.oh * g.ow;
    let k = g.k();
    let mut out = vec![0.0f32; g.n * g.o * ohw];
    if out.is_empty() {
        return out;
    }
    if k == 0 {
        // No input channels: every output is the bias.
        if let Some(b) = bias {
            for (row, &bv) in out.chunks_mut(ohw).zip(b.iter().cycle()) {
                row.fill(bv);
            }
        }
        return out;
    }
    let nr = kernel.nr();
    let plan = Plan::new(g, nr, rayon::current_num_threads().max(1));
    // Weights of group gi, rows mb*mrows.., packed once for all images and tiles.
    let packed: Vec<PackedA> = (0..g.groups * plan.mblocks)
        .map(|i| {
            let (gi, mb) = (i / plan.mblocks, i % plan.mblocks);
            let m0 = mb * plan.mrows;
            let a = MatRef {
                data: wt,
                offset: (gi * g.og + m0) * k,
                rows: plan.mrows.min(g.og - m0),
                cols: k,
                row_stride: k,
                col_stride: 1,
            };
            PackedA::new(kernel, a)
        })
        .collect();
    let jobs = hand_out(&mut out, g, &plan);
    let ntp_max = plan.tile.next_multiple_of(nr);
    let panel_len = packed
        .iter()
        .map(|a| a.panel_len(ntp_max))
        .max()
        .unwrap_or(0);
    let c_len = packed.iter().map(|a| a.c_len(ntp_max)).max().unwrap_or(0);
    jobs.into_par_iter().for_each_init(
        || {
            let scratch = (vec![0.0f32; panel_len + 16], vec![0.0f32; c_len]);
            (PatchPacker::new(x, g, nr), scratch)
        },
        |(packer, (panel, cbuf)), mut job| {
            let a = &packed[job.gi * plan.mblocks + job.mb];
            let x_off = (job.n * g.c + job.gi * g.cg) * g.h * g.w;
            let o0 = job.gi * g.og + job.mb * plan.mrows;
            // Start the panel on a 64-byte boundary so its rows fill cache lines.
            let skip = panel.as_ptr().align_offset(64).min(16);
            let panel = &mut panel[skip..];
            let p_start = job.t * plan.span;
            let p_end = (p_start + plan.span).min(ohw);
            for t0 in (p_start..p_end).step_by(plan.tile) {
                let tw = plan.tile.min(p_end - t0);
                let ntp = tw.next_multiple_of(nr);
                gemm_packed_b(a, ntp, panel, cbuf, |pc, kc, dst| {
                    packer.pack(x_off, (t0, tw), (pc, kc), dst);
                });
                // Copy the tile out, adding the bias.
                let at = t0 - p_start;
                for (r, row) in job.rows.iter_mut().enumerate() {
                    let (dst, src) = (&mut row[at..at + tw], &cbuf[r * ntp..r * ntp + tw]);
                    match bias {
                        Some(b) => {
                            let bv = b[o0 + r];
                            dst.iter_mut().zip(src).for_each(|(d, &v)| *d = v + bv);
                        }
                        None => dst.copy_from_slice(src),
                    }
                }
            }
        },
    );
    out
}

/// Cut `out: (N, O, H'*W')` into the jobs of `plan`: job `(n, g, t, mb)` gets, for
/// each output channel of row block `mb` of group `g`, its pixels `t*span ..`.
fn hand_out<'o>(out: &'o mut [f32], g: &Conv2dGeom, plan: &Plan) -> Vec<Job<'o>> {
    let ohw = g.oh * g.ow;
    let mut jobs = Vec::with_capacity(g.n * g.groups * plan.spans * plan.mblocks);
    for n in 0..g.n {
        for gi in 0..g.groups {
            for t in 0..plan.spans {
                for mb in 0..plan.mblocks {
                    let rows = Vec::with_capacity(plan.mrows);
                    jobs.push(Job { n, gi, t, mb, rows });
                }
            }
        }
    }
    for (i, row) in out.chunks_mut(ohw).enumerate() {
        let (n, o) = (i / g.o, i % g.o);
        let (gi, mb) = (o / g.og, (o % g.og) / plan.mrows);
        for (t, piece) in row.chunks_mut(plan.span).enumerate() {
            let j = ((n * g.groups + gi) * plan.spans + t) * plan.mblocks + mb;
            jobs[j].rows.push(piece);
        }
    }
    jobs
}

#[cfg(test)]
#[path = "conv_tests.rs"]
mod tests;
