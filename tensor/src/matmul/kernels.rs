//! Micro-kernels of the SIMD rung ([`super::simd`], lesson `lessons/01-matmul`).
//!
//! A micro-kernel computes one `mr x nr` tile of C from `kc` columns of A and a
//! packed sliver of B (`kc` rows of `nr` values): `tile[r][j] = sum_p a[r][p] b[p][j]`.
//! Every tile element lives in a register for the whole loop over `p`; each step
//! loads one row of the B sliver, broadcasts each of the `mr` values of A, and issues
//! `mr * nr / lanes` fused multiply-adds. The finished tile is stored into C (or added
//! to it, for the second and later panels of depth) straight from the registers.
//!
//! | kernel | tile | registers | A | needs |
//! |---|---|---|---|---|
//! | `Avx512` | 6 x 16, 32, 48 or 64 | 6 to 24 zmm accumulators (16 lanes) | any strides (`ABlock`) | AVX-512F |
//! | `Avx512` | 12 x 32 | 24 zmm accumulators | packed | AVX-512F |
//! | `Avx2Fma` | 6 x 16 | 12 ymm accumulators (8 lanes) | any strides | AVX2 + FMA |
//! | `Portable` | 6 x 16 | an array LLVM vectorises | any strides | nothing |
//!
//! [`Kernel::nr`] and [`Kernel::mr`] name each kernel's tile on packed A (32 x 12
//! for AVX-512, 16 x 6 otherwise); [`super::simd::Plan`] says which tile a product
//! uses. A is read through an `ABlock`: element `(r, p)` at `rows[r] + p * step`,
//! which covers a packed sliver and A where it lies alike.
//!
//! The x86 kernels are chosen at run time with `is_x86_feature_detected!`; the
//! portable one is correct on every target. All of them add the products for one tile
//! element in the same order (`p = 0, 1, ..`, starting from zero); the x86 ones fuse
//! each multiply-add. Which tile an element lands in never changes its bits.
//!
//! ```
//! use tensor::matmul::kernels::{Kernel, MR};
//! let k = Kernel::portable();
//! assert_eq!((MR, k.mr(), k.nr()), (6, 6, 16));
//! assert!(Kernel::available().contains(&k));
//! ```

/// Rows of the register tile when A is read in place, and of the AVX2 and portable
/// kernels' tiles on packed A.
pub const MR: usize = 6;
/// The tallest tile any kernel has (the AVX-512 kernel on packed A).
pub const MR_MAX: usize = 12;
/// The widest B sliver any kernel takes (sizes the tile buffer): 64 columns, the
/// AVX-512 kernel's widest in-place tile, for products at most 64 columns wide.
pub const NR_MAX: usize = 64;

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
    /// AVX-512F: 12 x 32 tile on packed A, 6 x 16..64 on A in place.
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

    /// Width of the register tile on packed A (columns of B per sliver).
    pub fn nr(self) -> usize {
        match self {
            Kernel::Avx512(_) => 32,
            Kernel::Avx2Fma(_) | Kernel::Portable => 16,
        }
    }

    /// Height of the register tile on packed A (rows of an A sliver).
    pub fn mr(self) -> usize {
        match self {
            Kernel::Avx512(_) => MR_MAX,
            Kernel::Avx2Fma(_) | Kernel::Portable => MR,
        }
    }

    /// `C_tile (+)= A_sliver * B_sliver` with A packed: the `mr() x nr()` tile, A's
    /// column `p` at `a[p * mr() .. p * mr() + mr()]`, C as in [`Kernel::run`].
    /// Panics (a bounds check) if `a` is shorter than `kc * mr()` or as `run` does.
    #[inline]
    pub(crate) fn run_packed(self, kc: usize, a: &[f32], b: &[f32], c: CTile<'_>) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => {
                let (a, b) = (&a[..kc * MR_MAX], &b[..kc * 32]);
                let c_end = (MR_MAX - 1)
                    .checked_mul(c.ld)
                    .and_then(|x| x.checked_add(c.offset))
                    .and_then(|x| x.checked_add(32))
                    .unwrap_or(usize::MAX);
                let tile = &mut c.data[c.offset..c_end];
                // SAFETY: the token proves AVX-512F; `a` holds `kc * 12` floats, `b`
                // `kc * 32` and `tile` every `r * ld + j` (r < 12, j < 32): the
                // slicing just above checked all three.
                unsafe { x86::kernel_avx512_packed(kc, a, b, tile, c.ld, c.add) }
            }
            _ => {
                let b = BSliver {
                    data: b,
                    stride: self.nr(),
                };
                self.run(kc, ABlock::packed(a, 0, kc), b, self.nr(), c)
            }
        }
    }

    /// Whether this kernel reads A in place (any strides, through an `ABlock`) fast
    /// enough that skipping the packing of A pays when A is used only a few times.
    pub(crate) fn reads_a_in_place(self) -> bool {
        !matches!(self, Kernel::Portable)
    }

    /// `tile = A_sliver * B_sliver` over depth `kc`, overwriting `tile` row-major
    /// `MR x nr()`: the micro-kernel on one packed `MR`-tall sliver of A (column `p`
    /// is `MR` adjacent floats) and one packed `nr()`-wide sliver of B (row `p` is
    /// `nr()` adjacent floats). The form conv's packed GEMM (`packed.rs`) and the
    /// flash-attention tiles (`ops/attention_tile.rs`) call.
    #[inline]
    pub(crate) fn run_tile(self, kc: usize, a_sliver: &[f32], b_sliver: &[f32], tile: &mut [f32]) {
        let nr = self.nr();
        self.run(
            kc,
            ABlock::packed(a_sliver, 0, kc),
            BSliver {
                data: b_sliver,
                stride: nr,
            },
            nr,
            CTile {
                data: tile,
                offset: 0,
                ld: nr,
                add: false,
            },
        );
    }

    /// `C_tile (+)= A_block * B_sliver` over depth `kc`: the `MR x nr` tile (6 rows,
    /// whatever [`Kernel::mr`] says) at `c.data[c.offset + r * c.ld + j]` is
    /// overwritten, or added to when `c.add`. `nr` is the width of the B sliver: 16,
    /// 32, 48 or 64 for the AVX-512 kernel, always [`Kernel::nr`] for the others.
    ///
    /// Row `p` of the B sliver is `b.data[p * b.stride ..][..nr]`: a packed sliver
    /// (`stride = nr`) or B where it lies (`stride` = its row stride).
    ///
    /// Panics (a bounds check, never undefined behaviour) if an element of `a`
    /// (`a.rows[r] + p * a.step` for `p < kc`), of `b` or of the tile lies outside its
    /// slice. The checks cost a few integer operations per call.
    #[inline]
    pub(crate) fn run(self, kc: usize, a: ABlock<'_>, b: BSliver<'_>, nr: usize, c: CTile<'_>) {
        // Only the AVX-512 kernel has several widths; the others always take nr().
        let nr = match self {
            Kernel::Avx512(_) => nr.next_multiple_of(16).clamp(16, NR_MAX),
            _ => self.nr(),
        };
        let b_stride = b.stride;
        let b = match kc.checked_sub(1) {
            None => &b.data[..0],
            Some(p) => {
                let end = p
                    .checked_mul(b_stride)
                    .and_then(|x| x.checked_add(nr))
                    .unwrap_or(usize::MAX);
                &b.data[..end]
            }
        };
        let c_end = (MR - 1)
            .checked_mul(c.ld)
            .and_then(|x| x.checked_add(c.offset))
            .and_then(|x| x.checked_add(nr))
            .unwrap_or(usize::MAX);
        let tile = &mut c.data[c.offset..c_end];
        // The last element of A any step reads (every other one lies before it); an
        // overflow becomes an index no slice has, so the slicing panics.
        let a_data = match kc.checked_sub(1) {
            None => &a.data[..0],
            Some(p) => {
                let last = p
                    .checked_mul(a.step)
                    .and_then(|x| x.checked_add(a.rows.iter().copied().max().unwrap_or(0)))
                    .unwrap_or(usize::MAX);
                &a.data[..=last]
            }
        };
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => {
                let (rows, step, ld, add) = (a.rows, a.step, c.ld, c.add);
                let (b, bs) = (b, b_stride);
                // SAFETY: a `CpuHasAvx512` token exists only if the CPU reported
                // AVX-512F, the one feature the functions enable. `a_data` holds every
                // `rows[r] + p * step` (p < kc), `b` every `p * bs + j` (p < kc,
                // j < nr), and `tile` every `r * ld + j` (r < 6, j < nr), nr = 16 * NV:
                // checked just above.
                unsafe {
                    match nr / 16 {
                        1 => x86::kernel_avx512::<1>(kc, a_data, rows, step, b, bs, tile, ld, add),
                        3 => x86::kernel_avx512::<3>(kc, a_data, rows, step, b, bs, tile, ld, add),
                        4 => x86::kernel_avx512::<4>(kc, a_data, rows, step, b, bs, tile, ld, add),
                        _ => x86::kernel_avx512::<2>(kc, a_data, rows, step, b, bs, tile, ld, add),
                    }
                }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma(_) => {
                // SAFETY: a `CpuHasAvx2Fma` token exists only if the CPU reported AVX2
                // and FMA; the slices cover every index the kernel touches (as above,
                // with 16 columns).
                unsafe {
                    x86::kernel_avx2(kc, a_data, a.rows, a.step, b, b_stride, tile, c.ld, c.add)
                }
            }
            _ => kernel_portable(kc, a_data, a.rows, a.step, b, b_stride, tile, c.ld, c.add),
        }
    }
}

/// Where a micro-kernel reads its `MR x kc` block of A: element `(r, p)` is
/// `data[rows[r] + p * step]`. A packed sliver has `rows = [s, s + 1, .., s + 5]` and
/// `step = MR`; A read in place (no packing) has `rows[r]` at the start of row `r`
/// and `step` = A's column stride.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ABlock<'a> {
    pub data: &'a [f32],
    pub rows: [usize; MR],
    pub step: usize,
}

impl<'a> ABlock<'a> {
    /// Sliver `t` of a block of A packed `MR` rows to a sliver, depth `kc`.
    pub(crate) fn packed(apack: &'a [f32], t: usize, kc: usize) -> Self {
        let s = t * kc * MR;
        ABlock {
            data: apack,
            rows: std::array::from_fn(|r| s + r),
            step: MR,
        }
    }
}

/// The B sliver a micro-kernel reads: row `p` is `data[p * stride ..][..nr]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BSliver<'a> {
    pub data: &'a [f32],
    pub stride: usize,
}

/// Where a micro-kernel writes its `MR x nr` tile: element `(r, j)` is
/// `data[offset + r * ld + j]`; `add` adds the tile to what is there.
#[derive(Debug)]
pub(crate) struct CTile<'a> {
    pub data: &'a mut [f32],
    pub offset: usize,
    pub ld: usize,
    pub add: bool,
}

/// The portable micro-kernel: `MR x 16` accumulators in a fixed-size array, which
/// LLVM keeps in vector registers and vectorises along the 16 columns.
#[allow(clippy::too_many_arguments)]
fn kernel_portable(
    kc: usize,
    a: &[f32],
    rows: [usize; MR],
    step: usize,
    b: &[f32],
    b_stride: usize,
    tile: &mut [f32],
    ld: usize,
    add: bool,
) {
    const NR: usize = 16;
    let mut acc = [[0.0f32; NR]; MR];
    for p in 0..kc {
        let bp = &b[p * b_stride..p * b_stride + NR];
        for (acc_row, &r0) in acc.iter_mut().zip(&rows) {
            let av = a[r0 + p * step];
            for (c, &bv) in acc_row.iter_mut().zip(bp) {
                *c += av * bv;
            }
        }
    }
    for (r, src) in acc.iter().enumerate() {
        let dst = &mut tile[r * ld..r * ld + NR];
        if add {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d += s;
            }
        } else {
            dst.copy_from_slice(src);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::MR;
    use std::arch::x86_64::{
        __m256, __m512, _mm256_add_ps, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps,
        _mm256_setzero_ps, _mm256_storeu_ps, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps,
        _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
    };

    /// 6 rows x `16 * NV` columns of C in `6 * NV` zmm accumulators (`NV` 16-lane
    /// vectors a row; `NV = 2` is the 6 x 32 tile, 1, 3 and 4 serve narrow products).
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `a` must hold `rows[r] + p * step` for r < 6,
    /// p < kc; `b` must hold `p * b_stride + j` for p < kc, j < 16 * NV; `tile` must
    /// hold `r * ld + j` for r < 6, j < 16 * NV. Loads and stores are unaligned, so
    /// any alignment works.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn kernel_avx512<const NV: usize>(
        kc: usize,
        a: &[f32],
        rows: [usize; MR],
        step: usize,
        b: &[f32],
        b_stride: usize,
        tile: &mut [f32],
        ld: usize,
        add: bool,
    ) {
        let mut acc: [[__m512; NV]; MR] = [[_mm512_setzero_ps(); NV]; MR];
        let ap: [*const f32; MR] = rows.map(|r| a.as_ptr().add(r));
        let (mut off, mut bp) = (0usize, b.as_ptr());
        for _ in 0..kc {
            // Step p reads a[rows[r] + p*step] and b[p*b_stride ..][..16*NV]: in
            // bounds for p < kc by the requirements.
            let mut bv = [_mm512_setzero_ps(); NV];
            for (v, bv) in bv.iter_mut().enumerate() {
                *bv = _mm512_loadu_ps(bp.add(16 * v));
            }
            for (acc_r, a_r) in acc.iter_mut().zip(ap) {
                let av = _mm512_set1_ps(*a_r.add(off));
                for (acc_rv, &bv) in acc_r.iter_mut().zip(&bv) {
                    *acc_rv = _mm512_fmadd_ps(av, bv, *acc_rv);
                }
            }
            off += step;
            bp = bp.wrapping_add(b_stride);
        }
        // Row r of the tile is tile[r*ld .. r*ld + 16*NV], inside the required length.
        let tp = tile.as_mut_ptr();
        for (r, acc_r) in acc.iter().enumerate() {
            for (v, &acc_rv) in acc_r.iter().enumerate() {
                let p = tp.add(r * ld + 16 * v);
                if add {
                    _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), acc_rv));
                } else {
                    _mm512_storeu_ps(p, acc_rv);
                }
            }
        }
    }

    /// 12 rows x 32 columns of C in 24 zmm accumulators, A packed: each step loads two
    /// vectors of B and broadcasts 12 values of A from one cache line and a half.
    ///
    /// # Safety
    /// The CPU must support AVX-512F; `a.len() >= kc * 12`, `b.len() >= kc * 32`, and
    /// `tile` must hold `r * ld + j` for r < 12, j < 32.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn kernel_avx512_packed(
        kc: usize,
        a: &[f32],
        b: &[f32],
        tile: &mut [f32],
        ld: usize,
        add: bool,
    ) {
        const MR: usize = super::MR_MAX;
        const NR: usize = 32;
        let mut acc: [[__m512; 2]; MR] = [[_mm512_setzero_ps(); 2]; MR];
        let (mut ap, mut bp) = (a.as_ptr(), b.as_ptr());
        for _ in 0..kc {
            // Step p reads a[p*12 .. p*12+12] and b[p*32 .. p*32+32]: in bounds.
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
        let tp = tile.as_mut_ptr();
        for (r, acc_r) in acc.iter().enumerate() {
            let (p0, p1) = (tp.add(r * ld), tp.add(r * ld + 16));
            if add {
                _mm512_storeu_ps(p0, _mm512_add_ps(_mm512_loadu_ps(p0), acc_r[0]));
                _mm512_storeu_ps(p1, _mm512_add_ps(_mm512_loadu_ps(p1), acc_r[1]));
            } else {
                _mm512_storeu_ps(p0, acc_r[0]);
                _mm512_storeu_ps(p1, acc_r[1]);
            }
        }
    }

    /// 6 rows x 16 columns of C in 12 ymm accumulators (two 8-lane vectors a row).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA; the slices as for [`kernel_avx512`], with
    /// 16 columns.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn kernel_avx2(
        kc: usize,
        a: &[f32],
        rows: [usize; MR],
        step: usize,
        b: &[f32],
        b_stride: usize,
        tile: &mut [f32],
        ld: usize,
        add: bool,
    ) {
        let mut acc: [[__m256; 2]; MR] = [[_mm256_setzero_ps(); 2]; MR];
        let ap: [*const f32; MR] = rows.map(|r| a.as_ptr().add(r));
        let (mut off, mut bp) = (0usize, b.as_ptr());
        for _ in 0..kc {
            // Step p reads a[rows[r] + p*step] and b[p*b_stride ..][..16]: in bounds.
            let b0 = _mm256_loadu_ps(bp);
            let b1 = _mm256_loadu_ps(bp.add(8));
            for (acc_r, a_r) in acc.iter_mut().zip(ap) {
                let av = _mm256_broadcast_ss(&*a_r.add(off));
                acc_r[0] = _mm256_fmadd_ps(av, b0, acc_r[0]);
                acc_r[1] = _mm256_fmadd_ps(av, b1, acc_r[1]);
            }
            off += step;
            bp = bp.wrapping_add(b_stride);
        }
        let tp = tile.as_mut_ptr();
        for (r, acc_r) in acc.iter().enumerate() {
            let (p0, p1) = (tp.add(r * ld), tp.add(r * ld + 8));
            if add {
                _mm256_storeu_ps(p0, _mm256_add_ps(_mm256_loadu_ps(p0), acc_r[0]));
                _mm256_storeu_ps(p1, _mm256_add_ps(_mm256_loadu_ps(p1), acc_r[1]));
            } else {
                _mm256_storeu_ps(p0, acc_r[0]);
                _mm256_storeu_ps(p1, acc_r[1]);
            }
        }
    }
}
