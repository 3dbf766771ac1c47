//! Rung 4 of the matmul ladder: packing plus a register-blocked SIMD micro-kernel
//! (lesson `lessons/01-matmul`), in the BLIS / GotoBLAS style.
//!
//! What it adds over [`super::blocked`]:
//!
//! - **Register blocking.** The micro-kernel ([`super::kernels`]) computes a whole
//!   `MR x NR` tile of C in registers: `6 x 32` in twelve 16-lane AVX-512 accumulators,
//!   or `6 x 16` in twelve 8-lane AVX2 ones. Each step `p` loads one row of B (two
//!   vectors), broadcasts 6 values of A, and issues 12 fused multiply-adds, so every
//!   value loaded is used 6 or `NR` times and memory traffic stops being the limit.
//! - **Packing.** Before the micro-kernel runs, a `KC x NC` panel of B is copied into
//!   `NR`-wide slivers (row `p` of a sliver is `NR` adjacent floats) and an `MC x KC`
//!   block of A into `MR`-tall slivers (column `p` is 6 adjacent floats), zero-padded at
//!   the edges. The kernel then reads both with unit stride, whatever the strides of
//!   the original views: a transposed A or B is absorbed by the packing, not copied.
//! - **Cache blocking** as in the previous rung, with sizes chosen for the packed
//!   slivers: a B sliver (`KC x NR`, 32 KB for AVX-512) stays in L1, the packed A
//!   block (`MC x KC`, 120 KB) in L2, the packed B panel (up to 3 MB) in L3.
//!
//! The x86_64 kernels use AVX-512F or AVX2 + FMA via `std::arch`, chosen at run time
//! with `is_x86_feature_detected!`; everywhere else (or on an old CPU) a portable
//! kernel runs, written so the compiler can vectorise it. Sums are accumulated in
//! `KC`-deep pieces (and with fused multiply-adds), so results match
//! [`super::naive`] to rounding, not bit for bit.
//!
//! Shapes: A (m x k), B (k x n) through [`MatRef`]s with any strides; C contiguous
//! (m x n), overwritten.
//!
//! ```
//! use tensor::matmul::{simd, MatRef};
//! let a = [1.0, 2.0, 3.0, 4.0]; // [[1, 2], [3, 4]]
//! let b = [5.0, 6.0, 7.0, 8.0]; // [[5, 6], [7, 8]]
//! let mut c = [0.0; 4];
//! simd::gemm(
//!     MatRef::row_major(&a, 2, 2).unwrap(),
//!     MatRef::row_major(&b, 2, 2).unwrap(),
//!     &mut c,
//! );
//! assert_eq!(c, [19.0, 22.0, 43.0, 50.0]);
//! ```

use super::kernels::NR_MAX;
pub use super::kernels::{Kernel, MR};
use super::MatRef;

/// Depth of a packed panel.
pub const KC: usize = 256;
/// Rows of A packed at once (a multiple of `MR`).
pub const MC: usize = 120;
/// Columns of B packed at once (a multiple of every kernel's width).
pub const NC: usize = 3072;

/// A zeroed buffer of at least `len` floats whose start is 64-byte aligned, so packed
/// rows of B line up with cache lines (a 64-byte vector load then never straddles
/// two lines). Returns the storage and the offset of the aligned start.
pub(crate) fn aligned_buffer(len: usize) -> (Vec<f32>, usize) {
    let buf = vec![0.0f32; len + 16];
    let off = buf.as_ptr().align_offset(64).min(16);
    (buf, off)
}

/// Pack rows `pc..pc+kc`, columns `jc..jc+nc` of B into `nr`-wide slivers: sliver `s`
/// occupies `dst[s*kc*nr ..]`, row `p` of it is `nr` floats (zero past column `nc`).
pub(crate) fn pack_b(
    b: MatRef<'_>,
    (pc, kc): (usize, usize),
    (jc, nc): (usize, usize),
    nr: usize,
    dst: &mut [f32],
) {
    let panel = b.rows_range(pc, kc).cols_range(jc, nc);
    for (s, sliver) in dst
        .chunks_exact_mut(kc * nr)
        .take(nc.div_ceil(nr))
        .enumerate()
    {
        let j0 = s * nr;
        let w = nr.min(nc - j0);
        let part = panel.cols_range(j0, w);
        for (p, row) in sliver.chunks_exact_mut(nr).enumerate() {
            match part.row_slice(p) {
                Some(src) => row[..w].copy_from_slice(src),
                None => {
                    for (j, x) in row[..w].iter_mut().enumerate() {
                        *x = part.at(p, j);
                    }
                }
            }
            row[w..].fill(0.0);
        }
    }
}

/// Pack rows `ic..ic+mc`, columns `pc..pc+kc` of A into `MR`-tall slivers: sliver `t`
/// occupies `dst[t*kc*MR ..]`, column `p` of it is `MR` floats (zero past row `mc`).
pub(crate) fn pack_a(
    a: MatRef<'_>,
    (ic, mc): (usize, usize),
    (pc, kc): (usize, usize),
    dst: &mut [f32],
) {
    let block = a.rows_range(ic, mc).cols_range(pc, kc);
    for (t, sliver) in dst
        .chunks_exact_mut(kc * MR)
        .take(mc.div_ceil(MR))
        .enumerate()
    {
        let i0 = t * MR;
        let h = MR.min(mc - i0);
        for r in 0..h {
            // Column p of the sliver gets A[i0 + r][p] at position p*MR + r.
            match block.row_slice(i0 + r) {
                Some(src) => {
                    for (col, &v) in sliver.chunks_exact_mut(MR).zip(src) {
                        col[r] = v;
                    }
                }
                None => {
                    for (p, col) in sliver.chunks_exact_mut(MR).enumerate() {
                        col[r] = block.at(i0 + r, p);
                    }
                }
            }
        }
        for col in sliver.chunks_exact_mut(MR) {
            col[h..].fill(0.0);
        }
    }
}

/// Everything one block of rows of C needs for one `(jc, pc)` panel: pack its rows
/// of A, then run the micro-kernel over every `MR x nr` tile and add (or, for the
/// first panel `pc == 0`, store) the tile into C.
///
/// `c_rows` is rows `ic..ic+mc` of C (full width `n`); `bpack` is the packed panel.
#[allow(clippy::too_many_arguments)]
pub(crate) fn macro_kernel(
    kernel: Kernel,
    a: MatRef<'_>,
    (ic, mc): (usize, usize),
    (pc, kc): (usize, usize),
    (jc, nc): (usize, usize),
    bpack: &[f32],
    apack: &mut [f32],
    c_rows: &mut [f32],
    n: usize,
) {
    pack_a(a, (ic, mc), (pc, kc), apack);
    let nr = kernel.nr();
    let mut tile = [0.0f32; MR * NR_MAX];
    for (s, b_sliver) in bpack
        .chunks_exact(kc * nr)
        .take(nc.div_ceil(nr))
        .enumerate()
    {
        let jr = s * nr;
        let w = nr.min(nc - jr);
        for (t, a_sliver) in apack
            .chunks_exact(kc * MR)
            .take(mc.div_ceil(MR))
            .enumerate()
        {
            let ir = t * MR;
            let h = MR.min(mc - ir);
            kernel.run(kc, a_sliver, b_sliver, &mut tile);
            for (r, t_row) in tile.chunks_exact(nr).take(h).enumerate() {
                let start = (ir + r) * n + jc + jr;
                let c_row = &mut c_rows[start..start + w];
                if pc == 0 {
                    c_row.copy_from_slice(&t_row[..w]);
                } else {
                    for (c, &v) in c_row.iter_mut().zip(t_row) {
                        *c += v;
                    }
                }
            }
        }
    }
}

/// C = A * B with packing and the fastest micro-kernel this CPU has. Contract as
/// [`super::gemm`].
pub fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    gemm_with(Kernel::detect(), a, b, c);
}

/// C = A * B with packing and the portable micro-kernel (no `std::arch`).
pub fn gemm_portable(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    gemm_with(Kernel::portable(), a, b, c);
}

/// Floats needed to pack a `min(k, KC) x min(n, NC)` panel of B for `kernel`.
pub(crate) fn bpack_len(kernel: Kernel, k: usize, n: usize) -> usize {
    KC.min(k) * NC.min(n.next_multiple_of(kernel.nr()))
}

/// C = A * B with packing and the given micro-kernel, on the calling thread.
pub fn gemm_with(kernel: Kernel, a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].fill(0.0);
        return;
    }
    let nr = kernel.nr();
    let (mut bbuf, boff) = aligned_buffer(bpack_len(kernel, k, n));
    let (mut abuf, aoff) = aligned_buffer(MC.min(m.next_multiple_of(MR)) * KC.min(k));
    let (bpack, apack) = (&mut bbuf[boff..], &mut abuf[aoff..]);
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            pack_b(b, (pc, kc), (jc, nc), nr, bpack);
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                macro_kernel(
                    kernel,
                    a,
                    (ic, mc),
                    (pc, kc),
                    (jc, nc),
                    bpack,
                    apack,
                    &mut c[ic * n..(ic + mc) * n],
                    n,
                );
            }
        }
    }
}
