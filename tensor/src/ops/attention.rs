//! Scaled dot-product attention, flash style: `softmax(Q K^T * scale + mask) V`
//! without ever holding the `Lq x Lk` score matrix (the UNet lesson's transformer
//! blocks; the materialising version is [`super::attention_naive`], kept as the
//! reference).
//!
//! Shapes: `q: (.., Lq, D)`, `k: (.., Lk, D)`, `v: (.., Lk, Dv)` -> `(.., Lq, Dv)`;
//! the batch dims `..` (e.g. `(B, H)`) broadcast, `Lk` may differ from `Lq`
//! (cross-attention), any strides (a `(B, L, H, D) -> (B, H, L, D)` transpose is read
//! in place). `mask` is additive and broadcasts to `(.., Lq, Lk)`; `causal` lets query
//! `i` see keys `j <= i` (PyTorch's top-left alignment); `scale` defaults to
//! `1/sqrt(D)`.
//!
//! The idea (Dao et al., FlashAttention; Rabe & Staats): cut the queries into tiles
//! of `bq` rows and walk the keys in blocks of [`BK`]. For each block the scores of
//! the tile are computed, and the softmax is kept *online*: a running max `m` and
//! sum `l` per query, and when a new block raises the max, the sum and the output
//! accumulator `O` are rescaled by `exp(m_old - m_new)` before the block's
//! `P V` is added. At the end `O / l` is the exact softmax-weighted sum. Memory per
//! task is one block of scores and the accumulator ([`scratch_floats`]), whatever
//! `Lq` and `Lk` are.
//!
//! Both products run on the matmul micro-kernel ([`Kernel`], lesson 01) with a
//! layout chosen so that nothing is copied twice: scores are computed transposed,
//! `S^T = K Q^T`, so that a `MR x NR` tile of the kernel (6 keys x 32 queries) lands
//! exactly where the packed right operand of the second product `O^T += V^T P^T`
//! expects it. The softmax then runs across keys with queries in the vector lanes
//! ([`super::vmath`]), and the output is transposed back once at the end. See
//! [`super::attention_tile`] for the per-tile steps.
//!
//! ```
//! use tensor::Tensor;
//! // One query, two keys: scores [1, 3] (scale 1), weights softmax([1, 3]).
//! let q = Tensor::from_vec(vec![1.0, 0.0], [1, 2]).unwrap();
//! let k = Tensor::from_vec(vec![1.0, 5.0, 3.0, 7.0], [2, 2]).unwrap();
//! let v = Tensor::from_vec(vec![10.0, 20.0], [2, 1]).unwrap();
//! let o = q.scaled_dot_product_attention(&k, &v, None, Some(1.0), false).unwrap();
//! let w = 1.0 / (1.0 + (2.0f32).exp()); // weight of the first key
//! assert!((o.to_vec().unwrap()[0] - (10.0 * w + 20.0 * (1.0 - w))).abs() < 1e-5);
//! ```

use rayon::prelude::*;

use super::attention_tile::{run_task, Scratch, TaskCtx};
use crate::error::{Result, TensorError};
use crate::matmul::kernels::{Kernel, MR};
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Keys per block (a multiple of the micro-kernel's `MR = 6` rows).
pub const BK: usize = 192;
/// Depth of one pass of the score product; larger head dims are summed in chunks.
pub const KC_ATT: usize = 256;

/// Most query slivers (of the kernel's `nr` queries) one task takes.
pub const MAX_SLIVERS: usize = 16;

/// Queries per task for kernel width `nr`: up to `MAX_SLIVERS * nr` (512 on AVX-512,
/// so a block of packed keys and values serves many queries), fewer when `lq` is
/// short or when `batch * tiles` would leave some of `threads` idle.
pub fn query_tile(nr: usize, lq: usize, batch: usize, threads: usize) -> usize {
    let mut bq = (MAX_SLIVERS * nr).min(lq.next_multiple_of(nr)).max(nr);
    while bq > nr && batch * lq.div_ceil(bq) < 4 * threads {
        bq = (bq / 2).next_multiple_of(nr);
    }
    bq
}

/// Floats of scratch one task uses, for head dims `d`, `dv`, kernel width `nr` and
/// `bq` queries: packed queries (`bq d`), a block of packed keys (`BK d`) and values
/// (`BK dv6`, `dv` rounded up to a multiple of 6), one sliver of scores (`BK nr`),
/// the accumulator (`dv6 bq`), max / sum / rescale per query (`3 bq`) and one
/// kernel tile (`6 x 32`). Independent of `Lq` and `Lk`.
pub fn scratch_floats(d: usize, dv: usize, nr: usize, bq: usize) -> usize {
    let dv6 = dv.div_ceil(MR) * MR;
    bq * d + BK * d + BK * dv6 + BK * nr + dv6 * bq + 3 * bq + MR * nr
}

/// The checked, broadcast operands shared by the fast and the naive kernels.
pub(crate) struct Prepared {
    pub q: Tensor,
    pub k: Tensor,
    pub v: Tensor,
    pub mask: Option<Tensor>,
    pub batch: Vec<usize>,
    pub scale: f32,
    pub lq: usize,
    pub lk: usize,
    pub d: usize,
    pub dv: usize,
}

const OP: &str = "scaled_dot_product_attention";

fn split_batch<'a>(t: &'a Tensor, what: &str) -> Result<(&'a [usize], usize, usize)> {
    let dims = t.dims();
    if dims.len() < 2 {
        return Err(TensorError::invalid(
            OP,
            format!("{what} must be (.., L, D), got {dims:?}"),
        ));
    }
    let r = dims.len();
    Ok((&dims[..r - 2], dims[r - 2], dims[r - 1]))
}

/// Check shapes, broadcast the batch dims (and the mask) and fix the scale.
pub(crate) fn prepare(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: Option<f32>,
) -> Result<Prepared> {
    let (qb, lq, d) = split_batch(q, "q")?;
    let (kb, lk, dk) = split_batch(k, "k")?;
    let (vb, lv, dv) = split_batch(v, "v")?;
    if dk != d {
        return Err(TensorError::invalid(
            OP,
            format!(
                "q and k head dims differ: q {:?}, k {:?}",
                q.dims(),
                k.dims()
            ),
        ));
    }
    if lv != lk {
        return Err(TensorError::invalid(
            OP,
            format!("k and v lengths differ: k {:?}, v {:?}", k.dims(), v.dims()),
        ));
    }
    let b = Shape::broadcast(OP, &Shape::new(qb.to_vec()), &Shape::new(kb.to_vec()))?;
    let b = Shape::broadcast(OP, &b, &Shape::new(vb.to_vec()))?;
    let batch = b.dims().to_vec();
    let full = |l: usize, c: usize| [batch.clone(), vec![l, c]].concat();
    let mask = match mask {
        None => None,
        Some(m) => Some(m.broadcast_as(full(lq, lk)).map_err(|_| {
            TensorError::invalid(
                OP,
                format!(
                    "mask {:?} does not broadcast to {:?}",
                    m.dims(),
                    full(lq, lk)
                ),
            )
        })?),
    };
    let scale = match scale {
        Some(s) if !s.is_finite() => {
            return Err(TensorError::invalid(
                OP,
                format!("scale must be finite, got {s}"),
            ))
        }
        Some(s) => s,
        None => 1.0 / (d.max(1) as f32).sqrt(),
    };
    Ok(Prepared {
        q: q.broadcast_as(full(lq, d))?,
        k: k.broadcast_as(full(lk, d))?,
        v: v.broadcast_as(full(lk, dv))?,
        mask,
        batch,
        scale,
        lq,
        lk,
        d,
        dv,
    })
}

/// Storage offset of batch item `b` (row-major over the batch dims) of `t`, whose
/// last two dims are the matrix.
pub(crate) fn batch_offset(t: &Tensor, mut b: usize) -> usize {
    let l = t.layout();
    let r = l.rank();
    let mut off = l.offset();
    for i in (0..r - 2).rev() {
        let n = l.dims()[i];
        off += (b % n) * l.strides()[i];
        b /= n;
    }
    off
}

impl Tensor {
    /// `softmax(self K^T * scale + mask) V` with `self` the queries, computed tile by
    /// tile without materialising the scores (see the module docs for shapes).
    /// `scale: None` means `1/sqrt(D)`; `causal` masks keys after each query.
    pub fn scaled_dot_product_attention(
        &self,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        scale: Option<f32>,
        causal: bool,
    ) -> Result<Tensor> {
        let p = prepare(self, k, v, mask, scale)?;
        #[cfg(feature = "wgpu")]
        if self.is_gpu() || k.is_gpu() || v.is_gpu() {
            return crate::wgpu::attention::attention(&p, causal);
        }
        attention_with(Kernel::detect(), &p, causal)
    }

    /// [`Tensor::scaled_dot_product_attention`] with a chosen micro-kernel (tests run
    /// every kernel this CPU has).
    pub fn scaled_dot_product_attention_with(
        &self,
        kernel: Kernel,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        scale: Option<f32>,
        causal: bool,
    ) -> Result<Tensor> {
        let p = prepare(self, k, v, mask, scale)?;
        attention_with(kernel, &p, causal)
    }
}

fn attention_with(kernel: Kernel, p: &Prepared, causal: bool) -> Result<Tensor> {
    let nb: usize = p.batch.iter().product();
    let out_dims = [p.batch.clone(), vec![p.lq, p.dv]].concat();
    let mut out = vec![0.0f32; nb * p.lq * p.dv];
    if out.is_empty() || p.lk == 0 {
        return Tensor::from_vec(out, out_dims); // no keys: an empty sum, zeros
    }
    let mask = match &p.mask {
        Some(m) => Some((m, m.cpu_storage()?)),
        None => None,
    };
    let threads = rayon::current_num_threads();
    let bq = query_tile(kernel.nr(), p.lq, nb, threads);
    let ctx = TaskCtx {
        kernel,
        q: (p.q.cpu_storage()?, &p.q),
        k: (p.k.cpu_storage()?, &p.k),
        v: (p.v.cpu_storage()?, &p.v),
        mask,
        scale: p.scale,
        causal,
        bq,
        lk: p.lk,
        d: p.d,
        dv: p.dv,
    };
    let mut tasks: Vec<(usize, usize, &mut [f32])> = Vec::new();
    for (b, head) in out.chunks_mut(p.lq * p.dv).enumerate() {
        for (t, rows) in head.chunks_mut(bq * p.dv).enumerate() {
            tasks.push((b, t * bq, rows));
        }
    }
    let ctx = &ctx;
    if threads > 1 && tasks.len() > 1 {
        tasks.into_par_iter().for_each_init(
            || Scratch::new(ctx),
            |scr, (b, q0, rows)| run_task(ctx, scr, b, q0, rows),
        );
    } else {
        let mut scr = Scratch::new(ctx);
        for (b, q0, rows) in tasks {
            run_task(ctx, &mut scr, b, q0, rows);
        }
    }
    Tensor::from_vec(out, out_dims)
}
