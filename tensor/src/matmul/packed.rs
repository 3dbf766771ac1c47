//! GEMM on operands the caller packs: A packed once and reused, B packed panel by
//! panel by a callback (lesson `lessons/01-matmul`; the convolutions lesson uses it
//! for implicit GEMM).
//!
//! [`super::simd`] packs both operands from strided views inside every call. Some
//! callers know better: a convolution multiplies the *same* weights `A (m x k)` with
//! many pixel tiles, and its `B` (the unfolded input patches) does not exist as a
//! matrix at all. Here the caller
//!
//! - packs A once into a [`PackedA`]: `MR`-tall slivers, cut into depth blocks of at
//!   most [`PACKED_KC`] (balanced, so no block is a tiny leftover), and
//! - hands [`gemm_packed_b`] a closure that writes one `kc x ntp` panel of B straight
//!   into the micro-kernel's layout ([`sliver_offset`]: `nr`-wide slivers of `kc`
//!   rows each), for each depth block in turn.
//!
//! The loops are those of the SIMD rung: for each depth block the panel is packed,
//! then every `MR x nr` tile of `C` is computed by the same micro-kernel
//! (`Kernel::run`) and stored (first block) or added (later blocks).
//!
//! Shapes: A `(m x k)`; B `(k x n)` given as panels of `ntp = n` rounded up to the
//! kernel's `nr` columns; C `(m x ntp)` contiguous, rows `MR`-padded.
//!
//! ```
//! use tensor::matmul::kernels::Kernel;
//! use tensor::matmul::packed::{gemm_packed_b, sliver_offset, PackedA};
//! use tensor::matmul::MatRef;
//! // A = [[1, 2], [3, 4]], B = [[5, 6], [7, 8]].
//! let a = [1.0, 2.0, 3.0, 4.0];
//! let b = [[5.0, 6.0], [7.0, 8.0]];
//! let kernel = Kernel::portable();
//! let pa = PackedA::new(kernel, MatRef::row_major(&a, 2, 2).unwrap());
//! let ntp = 2usize.next_multiple_of(kernel.nr());
//! let mut panel = vec![0.0; pa.panel_len(ntp)];
//! let mut c = vec![0.0; pa.c_len(ntp)];
//! gemm_packed_b(&pa, ntp, &mut panel, &mut c, |pc, kc, dst| {
//!     for p in 0..kc {
//!         for j in 0..2 {
//!             dst[sliver_offset(kernel, kc, p, j)] = b[pc + p][j];
//!         }
//!     }
//! });
//! assert_eq!((&c[..2], &c[ntp..ntp + 2]), (&[19.0, 22.0][..], &[43.0, 50.0][..]));
//! ```

use super::kernels::{Kernel, MR, NR_MAX};
use super::simd::pack_a;
use super::MatRef;
use rayon::prelude::*;

/// Size of A (`m * k`) from which its depth blocks are packed in parallel.
const PARALLEL_PACK: usize = 1 << 16;

/// Deepest depth block. Deeper than the SIMD rung's `KC`: with the panel and the
/// C buffer owned by the caller, a deep block means fewer passes over C, and the
/// micro-kernel keeps its speed with the B sliver in L2 (measured on Zen 5).
pub const PACKED_KC: usize = 1024;

/// A matrix `A (m x k)` packed once for the micro-kernel: for each depth block
/// `(pc, kc)`, `ceil(m / MR)` slivers of `kc x MR` floats.
#[derive(Clone, Debug)]
pub struct PackedA {
    kernel: Kernel,
    m: usize,
    k: usize,
    /// Depth of every block but the last (which may be shorter).
    kcb: usize,
    /// `m` rounded up to a multiple of `MR`.
    mpad: usize,
    buf: Vec<f32>,
    off: usize,
}

impl PackedA {
    /// Pack all of `a` for `kernel`.
    pub fn new(kernel: Kernel, a: MatRef<'_>) -> PackedA {
        let (m, k) = (a.rows, a.cols);
        let kcb = balanced_kc(k);
        let mpad = m.next_multiple_of(MR);
        let (mut buf, off) = aligned_buffer(mpad * k);
        if m > 0 && k > 0 {
            // Block `i` (depth `i*kcb ..`) fills `buf[off + i*kcb*mpad ..]`; big
            // matrices pack their blocks on several threads.
            let data = &mut buf[off..off + mpad * k];
            let pack = |(i, dst): (usize, &mut [f32])| {
                let pc = i * kcb;
                pack_a(a, (0, m), (pc, kcb.min(k - pc)), MR, dst);
            };
            if m * k >= PARALLEL_PACK {
                data.par_chunks_mut(kcb * mpad).enumerate().for_each(pack);
            } else {
                data.chunks_mut(kcb * mpad).enumerate().for_each(pack);
            }
        }
        PackedA {
            kernel,
            m,
            k,
            kcb,
            mpad,
            buf,
            off,
        }
    }

    /// Rows of A.
    pub fn rows(&self) -> usize {
        self.m
    }

    /// Columns of A (the depth of the product).
    pub fn depth(&self) -> usize {
        self.k
    }

    /// The micro-kernel A was packed for.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The depth blocks `(pc, kc)`, in order.
    pub fn blocks(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        (0..self.k)
            .step_by(self.kcb.max(1))
            .map(|pc| (pc, self.kcb.min(self.k - pc)))
    }

    /// Floats a B panel of `ntp` columns needs (`ntp` a multiple of `nr`).
    pub fn panel_len(&self, ntp: usize) -> usize {
        self.kcb.min(self.k) * ntp
    }

    /// Floats of the C buffer for `ntp` columns: `m` rounded up to `MR` rows.
    pub fn c_len(&self, ntp: usize) -> usize {
        self.mpad * ntp
    }
}

/// Depth blocks of at most [`PACKED_KC`], as even as possible (4608 -> 5 blocks of
/// 922, not 4 of 1024 and one of 512): a short block pays the tile adds for little
/// work.
fn balanced_kc(k: usize) -> usize {
    let blocks = k.div_ceil(PACKED_KC).max(1);
    k.div_ceil(blocks).max(1)
}

/// Where element `(p, j)` of a `kc`-deep panel goes: sliver `j / nr`, row `p`, lane
/// `j % nr`.
#[inline]
pub fn sliver_offset(kernel: Kernel, kc: usize, p: usize, j: usize) -> usize {
    let nr = kernel.nr();
    (j / nr) * kc * nr + p * nr + j % nr
}

/// `C = A * B` for all rows of `a` and `ntp` columns of B (a multiple of the kernel's
/// `nr`), B supplied by `pack_b(pc, kc, panel)`, which must fill `panel[..kc * ntp]`
/// in the [`sliver_offset`] layout (columns past the real ones: any finite value).
///
/// `panel` is scratch of at least [`PackedA::panel_len`] floats; `c` gets the result,
/// row-major with row stride `ntp`, [`PackedA::c_len`] floats (rows past `m` are
/// scratch). Panics (a bounds check) if either is too short or `ntp % nr != 0`.
pub fn gemm_packed_b(
    a: &PackedA,
    ntp: usize,
    panel: &mut [f32],
    c: &mut [f32],
    mut pack_b: impl FnMut(usize, usize, &mut [f32]),
) {
    let kernel = a.kernel;
    let nr = kernel.nr();
    assert!(
        ntp.is_multiple_of(nr),
        "gemm_packed_b: ntp {ntp} is not a multiple of {nr}"
    );
    let c = &mut c[..a.mpad * ntp];
    if a.k == 0 || a.m == 0 {
        c.fill(0.0);
        return;
    }
    for (pc, kc) in a.blocks() {
        let panel = &mut panel[..kc * ntp];
        pack_b(pc, kc, panel);
        // Each sliver of B (in L1/L2) meets every sliver of A in turn (streamed from
        // L2/L3: measured as fast as blocking A's rows for L2, and simpler).
        let a_block = &a.buf[a.off + pc * a.mpad..a.off + (pc + kc) * a.mpad];
        for (s, b_sliver) in panel.chunks_exact(kc * nr).enumerate() {
            let pass = SliverPass {
                kc,
                a_rows: a_block,
                b_sliver,
                c_strip: &mut c[s * nr..],
                ldc: ntp,
                first: pc == 0,
            };
            pass.run(kernel);
        }
    }
}

/// One sliver of B against a run of A slivers: `C[t*MR.., ..nr] (+)= A_t * B` for
/// every sliver `t` in `a_rows`, the `MR x nr` tiles stored (`first`) or added into
/// `c_strip` (row stride `ldc`).
struct SliverPass<'s> {
    kc: usize,
    a_rows: &'s [f32],
    b_sliver: &'s [f32],
    c_strip: &'s mut [f32],
    ldc: usize,
    first: bool,
}

impl SliverPass<'_> {
    /// Run with the fastest code for `kernel`: for the x86 kernels, the loop (and
    /// the tile adds) are compiled with the kernel's own vector width.
    fn run(self, kernel: Kernel) {
        match kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => {
                // SAFETY: a `Kernel::Avx512` value exists only if the CPU reported
                // AVX-512F, the one feature `run_avx512` enables.
                unsafe { self.run_avx512(kernel) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma(_) => {
                // SAFETY: a `Kernel::Avx2Fma` value exists only if the CPU reported
                // AVX2 and FMA, the features `run_avx2` enables.
                unsafe { self.run_avx2(kernel) }
            }
            _ => self.run_generic(kernel),
        }
    }

    /// # Safety
    /// The CPU must support AVX-512F.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn run_avx512(self, kernel: Kernel) {
        self.run_generic(kernel)
    }

    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(self, kernel: Kernel) {
        self.run_generic(kernel)
    }

    #[inline(always)]
    fn run_generic(self, kernel: Kernel) {
        let nr = kernel.nr();
        let mut tile = [0.0f32; MR * NR_MAX];
        let block = self.kc * MR;
        for (t, a_sliver) in self.a_rows.chunks_exact(block).enumerate() {
            kernel.run_tile(self.kc, a_sliver, self.b_sliver, &mut tile);
            let c = &mut self.c_strip[t * MR * self.ldc..];
            match nr {
                32 => write_tile::<32>(&tile, c, self.ldc, self.first),
                16 => write_tile::<16>(&tile, c, self.ldc, self.first),
                _ => write_tile_any(&tile[..MR * nr], nr, c, self.ldc, self.first),
            }
        }
    }
}

/// Store (`first`) or add the `MR x NR` tile into `c` (row stride `ldc`); a fixed
/// width, so each row is a few vector moves.
#[inline(always)]
fn write_tile<const NR: usize>(tile: &[f32], c: &mut [f32], ldc: usize, first: bool) {
    for (r, t_row) in tile.chunks_exact(NR).take(MR).enumerate() {
        let (Ok(dst), Ok(src)) = (
            <&mut [f32; NR]>::try_from(&mut c[r * ldc..r * ldc + NR]),
            <&[f32; NR]>::try_from(t_row),
        ) else {
            continue; // unreachable: both slices are exactly NR long
        };
        if first {
            *dst = *src;
        } else {
            dst.iter_mut().zip(src).for_each(|(d, &v)| *d += v);
        }
    }
}

/// [`write_tile`] for any width `nr`.
#[inline(always)]
fn write_tile_any(tile: &[f32], nr: usize, c: &mut [f32], ldc: usize, first: bool) {
    for (r, t_row) in tile.chunks_exact(nr).enumerate() {
        let dst = &mut c[r * ldc..r * ldc + nr];
        if first {
            dst.copy_from_slice(t_row);
        } else {
            dst.iter_mut().zip(t_row).for_each(|(d, &v)| *d += v);
        }
    }
}

/// A zeroed buffer of at least `len` floats whose start is 64-byte aligned, so packed
/// rows line up with cache lines. Returns the storage and the offset of the aligned start.
fn aligned_buffer(len: usize) -> (Vec<f32>, usize) {
    let buf = vec![0.0f32; len + 16];
    let off = buf.as_ptr().align_offset(64).min(16);
    (buf, off)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::matmul::naive;
    use crate::test_util::values;
    use proptest::prelude::*;

    /// `gemm_packed_b` with B packed from a strided view (transposed when
    /// `b_transposed`), against the naive loops, for every kernel this CPU has.
    fn check(m: usize, k: usize, n: usize, b_transposed: bool, seed: u64) {
        let a = values(m * k, seed);
        let b = values(k * n, seed ^ 1);
        let bm = if b_transposed {
            MatRef::row_major(&b, n, k).unwrap().t()
        } else {
            MatRef::row_major(&b, k, n).unwrap()
        };
        let am = MatRef::row_major(&a, m, k).unwrap();
        let mut want = vec![0.0; m * n];
        naive::gemm(am, bm, &mut want);
        for kernel in Kernel::available() {
            let pa = PackedA::new(kernel, am);
            assert_eq!((pa.rows(), pa.depth(), pa.kernel()), (m, k, kernel));
            let ntp = n.next_multiple_of(kernel.nr());
            let mut panel = vec![f32::NAN; pa.panel_len(ntp)];
            let mut c = vec![f32::NAN; pa.c_len(ntp)];
            let mut seen = 0;
            gemm_packed_b(&pa, ntp, &mut panel, &mut c, |pc, kc, dst| {
                assert_eq!(pc, seen, "blocks come in order");
                seen += kc;
                for p in 0..kc {
                    for j in 0..ntp {
                        let v = if j < n { bm.at(pc + p, j) } else { 0.0 };
                        dst[sliver_offset(kernel, kc, p, j)] = v;
                    }
                }
            });
            // Every depth block comes once (none when A has no rows: nothing to do).
            assert_eq!(seen, if m > 0 { k } else { 0 }, "blocks cover the depth");
            for i in 0..m {
                for j in 0..n {
                    let (got, w) = (c[i * ntp + j], want[i * n + j]);
                    assert!(
                        (got - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{} m {m} k {k} n {n}: C[{i}][{j}] = {got}, want {w}",
                        kernel.name()
                    );
                }
            }
        }
    }

    #[test]
    fn depth_blocks_are_balanced_and_cover_k() {
        for k in [0, 1, 7, 255, 256, 257, 1000, 2880, 4608] {
            let a = vec![1.0; 7 * k];
            let pa = PackedA::new(Kernel::portable(), MatRef::row_major(&a, 7, k).unwrap());
            let blocks: Vec<_> = pa.blocks().collect();
            assert_eq!(blocks.iter().map(|b| b.1).sum::<usize>(), k);
            let (lo, hi) = blocks
                .iter()
                .fold((usize::MAX, 0), |(l, h), b| (l.min(b.1), h.max(b.1)));
            assert!(
                blocks.is_empty() || hi - lo <= blocks.len(),
                "k {k}: {blocks:?}"
            );
            assert!(blocks.iter().all(|b| b.1 <= PACKED_KC));
        }
    }

    #[test]
    fn deep_products_cross_several_blocks() {
        check(13, 2 * PACKED_KC + 37, 45, false, 3);
        check(6, PACKED_KC + 1, 1, true, 4);
    }

    #[test]
    fn zero_depth_gives_zeros() {
        check(5, 0, 7, false, 5);
        check(0, 9, 7, false, 6);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn packed_matches_naive(m in 0usize..30, k in 0usize..70, n in 1usize..70,
                                b_transposed in any::<bool>(), seed in any::<u64>()) {
            check(m, k, n, b_transposed, seed);
        }
    }
}
