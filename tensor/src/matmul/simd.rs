//! Rung 4 of the matmul ladder: packing plus a register-blocked SIMD micro-kernel
//! (lesson `lessons/01-matmul`), in the BLIS / GotoBLAS style.
//!
//! What it adds over [`super::blocked`]:
//!
//! - **Register blocking.** The micro-kernel computes a whole `MR x NR = 6 x 16` tile of
//!   C in registers: twelve 8-wide AVX2 accumulators. Each step `p` loads 16 values of
//!   B (two vectors), broadcasts 6 values of A, and issues 12 fused multiply-adds, so
//!   every value loaded is used 6 or 16 times and memory traffic stops being the limit.
//! - **Packing.** Before the micro-kernel runs, a `KC x NC` panel of B is copied into
//!   `NR`-wide slivers (row `p` of a sliver is 16 adjacent floats) and an `MC x KC`
//!   block of A into `MR`-tall slivers (column `p` is 6 adjacent floats), zero-padded at
//!   the edges. The kernel then reads both with unit stride, whatever the strides of
//!   the original views: a transposed A or B is absorbed by the packing, not copied.
//! - **Cache blocking** as in the previous rung, with sizes chosen for the packed
//!   slivers: a B sliver (`KC x NR`, 16 KB) stays in L1, the packed A block
//!   (`MC x KC`, 120 KB) in L2, the packed B panel in L3.
//!
//! The x86_64 kernel uses AVX2 + FMA via `std::arch`, chosen at run time with
//! `is_x86_feature_detected!`; everywhere else (or on an old CPU) a portable kernel
//! with the same tile shape runs, written so the compiler can vectorise it.
//! Sums are accumulated in a different order (and with fused multiply-adds), so
//! results match [`super::naive`] to rounding, not bit for bit.
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

use super::MatRef;

/// Rows of the register tile (micro-kernel height).
pub const MR: usize = 6;
/// Columns of the register tile (micro-kernel width: two AVX2 vectors).
pub const NR: usize = 16;
/// Depth of a packed panel.
pub const KC: usize = 256;
/// Rows of A packed at once (a multiple of `MR`).
pub const MC: usize = 120;
/// Columns of B packed at once (a multiple of `NR`).
pub const NC: usize = 3072;

/// Which micro-kernel runs. Only [`Kernel::detect`] and [`Kernel::portable`] make one,
/// so holding `Kernel::Avx2Fma` proves the CPU has AVX2 and FMA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// x86_64 AVX2 + FMA, 6 x 16 tile in twelve ymm registers.
    Avx2Fma(CpuHasAvx2Fma),
    /// Plain Rust with the same tile shape; correct on every target.
    Portable,
}

/// A token that can only be made after `is_x86_feature_detected!` said yes to both
/// AVX2 and FMA (its field is private).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuHasAvx2Fma(());

impl Kernel {
    /// The fastest kernel this CPU supports.
    pub fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Kernel::Avx2Fma(CpuHasAvx2Fma(()));
            }
        }
        Kernel::Portable
    }

    /// The portable kernel (to test it on machines that would pick another).
    pub fn portable() -> Kernel {
        Kernel::Portable
    }

    /// A short name for reports ("avx2+fma" or "portable").
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx2Fma(_) => "avx2+fma",
            Kernel::Portable => "portable",
        }
    }

    /// `tile = A_sliver * B_sliver` over depth `kc`: `a` holds `kc` columns of `MR`
    /// values, `b` holds `kc` rows of `NR` values, `tile` is row-major `MR x NR`.
    /// Panics (a bounds check, never UB) if a sliver is shorter than `kc` steps.
    #[inline]
    fn run(self, kc: usize, a: &[f32], b: &[f32], tile: &mut [f32; MR * NR]) {
        let a = &a[..kc * MR];
        let b = &b[..kc * NR];
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma(_) => {
                // SAFETY: the `CpuHasAvx2Fma` token exists only if the CPU reported
                // AVX2 and FMA, so the target features the function enables are there;
                // `a` and `b` were just sliced to exactly `kc * MR` and `kc * NR`
                // elements, the lengths `kernel_avx2` reads.
                unsafe { x86::kernel_avx2(kc, a, b, tile) }
            }
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2Fma(_) => kernel_portable(a, b, tile),
            Kernel::Portable => kernel_portable(a, b, tile),
        }
    }
}

/// The portable micro-kernel: `MR x NR` accumulators in a fixed-size array, which
/// LLVM keeps in vector registers and vectorises along `NR`.
fn kernel_portable(a: &[f32], b: &[f32], tile: &mut [f32; MR * NR]) {
    let mut acc = [[0.0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for (acc_row, &av) in acc.iter_mut().zip(ap) {
            for (c, &bv) in acc_row.iter_mut().zip(bp) {
                *c += av * bv;
            }
        }
    }
    for (dst, src) in tile.chunks_exact_mut(NR).zip(&acc) {
        dst.copy_from_slice(src);
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{MR, NR};
    use std::arch::x86_64::{
        __m256, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps,
        _mm256_storeu_ps,
    };

    /// The AVX2 + FMA micro-kernel: 6 rows x 16 columns of C in 12 ymm accumulators.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA, `a.len() >= kc * MR` and
    /// `b.len() >= kc * NR`. All loads are unaligned (`loadu`), so no alignment is
    /// required.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn kernel_avx2(kc: usize, a: &[f32], b: &[f32], tile: &mut [f32; MR * NR]) {
        let mut acc: [[__m256; 2]; MR] = [[_mm256_setzero_ps(); 2]; MR];
        let mut ap = a.as_ptr();
        let mut bp = b.as_ptr();
        for _ in 0..kc {
            // Step p reads a[p*MR .. p*MR+6] and b[p*NR .. p*NR+16]: in bounds for
            // p < kc by the length requirement.
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*ap.add(r));
                acc_r[0] = _mm256_fmadd_ps(av, b0, acc_r[0]);
                acc_r[1] = _mm256_fmadd_ps(av, b1, acc_r[1]);
            }
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
        // `tile` has MR * NR = 96 elements: row r covers tile[r*16 .. r*16+16].
        let tp = tile.as_mut_ptr();
        for (r, acc_r) in acc.iter().enumerate() {
            _mm256_storeu_ps(tp.add(r * NR), acc_r[0]);
            _mm256_storeu_ps(tp.add(r * NR + 8), acc_r[1]);
        }
    }
}

/// Pack rows `pc..pc+kc`, columns `jc..jc+nc` of B into `NR`-wide slivers: sliver `s`
/// occupies `dst[s*kc*NR ..]`, row `p` of it is `NR` floats (zero past column `nc`).
pub(crate) fn pack_b(b: MatRef<'_>, pc: usize, kc: usize, jc: usize, nc: usize, dst: &mut [f32]) {
    let panel = b.rows_range(pc, kc).cols_range(jc, nc);
    for (s, sliver) in dst
        .chunks_exact_mut(kc * NR)
        .take(nc.div_ceil(NR))
        .enumerate()
    {
        let j0 = s * NR;
        let w = NR.min(nc - j0);
        let part = panel.cols_range(j0, w);
        for (p, row) in sliver.chunks_exact_mut(NR).enumerate() {
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
pub(crate) fn pack_a(a: MatRef<'_>, ic: usize, mc: usize, pc: usize, kc: usize, dst: &mut [f32]) {
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

/// Everything one `MC`-row block of C needs for one `(jc, pc)` panel: pack its rows
/// of A, then run the micro-kernel over every `MR x NR` tile and add (or, for the
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
    pack_a(a, ic, mc, pc, kc, apack);
    let mut tile = [0.0f32; MR * NR];
    for (s, b_sliver) in bpack
        .chunks_exact(kc * NR)
        .take(nc.div_ceil(NR))
        .enumerate()
    {
        let jr = s * NR;
        let nr = NR.min(nc - jr);
        for (t, a_sliver) in apack
            .chunks_exact(kc * MR)
            .take(mc.div_ceil(MR))
            .enumerate()
        {
            let ir = t * MR;
            let mr = MR.min(mc - ir);
            kernel.run(kc, a_sliver, b_sliver, &mut tile);
            for (r, t_row) in tile.chunks_exact(NR).take(mr).enumerate() {
                let start = (ir + r) * n + jc + jr;
                let c_row = &mut c_rows[start..start + nr];
                if pc == 0 {
                    c_row.copy_from_slice(&t_row[..nr]);
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
    let mut bpack = vec![0.0f32; KC.min(k) * NC.min(n.next_multiple_of(NR))];
    let mut apack = vec![0.0f32; MC.min(m.next_multiple_of(MR)) * KC.min(k)];
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            pack_b(b, pc, kc, jc, nc, &mut bpack);
            for ic in (0..m).step_by(MC) {
                let mc = MC.min(m - ic);
                macro_kernel(
                    kernel,
                    a,
                    (ic, mc),
                    (pc, kc),
                    (jc, nc),
                    &bpack,
                    &mut apack,
                    &mut c[ic * n..(ic + mc) * n],
                    n,
                );
            }
        }
    }
}
