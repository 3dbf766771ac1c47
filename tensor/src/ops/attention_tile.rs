//! The per-task steps of [`super::attention`]: one tile of `bq` queries of one batch
//! item against all its keys, block by block (the UNet lesson's flash attention).
//!
//! Buffers (all in `Scratch`, reused from task to task), with `nr` the
//! micro-kernel width (32 on AVX-512) and `MR = 6`:
//!
//! - `qp`: `scale * Q^T`, packed as `nr`-query slivers: sliver `s`, depth chunk
//!   starting at `pc` of length `kc`, is `kc x nr` at `bq * pc + s * kc * nr`.
//! - `kp`: a block of keys as `MR`-key slivers: `kc x 6` at `BK * pc + t * kc * 6`.
//! - `vp`: the block's values as `MR`-dim slivers: key `i`, dims `6u..6u+6` at
//!   `u * BK * 6 + i * 6`.
//! - `p`: the scores, then probabilities, of one query sliver `s` and one key block:
//!   `BK x nr`, row `i` = key `k0 + i`, lane `j` = query `q0 + s * nr + j`. The kernel
//!   tile for key sliver `t` is rows `6t..6t+6` of it: written in place, never copied.
//! - `ot`: the accumulator `O^T` per query sliver: `dv6 x nr` at `s * dv6 * nr`.
//! - `m`, `l`, `alpha`: running max, running sum and this block's rescale factor,
//!   one per query.
//!
//! ```
//! use tensor::ops::attention::{query_tile, scratch_floats};
//! // (2, 8, 4096, 40) on AVX-512 (nr = 32): 512-query tasks with 262 KB of scratch,
//! // one per thread however long the sequences are (the scores would be 1 GiB).
//! assert_eq!(query_tile(32, 4096, 16, 1), 512);
//! assert_eq!(scratch_floats(40, 40, 32, 512) * 4, 262_400);
//! // CLIP's 77 tokens: one tile of 96 queries (77 rounded up to the kernel width).
//! assert_eq!(query_tile(32, 77, 24, 1), 96);
//! // One head of 1024 queries on 16 threads: tiles shrink so every thread has work.
//! assert_eq!(query_tile(32, 1024, 1, 16), 32);
//! ```

use super::attention::{batch_offset, BK, KC_ATT};
use super::vmath::{dispatch, exp_fast_v, Scalar, Simd, SimdFn};
#[cfg(target_arch = "x86_64")]
use super::vmath_x86::Avx2;
use crate::matmul::kernels::{Kernel, MR};
use crate::tensor::Tensor;

/// Read-only inputs shared by every task.
pub(crate) struct TaskCtx<'a> {
    pub kernel: Kernel,
    pub q: (&'a [f32], &'a Tensor),
    pub k: (&'a [f32], &'a Tensor),
    pub v: (&'a [f32], &'a Tensor),
    pub mask: Option<(&'a Tensor, &'a [f32])>,
    pub scale: f32,
    pub causal: bool,
    /// Queries per task (a multiple of the kernel width).
    pub bq: usize,
    pub lk: usize,
    pub d: usize,
    pub dv: usize,
}

/// One task's buffers (see the module docs for their layouts).
pub(crate) struct Scratch {
    qp: Vec<f32>,
    kp: Vec<f32>,
    vp: Vec<f32>,
    p: Vec<f32>,
    ot: Vec<f32>,
    m: Vec<f32>,
    l: Vec<f32>,
    alpha: Vec<f32>,
    tile: Vec<f32>,
}

impl Scratch {
    pub(crate) fn new(c: &TaskCtx<'_>) -> Scratch {
        Scratch::sized(c.kernel.nr(), c.bq, c.d, c.dv)
    }

    /// Buffers for kernel width `nr`, `bq` queries, head dims `d` and `dv`.
    fn sized(nr: usize, bq: usize, d: usize, dv: usize) -> Scratch {
        let dv6 = dv.div_ceil(MR) * MR;
        Scratch {
            qp: vec![0.0; bq * d],
            kp: vec![0.0; BK * d],
            vp: vec![0.0; BK * dv6],
            p: vec![0.0; BK * nr],
            ot: vec![0.0; dv6 * bq],
            m: vec![0.0; bq],
            l: vec![0.0; bq],
            alpha: vec![0.0; bq],
            tile: vec![0.0; MR * nr],
        }
    }

    /// Floats held, for the memory accounting (checked against `scratch_floats`).
    #[cfg(test)]
    fn floats(&self) -> usize {
        [
            &self.qp,
            &self.kp,
            &self.vp,
            &self.p,
            &self.ot,
            &self.m,
            &self.l,
            &self.alpha,
            &self.tile,
        ]
        .iter()
        .map(|v| v.len())
        .sum()
    }
}

/// Depth chunks `(pc, kc)` of a head dim `d`.
fn chunks(d: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..d)
        .step_by(KC_ATT)
        .map(move |pc| (pc, KC_ATT.min(d - pc)))
}

/// The matrix of batch item `b` of a tensor `(.., rows, cols)`, read in place.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    off: usize,
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    fn new(data: &'a [f32], t: &Tensor, b: usize) -> Mat<'a> {
        let s = t.strides();
        Mat {
            data,
            off: batch_offset(t, b),
            rs: s[s.len() - 2],
            cs: s[s.len() - 1],
        }
    }

    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[self.off + i * self.rs + j * self.cs]
    }

    /// Columns `j..j + n` of row `i` as a slice, when they are adjacent.
    #[inline(always)]
    fn row(&self, i: usize, j: usize, n: usize) -> Option<&'a [f32]> {
        (self.cs == 1 || n <= 1).then(|| &self.data[self.off + i * self.rs + j..][..n])
    }
}

/// Attention for queries `q0..q0 + rows.len() / dv` of batch item `b`, written into
/// `rows` (row-major `(nq, dv)`).
/// The whole task runs on the vector width that goes with the micro-kernel: the
/// widest ([`dispatch`]) with the AVX-512 kernel, AVX2 with the AVX2 one, one lane
/// with the portable one (so testing every kernel tests every width).
pub(crate) fn run_task(c: &TaskCtx<'_>, s: &mut Scratch, b: usize, q0: usize, rows: &mut [f32]) {
    let task = Task { c, s, b, q0, rows };
    match c.kernel {
        Kernel::Portable => task.call(Scalar),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2Fma(_) => match Avx2::detect() {
            Some(t) => super::vmath_x86::run_avx2(t, task),
            None => task.call(Scalar),
        },
        _ => dispatch(task),
    }
}

struct Task<'a, 'b> {
    c: &'a TaskCtx<'b>,
    s: &'a mut Scratch,
    b: usize,
    q0: usize,
    rows: &'a mut [f32],
}

impl SimdFn for Task<'_, '_> {
    type Out = ();
    #[inline(always)]
    fn call<S: Simd>(self, simd: S) {
        task(simd, self.c, self.s, self.b, self.q0, self.rows)
    }
}

#[inline(always)]
fn task<S: Simd>(simd: S, c: &TaskCtx<'_>, s: &mut Scratch, b: usize, q0: usize, rows: &mut [f32]) {
    let (nr, d, dv) = (c.kernel.nr(), c.d, c.dv);
    let bq = c.bq;
    let nq = rows.len() / dv;
    let nsl = nq.div_ceil(nr);
    let dv6 = dv.div_ceil(MR) * MR;
    // scale * Q^T, zero past the last query.
    let q = Mat::new(c.q.0, c.q.1, b);
    s.qp.fill(0.0);
    for (pc, kc) in chunks(d) {
        for j in 0..nq {
            let base = bq * pc + (j / nr) * kc * nr + j % nr;
            for p in 0..kc {
                s.qp[base + p * nr] = q.at(q0 + j, pc + p) * c.scale;
            }
        }
    }
    s.m.fill(f32::NEG_INFINITY);
    s.l.fill(0.0);
    s.ot.fill(0.0);
    let kend = if c.causal { c.lk.min(q0 + nq) } else { c.lk };
    let (k, v) = (Mat::new(c.k.0, c.k.1, b), Mat::new(c.v.0, c.v.1, b));
    for k0 in (0..kend).step_by(BK) {
        let nk = BK.min(kend - k0);
        let nks = nk.div_ceil(MR);
        pack_keys(&k, k0, nk, d, &mut s.kp);
        pack_values(&v, k0, nk, dv, &mut s.vp);
        for sq in 0..nsl {
            let qa = q0 + sq * nr; // first query of the sliver
            let qn = nr.min(nq - sq * nr);
            if c.causal && k0 > qa + qn - 1 {
                continue; // every key of the block is after every query here
            }
            let p = &mut s.p[..BK * nr];
            // Scores S^T = K (scale Q)^T, one 6 x nr kernel tile at a time.
            if d == 0 {
                p.fill(0.0); // an empty dot product
            }
            for t in 0..nks {
                let dst = &mut p[t * MR * nr..][..MR * nr];
                for (ci, (pc, kc)) in chunks(d).enumerate() {
                    let a = &s.kp[BK * pc + t * kc * MR..][..kc * MR];
                    let bsl = &s.qp[bq * pc + sq * kc * nr..][..kc * nr];
                    if ci == 0 {
                        c.kernel.run_tile(kc, a, bsl, dst);
                    } else {
                        c.kernel.run_tile(kc, a, bsl, &mut s.tile);
                        for (x, &y) in dst.iter_mut().zip(s.tile.iter()) {
                            *x += y;
                        }
                    }
                }
            }
            let p = &mut p[..nk * nr];
            add_mask(c, b, (qa, qn), k0, nr, p);
            let lanes = sq * nr..(sq + 1) * nr;
            OnlineSoftmax {
                p,
                nr,
                m: &mut s.m[lanes.clone()],
                l: &mut s.l[lanes.clone()],
                alpha: &mut s.alpha[lanes.clone()],
            }
            .call(simd);
            // O^T = alpha * O^T + V^T P^T, 6 dims x nr queries per kernel call.
            let alpha = &s.alpha[lanes];
            let ot = &mut s.ot[sq * dv6 * nr..][..dv6 * nr];
            for (u, acc) in ot.chunks_exact_mut(MR * nr).enumerate() {
                let a = &s.vp[u * BK * MR..][..nk * MR];
                c.kernel.run_tile(nk, a, p, &mut s.tile);
                for (acc_row, t_row) in acc.chunks_exact_mut(nr).zip(s.tile.chunks_exact(nr)) {
                    for ((o, &x), &al) in acc_row.iter_mut().zip(t_row).zip(alpha) {
                        *o = *o * al + x;
                    }
                }
            }
        }
    }
    // O = O^T transposed back, divided by the softmax sums.
    for (j, row) in rows.chunks_exact_mut(dv).enumerate() {
        let (sq, lane) = (j / nr, j % nr);
        let l = s.l[j];
        let ot = &s.ot[sq * dv6 * nr..];
        for (dim, o) in row.iter_mut().enumerate() {
            *o = ot[dim * nr + lane] / l;
        }
    }
}

/// Keys `k0..k0 + nk` as `MR`-key slivers, zero past `nk` (layout in the module docs).
fn pack_keys(k: &Mat<'_>, k0: usize, nk: usize, d: usize, kp: &mut [f32]) {
    for (pc, kc) in chunks(d) {
        for t in 0..nk.div_ceil(MR) {
            let sl = &mut kp[BK * pc + t * kc * MR..][..kc * MR];
            let keys = MR.min(nk - t * MR);
            let rows: [Option<&[f32]>; MR] = std::array::from_fn(|r| {
                (r < keys).then(|| k.row(k0 + t * MR + r, pc, kc)).flatten()
            });
            if rows.iter().all(Option::is_some) {
                // Six whole rows with adjacent columns: a 6 x kc transpose.
                let rows: [&[f32]; MR] = std::array::from_fn(|r| rows[r].unwrap_or(&[]));
                for (p, col) in sl.chunks_exact_mut(MR).enumerate() {
                    for (x, row) in col.iter_mut().zip(rows) {
                        *x = row[p];
                    }
                }
            } else {
                for (p, col) in sl.chunks_exact_mut(MR).enumerate() {
                    for (r, x) in col.iter_mut().enumerate() {
                        let key = t * MR + r;
                        *x = if key < nk {
                            k.at(k0 + key, pc + p)
                        } else {
                            0.0
                        };
                    }
                }
            }
        }
    }
}

/// Values `k0..k0 + nk` as `MR`-dim slivers, zero past `dv` (layout in the module docs).
fn pack_values(v: &Mat<'_>, k0: usize, nk: usize, dv: usize, vp: &mut [f32]) {
    let whole = dv / MR;
    for i in 0..nk {
        match v.row(k0 + i, 0, dv) {
            Some(row) => {
                let mut slivers = vp.chunks_exact_mut(BK * MR);
                // (Chunks first: a zip drops the item of its first iterator when
                // the second one runs out.)
                for (ch, sl) in row.chunks_exact(MR).zip(&mut slivers) {
                    sl[i * MR..][..MR].copy_from_slice(ch);
                }
                if let Some(sl) = slivers.next() {
                    let rest = &row[whole * MR..];
                    let dst = &mut sl[i * MR..][..MR];
                    dst[..rest.len()].copy_from_slice(rest);
                    dst[rest.len()..].fill(0.0);
                }
            }
            None => {
                for (u, sl) in vp.chunks_exact_mut(BK * MR).enumerate() {
                    for (r, x) in sl[i * MR..][..MR].iter_mut().enumerate() {
                        let dim = u * MR + r;
                        *x = if dim < dv { v.at(k0 + i, dim) } else { 0.0 };
                    }
                }
            }
        }
    }
}

/// Add the mask and the causal `-inf`s to a block of scores `p` (`nk x nr`, lane `j`
/// = query `qa + j` for `j < qn`, row `i` = key `k0 + i`).
fn add_mask(
    c: &TaskCtx<'_>,
    b: usize,
    (qa, qn): (usize, usize),
    k0: usize,
    nr: usize,
    p: &mut [f32],
) {
    if let Some((mt, md)) = c.mask {
        let m = Mat::new(md, mt, b);
        for (i, row) in p.chunks_exact_mut(nr).enumerate() {
            for (j, x) in row[..qn].iter_mut().enumerate() {
                *x += m.at(qa + j, k0 + i);
            }
        }
    }
    if c.causal {
        for (i, row) in p.chunks_exact_mut(nr).enumerate() {
            let key = k0 + i;
            for (j, x) in row[..qn].iter_mut().enumerate() {
                if key > qa + j {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
    }
}

/// The online-softmax update for one block: with queries in the lanes,
/// `m_new = max(m, max_i p[i])`, `alpha = exp(m - m_new)`, `p = exp(p - m_new)`,
/// `l = alpha * l + sum_i p[i]`. While every score so far is `-inf` the reference
/// max is 0 instead, so `exp(-inf - -inf)` never makes a NaN.
struct OnlineSoftmax<'a> {
    p: &'a mut [f32],
    nr: usize,
    m: &'a mut [f32],
    l: &'a mut [f32],
    alpha: &'a mut [f32],
}

impl SimdFn for OnlineSoftmax<'_> {
    type Out = ();
    #[inline(always)]
    fn call<S: Simd>(self, s: S) {
        let OnlineSoftmax { p, nr, m, l, alpha } = self;
        let ninf = s.splat(f32::NEG_INFINITY);
        for c in (0..nr).step_by(S::LANES) {
            let m_old = s.load(&m[c..]);
            let mut mx = m_old;
            for row in p.chunks_exact(nr) {
                mx = s.max(mx, s.load(&row[c..]));
            }
            let mref = s.select_gt(mx, ninf, mx, s.splat(0.0));
            let a = exp_fast_v(s, s.sub(m_old, mref));
            let mut sum = s.splat(0.0);
            for row in p.chunks_exact_mut(nr) {
                let e = exp_fast_v(s, s.sub(s.load(&row[c..]), mref));
                s.store(e, &mut row[c..]);
                sum = s.add(sum, e);
            }
            s.store(s.add(s.mul(s.load(&l[c..]), a), sum), &mut l[c..]);
            s.store(mx, &mut m[c..]);
            s.store(a, &mut alpha[c..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Scratch;
    use crate::ops::attention::scratch_floats;

    #[test]
    fn scratch_floats_counts_every_buffer() {
        for (nr, bq, d, dv) in [
            (32, 512, 40, 40),
            (16, 64, 80, 77),
            (32, 32, 1, 0),
            (16, 256, 300, 7),
        ] {
            let s = Scratch::sized(nr, bq, d, dv);
            assert_eq!(
                s.floats(),
                scratch_floats(d, dv, nr, bq),
                "{nr} {bq} {d} {dv}"
            );
        }
    }
}
