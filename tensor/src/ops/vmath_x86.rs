//! The x86_64 vector types behind [`super::vmath::Simd`]: `__m512` (AVX-512F, 16
//! lanes) and `__m256` (AVX2, 8 lanes), each usable only through a token that
//! proves the CPU has the feature. Every method is a single intrinsic or two; the
//! comparisons are ordered (`_CMP_GT_OQ`, `_CMP_GE_OQ`), and `min`/`max` keep the
//! x86 rule "the second operand wins on NaN" that `Scalar` copies. Part of the
//! fused-kernel work of the UNet lesson.
//!
//! ```
//! # #[cfg(target_arch = "x86_64")] {
//! use tensor::ops::vmath::{exp_v, Avx512, Simd};
//! if let Some(t) = Avx512::detect() {
//!     let mut y = [0.0f32; 16];
//!     t.store(exp_v(t, t.splat(1.0)), &mut y);
//!     assert_eq!(y[0], tensor::ops::special::exp(1.0));
//!     assert!((y[15] - 2.718_281_8).abs() < 1e-6);
//! }
//! # }
//! ```

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::vmath::{Simd, SimdFn, ROUND};

/// Proof that the CPU reported AVX-512F (only [`Avx512::detect`] makes one).
#[derive(Clone, Copy, Debug)]
pub struct Avx512(());

/// Proof that the CPU reported AVX2 and FMA (only [`Avx2::detect`] makes one).
#[derive(Clone, Copy, Debug)]
pub struct Avx2(());

impl Avx512 {
    pub fn detect() -> Option<Avx512> {
        is_x86_feature_detected!("avx512f").then_some(Avx512(()))
    }
}

impl Avx2 {
    pub fn detect() -> Option<Avx2> {
        (is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")).then_some(Avx2(()))
    }
}

/// Run `f` in a function compiled with AVX-512F.
#[inline]
pub(super) fn run_avx512<F: SimdFn>(t: Avx512, f: F) -> F::Out {
    #[target_feature(enable = "avx512f")]
    fn inner<F: SimdFn>(t: Avx512, f: F) -> F::Out {
        f.call(t)
    }
    // SAFETY: the token exists only if the CPU reported AVX-512F.
    unsafe { inner(t, f) }
}

/// Run `f` in a function compiled with AVX2 and FMA.
#[inline]
pub(super) fn run_avx2<F: SimdFn>(t: Avx2, f: F) -> F::Out {
    #[target_feature(enable = "avx2,fma")]
    fn inner<F: SimdFn>(t: Avx2, f: F) -> F::Out {
        f.call(t)
    }
    // SAFETY: the token exists only if the CPU reported AVX2 and FMA.
    unsafe { inner(t, f) }
}

// SAFETY (every `unsafe` block in the two impls below): `self` is a token that exists
// only if the CPU has the feature the intrinsic needs; loads and stores first slice
// the operand to exactly `LANES` floats (a bounds-checked panic if it is shorter) and
// are unaligned, so any address works.

impl Simd for Avx512 {
    type V = __m512;
    const LANES: usize = 16;
    #[inline(always)]
    fn splat(self, x: f32) -> __m512 {
        unsafe { _mm512_set1_ps(x) }
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> __m512 {
        let s = &s[..16];
        unsafe { _mm512_loadu_ps(s.as_ptr()) }
    }
    #[inline(always)]
    fn store(self, v: __m512, d: &mut [f32]) {
        let d = &mut d[..16];
        unsafe { _mm512_storeu_ps(d.as_mut_ptr(), v) }
    }
    #[inline(always)]
    fn store_uninit(self, v: __m512, d: &mut [MaybeUninit<f32>]) {
        let d = &mut d[..16];
        unsafe { _mm512_storeu_ps(d.as_mut_ptr().cast::<f32>(), v) }
    }
    #[inline(always)]
    fn add(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_mul_ps(a, b) }
    }
    #[inline(always)]
    fn div(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_div_ps(a, b) }
    }
    #[inline(always)]
    fn min(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_min_ps(a, b) }
    }
    #[inline(always)]
    fn max(self, a: __m512, b: __m512) -> __m512 {
        unsafe { _mm512_max_ps(a, b) }
    }
    #[inline(always)]
    fn neg(self, a: __m512) -> __m512 {
        unsafe {
            _mm512_castsi512_ps(_mm512_xor_si512(
                _mm512_castps_si512(a),
                _mm512_set1_epi32(i32::MIN),
            ))
        }
    }
    #[inline(always)]
    fn abs(self, a: __m512) -> __m512 {
        unsafe {
            _mm512_castsi512_ps(_mm512_and_si512(
                _mm512_castps_si512(a),
                _mm512_set1_epi32(i32::MAX),
            ))
        }
    }
    #[inline(always)]
    fn copysign(self, mag: __m512, sign: __m512) -> __m512 {
        unsafe {
            let m = _mm512_and_si512(_mm512_castps_si512(mag), _mm512_set1_epi32(i32::MAX));
            let s = _mm512_and_si512(_mm512_castps_si512(sign), _mm512_set1_epi32(i32::MIN));
            _mm512_castsi512_ps(_mm512_or_si512(m, s))
        }
    }
    #[inline(always)]
    fn select_gt(self, a: __m512, b: __m512, t: __m512, f: __m512) -> __m512 {
        unsafe { _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b), f, t) }
    }
    #[inline(always)]
    fn select_ge(self, a: __m512, b: __m512, t: __m512, f: __m512) -> __m512 {
        unsafe { _mm512_mask_blend_ps(_mm512_cmp_ps_mask::<_CMP_GE_OQ>(a, b), f, t) }
    }
    #[inline(always)]
    fn pow2_halves(self, big: __m512) -> (__m512, __m512) {
        unsafe {
            let ni = _mm512_sub_epi32(
                _mm512_castps_si512(big),
                _mm512_set1_epi32(ROUND.to_bits() as i32),
            );
            let n1 = _mm512_srai_epi32::<1>(ni);
            let n2 = _mm512_sub_epi32(ni, n1);
            let bias = _mm512_set1_epi32(127);
            let s1 = _mm512_slli_epi32::<23>(_mm512_add_epi32(n1, bias));
            let s2 = _mm512_slli_epi32::<23>(_mm512_add_epi32(n2, bias));
            (_mm512_castsi512_ps(s1), _mm512_castsi512_ps(s2))
        }
    }
    #[inline(always)]
    fn mul_add(self, a: __m512, b: __m512, c: __m512) -> __m512 {
        unsafe { _mm512_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    fn pow2n(self, p: __m512, n: __m512, _big: __m512) -> __m512 {
        unsafe { _mm512_scalef_ps(p, n) }
    }
}

impl Simd for Avx2 {
    type V = __m256;
    const LANES: usize = 8;
    #[inline(always)]
    fn splat(self, x: f32) -> __m256 {
        unsafe { _mm256_set1_ps(x) }
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> __m256 {
        let s = &s[..8];
        unsafe { _mm256_loadu_ps(s.as_ptr()) }
    }
    #[inline(always)]
    fn store(self, v: __m256, d: &mut [f32]) {
        let d = &mut d[..8];
        unsafe { _mm256_storeu_ps(d.as_mut_ptr(), v) }
    }
    #[inline(always)]
    fn store_uninit(self, v: __m256, d: &mut [MaybeUninit<f32>]) {
        let d = &mut d[..8];
        unsafe { _mm256_storeu_ps(d.as_mut_ptr().cast::<f32>(), v) }
    }
    #[inline(always)]
    fn add(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    fn sub(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    fn mul(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    fn div(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_div_ps(a, b) }
    }
    #[inline(always)]
    fn min(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_min_ps(a, b) }
    }
    #[inline(always)]
    fn max(self, a: __m256, b: __m256) -> __m256 {
        unsafe { _mm256_max_ps(a, b) }
    }
    #[inline(always)]
    fn neg(self, a: __m256) -> __m256 {
        unsafe { _mm256_xor_ps(a, _mm256_set1_ps(-0.0)) }
    }
    #[inline(always)]
    fn abs(self, a: __m256) -> __m256 {
        unsafe { _mm256_andnot_ps(_mm256_set1_ps(-0.0), a) }
    }
    #[inline(always)]
    fn copysign(self, mag: __m256, sign: __m256) -> __m256 {
        unsafe {
            let s = _mm256_set1_ps(-0.0);
            _mm256_or_ps(_mm256_andnot_ps(s, mag), _mm256_and_ps(s, sign))
        }
    }
    #[inline(always)]
    fn select_gt(self, a: __m256, b: __m256, t: __m256, f: __m256) -> __m256 {
        unsafe { _mm256_blendv_ps(f, t, _mm256_cmp_ps::<_CMP_GT_OQ>(a, b)) }
    }
    #[inline(always)]
    fn select_ge(self, a: __m256, b: __m256, t: __m256, f: __m256) -> __m256 {
        unsafe { _mm256_blendv_ps(f, t, _mm256_cmp_ps::<_CMP_GE_OQ>(a, b)) }
    }
    #[inline(always)]
    fn pow2_halves(self, big: __m256) -> (__m256, __m256) {
        unsafe {
            let ni = _mm256_sub_epi32(
                _mm256_castps_si256(big),
                _mm256_set1_epi32(ROUND.to_bits() as i32),
            );
            let n1 = _mm256_srai_epi32::<1>(ni);
            let n2 = _mm256_sub_epi32(ni, n1);
            let bias = _mm256_set1_epi32(127);
            let s1 = _mm256_slli_epi32::<23>(_mm256_add_epi32(n1, bias));
            let s2 = _mm256_slli_epi32::<23>(_mm256_add_epi32(n2, bias));
            (_mm256_castsi256_ps(s1), _mm256_castsi256_ps(s2))
        }
    }
    #[inline(always)]
    fn mul_add(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
}
