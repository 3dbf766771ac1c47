//! Micro-kernels of the SIMD rung ([`super::simd`], lesson `lessons/01-matmul`).
//!
//! A micro-kernel computes one `MR x NR` tile of C from a packed sliver of A
//! (`kc` columns of `MR` values) and a packed sliver of B (`kc` rows of `NR` values):
//! `tile[r][j] = sum_p a[p][r] * b[p][j]`. Every tile element lives in a register
//! for the whole loop over `p`; each step loads one row of the B sliver, broadcasts
//! each of the `MR` values of A, and issues `MR * NR / lanes` fused multiply-adds.
//!
//! | kernel | tile | registers | needs |
//! |---|---|---|---|
//! | `Avx512` | 6 x 32 | 12 zmm accumulators (16 lanes) | AVX-512F |
//! | `Avx2Fma` | 6 x 16 | 12 ymm accumulators (8 lanes) | AVX2 + FMA |
//! | `Portable` | 6 x 16 | an array LLVM vectorises | nothing |
//!
//! The x86 kernels are chosen at run time with `is_x86_feature_detected!`; the
//! portable one is correct on every target. All three add the products for one tile
//! element in the same order (`p = 0, 1, ..`); the x86 ones fuse each multiply-add.
//!
//! ```
//! use tensor::matmul::kernels::{Kernel, MR};
//! let k = Kernel::portable();
//! assert_eq!((MR, k.nr()), (6, 16));
//! assert!(Kernel::available().contains(&k));
//! ```

/// Rows of every kernel's register tile.
pub const MR: usize = 6;
/// The widest tile any kernel has (sizes the tile buffer).
pub const NR_MAX: usize = 32;

/// Proof that `is_x86_feature_detected!("avx512f")` said yes (the field is private,
/// so only [`Kernel::avx512`] makes one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuHasAvx512(());

/// Proof that the CPU reported AVX2 and FMA (made only by [`Kernel::avx2`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuHasAvx2Fma(());

/// Which micro-kernel runs. Holding an x86 variant proves the CPU supports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// AVX-512F, 6 x 32 tile.
    Avx512(CpuHasAvx512),
    /// AVX2 + FMA, 6 x 16 tile.
    Avx2Fma(CpuHasAvx2Fma),
    /// Plain Rust, 6 x 16 tile.
    Portable,
}

impl Kernel {
    /// The fastest kernel this CPU supports.
    pub fn detect() -> Kernel {
        Kernel::avx512()
            .or_else(Kernel::avx2)
            .unwrap_or(Kernel::Portable)
    }

    /// The AVX-512 kernel, if this CPU has AVX-512F.
    pub fn avx512() -> Option<Kernel> {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            return Some(Kernel::Avx512(CpuHasAvx512(())));
        }
        None
    }

    /// The AVX2 + FMA kernel, if this CPU has both.
    pub fn avx2() -> Option<Kernel> {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Some(Kernel::Avx2Fma(CpuHasAvx2Fma(())));
        }
        None
    }

    /// The portable kernel.
    pub fn portable() -> Kernel {
        Kernel::Portable
    }

    /// Every kernel this CPU can run, fastest first (tests run them all).
    pub fn available() -> Vec<Kernel> {
        [Kernel::avx512(), Kernel::avx2(), Some(Kernel::Portable)]
            .into_iter()
            .flatten()
            .collect()
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512(_) => "avx512f",
            Kernel::Avx2Fma(_) => "avx2+fma",
            Kernel::Portable => "portable",
        }
    }

    /// Width of the register tile (columns of B per packed sliver).
    pub fn nr(self) -> usize {
        match self {
            Kernel::Avx512(_) => 32,
            Kernel::Avx2Fma(_) | Kernel::Portable => 16,
        }
    }

    /// `tile = A_sliver * B_sliver` over depth `kc`; `tile` is row-major `MR x nr()`.
    /// Panics (a bounds check, never undefined behaviour) if `a` is shorter than
    /// `kc * MR`, `b` than `kc * nr()`, or `tile` than `MR * nr()`.
    #[inline]
    pub(crate) fn run(self, kc: usize, a: &[f32], b: &[f32], tile: &mut [f32]) {
        let nr = self.nr();
        let (a, b, tile) = (&a[..kc * MR], &b[..kc * nr], &mut tile[..MR * nr]);
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => {
                // SAFETY: a `CpuHasAvx512` token exists only if the CPU reported
                // AVX-512F, the one feature the function enables; `a`, `b` and `tile`
                // were just sliced to exactly the lengths it reads and writes.
                unsafe { x86::kernel_avx512(kc, a, b, tile) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma(_) => {
                // SAFETY: a `CpuHasAvx2Fma` token exists only if the CPU reported AVX2
                // and FMA; the slices have exactly the lengths the kernel touches.
                unsafe { x86::kernel_avx2(kc, a, b, tile) }
            }
            _ => kernel_portable(a, b, tile),
        }
    }
}

/// The portable micro-kernel: `MR x 16` accumulators in a fixed-size array, which
/// LLVM keeps in vector registers and vectorises along the 16 columns.
fn kernel_portable(a: &[f32], b: &[f32], tile: &mut [f32]) {
    const NR: usize = 16;
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
    use super::MR;
    use std::arch::x86_64::{
        __m256, __m512, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps,
        _mm256_storeu_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps,
    };

    /// 6 rows x 32 columns of C in 12 zmm accumulators (two 16-lane vectors a row).
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `a.len() >= kc * 6`, `b.len() >= kc * 32` and
    /// `tile.len() >= 6 * 32`. Loads and stores are unaligned, so any alignment works.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn kernel_avx512(kc: usize, a: &[f32], b: &[f32], tile: &mut [f32]) {
        const NR: usize = 32;
        let mut acc: [[__m512; 2]; MR] = [[_mm512_setzero_ps(); 2]; MR];
        let (mut ap, mut bp) = (a.as_ptr(), b.as_ptr());
        for _ in 0..kc {
            // Step p reads a[p*6 .. p*6+6] and b[p*32 .. p*32+32]: in bounds for
            // p < kc by the length requirement.
            let b0 = _mm512_loadu_ps(bp);
            let b1 = _mm512_loadu_ps(bp.add(16));
            for (r, acc_r) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*ap.add(r));
                acc_r[0] = _mm512_fmadd_ps(av, b0, acc_r[0]);
                acc_r[1] = _mm512_fmadd_ps(av, b1, acc_r[1]);
            }
            ap = ap.add(MR);
            bp = bp.add(NR);
        }
        // Row r of the tile is tile[r*32 .. r*32+32], inside the required length.
        let tp = tile.as_mut_ptr();
        for (r, acc_r) in acc.iter().enumerate() {
            _mm512_storeu_ps(tp.add(r * NR), acc_r[0]);
            _mm512_storeu_ps(tp.add(r * NR + 16), acc_r[1]);
        }
    }

    /// 6 rows x 16 columns of C in 12 ymm accumulators (two 8-lane vectors a row).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; `a.len() >= kc * 6`, `b.len() >= kc * 16`
    /// and `tile.len() >= 6 * 16`. Loads and stores are unaligned.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn kernel_avx2(kc: usize, a: &[f32], b: &[f32], tile: &mut [f32]) {
        const NR: usize = 16;
        let mut acc: [[__m256; 2]; MR] = [[_mm256_setzero_ps(); 2]; MR];
        let (mut ap, mut bp) = (a.as_ptr(), b.as_ptr());
        for _ in 0..kc {
            // Step p reads a[p*6 .. p*6+6] and b[p*16 .. p*16+16]: in bounds.
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
        let tp = tile.as_mut_ptr();
        for (r, acc_r) in acc.iter().enumerate() {
            _mm256_storeu_ps(tp.add(r * NR), acc_r[0]);
            _mm256_storeu_ps(tp.add(r * NR + 8), acc_r[1]);
        }
    }
}
