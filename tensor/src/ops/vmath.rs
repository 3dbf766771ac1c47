//! Explicit SIMD for the transcendental kernels: `exp`, `erf` and the activations
//! built on them (sigmoid, silu, gelu, quick_gelu), on 16 lanes (AVX-512F), 8 lanes
//! (AVX2) or 1 lane (portable), chosen at run time. Introduced with the fused kernels
//! of the UNet lesson (softmax, attention, GroupNorm + SiLU, bias + GELU).
//!
//! The idea: write the algorithm once against a tiny vector vocabulary, the
//! [`Simd`] trait (`add`, `mul`, `max`, `select_gt`, ...), and instantiate it three
//! times. [`Scalar`] implements the vocabulary on plain `f32`, so the generic
//! [`exp_v`] *is* the scalar [`super::special::exp`], operation for operation: no fused
//! multiply-add, the same constants, the same order. The AVX-512 and AVX2 versions
//! therefore give the same bits as [`super::unary::UnaryOp::apply`] on every input,
//! 16 or 8 at a time; only the speed changes (tests check the equality on a dense grid).
//! The slice kernels built on this vocabulary live in [`super::act_slice`].
//!
//! A vector type is only usable with its token ([`Avx512`], [`Avx2`]), and a token
//! is only made after `is_x86_feature_detected!` said yes: holding one proves the
//! instructions exist. [`dispatch`] picks the widest token and runs a [`SimdFn`]
//! inside a function compiled for that feature, so every `#[inline(always)]` helper
//! below it becomes straight-line vector code. Shapes: slices in, slices out.
//!
//! ```
//! use tensor::ops::act_slice::map_slice;
//! use tensor::ops::unary::UnaryOp;
//! let x = [-1.0f32, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 20.0];
//! let mut y = [0.0f32; 17];
//! map_slice(UnaryOp::Silu, &x, &mut y);
//! assert!((y[0] + 0.268_941_43).abs() < 1e-7 && (y[3] - 1.761_594_2).abs() < 1e-6);
//! assert!(x.iter().zip(&y).all(|(&a, &b)| b == UnaryOp::Silu.apply(a))); // same bits
//! ```

use std::mem::MaybeUninit;

use super::special::{ERF_LARGE, ERF_SMALL, EXP_POLY};
use super::unary::UnaryOp;

/// The vector vocabulary. Semantics follow x86: `min(a, b) = if a < b { a } else { b }`
/// and `max(a, b) = if a > b { a } else { b }` (so a NaN in `b` comes out), and
/// comparisons in `select_*` are ordered (false on NaN).
pub trait Simd: Copy {
    /// One vector of `LANES` floats.
    type V: Copy;
    const LANES: usize;
    fn splat(self, x: f32) -> Self::V;
    /// The first `LANES` floats of `s` (panics if `s` is shorter).
    fn load(self, s: &[f32]) -> Self::V;
    /// Write the lanes to the first `LANES` floats of `d` (panics if shorter).
    fn store(self, v: Self::V, d: &mut [f32]);
    /// [`Simd::store`] into not-yet-initialised floats.
    fn store_uninit(self, v: Self::V, d: &mut [MaybeUninit<f32>]);
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    fn div(self, a: Self::V, b: Self::V) -> Self::V;
    fn min(self, a: Self::V, b: Self::V) -> Self::V;
    fn max(self, a: Self::V, b: Self::V) -> Self::V;
    /// Flip the sign bit.
    fn neg(self, a: Self::V) -> Self::V;
    /// Clear the sign bit.
    fn abs(self, a: Self::V) -> Self::V;
    /// The magnitude of `mag` with the sign bit of `sign`.
    fn copysign(self, mag: Self::V, sign: Self::V) -> Self::V;
    /// `if a > b { t } else { f }`, lane by lane.
    fn select_gt(self, a: Self::V, b: Self::V, t: Self::V, f: Self::V) -> Self::V;
    /// `if a >= b { t } else { f }`, lane by lane.
    fn select_ge(self, a: Self::V, b: Self::V, t: Self::V, f: Self::V) -> Self::V;
    /// For `big = n + 1.5 * 2^23` holding the integer `n` in its low mantissa bits:
    /// `(2^(n >> 1), 2^(n - (n >> 1)))` built from exponent bits.
    fn pow2_halves(self, big: Self::V) -> (Self::V, Self::V);
    /// `a * b + c`, fused into one rounding where the ISA has FMA (AVX-512F, and
    /// AVX2 with FMA), two roundings on [`Scalar`]. Only the fast paths use it.
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `p * 2^n` for integer-valued `n` in `[-151, 128]`, `big` as in
    /// [`Simd::pow2_halves`] (AVX-512 has one instruction for it: `vscalefps`).
    #[inline(always)]
    fn pow2n(self, p: Self::V, n: Self::V, big: Self::V) -> Self::V {
        let _ = n;
        let (s1, s2) = self.pow2_halves(big);
        self.mul(self.mul(p, s1), s2)
    }
}

/// One lane: plain `f32` arithmetic, always available.
#[derive(Clone, Copy, Debug)]
pub struct Scalar;

impl Simd for Scalar {
    type V = f32;
    const LANES: usize = 1;
    #[inline(always)]
    fn splat(self, x: f32) -> f32 {
        x
    }
    #[inline(always)]
    fn load(self, s: &[f32]) -> f32 {
        s[0]
    }
    #[inline(always)]
    fn store(self, v: f32, d: &mut [f32]) {
        d[0] = v;
    }
    #[inline(always)]
    fn store_uninit(self, v: f32, d: &mut [MaybeUninit<f32>]) {
        d[0].write(v);
    }
    #[inline(always)]
    fn add(self, a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    fn sub(self, a: f32, b: f32) -> f32 {
        a - b
    }
    #[inline(always)]
    fn mul(self, a: f32, b: f32) -> f32 {
        a * b
    }
    #[inline(always)]
    fn div(self, a: f32, b: f32) -> f32 {
        a / b
    }
    #[inline(always)]
    fn min(self, a: f32, b: f32) -> f32 {
        if a < b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn max(self, a: f32, b: f32) -> f32 {
        if a > b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    fn neg(self, a: f32) -> f32 {
        -a
    }
    #[inline(always)]
    fn abs(self, a: f32) -> f32 {
        a.abs()
    }
    #[inline(always)]
    fn copysign(self, mag: f32, sign: f32) -> f32 {
        mag.copysign(sign)
    }
    #[inline(always)]
    fn select_gt(self, a: f32, b: f32, t: f32, f: f32) -> f32 {
        if a > b {
            t
        } else {
            f
        }
    }
    #[inline(always)]
    fn select_ge(self, a: f32, b: f32, t: f32, f: f32) -> f32 {
        if a >= b {
            t
        } else {
            f
        }
    }
    #[inline(always)]
    fn pow2_halves(self, big: f32) -> (f32, f32) {
        let ni = big.to_bits() as i32 - ROUND.to_bits() as i32;
        let (n1, n2) = (ni >> 1, ni - (ni >> 1));
        let s1 = f32::from_bits((n1.wrapping_add(127) as u32) << 23);
        let s2 = f32::from_bits((n2.wrapping_add(127) as u32) << 23);
        (s1, s2)
    }
    #[inline(always)]
    fn mul_add(self, a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

#[cfg(target_arch = "x86_64")]
pub use super::vmath_x86::{Avx2, Avx512};

/// `1.5 * 2^23`: `(t + ROUND) - ROUND` rounds `t` to an integer.
pub(crate) const ROUND: f32 = 12_582_912.0;
/// `ln 2` split so that `n * LN2_HI` is exact for `|n| <= 2^15` (355/512).
pub(crate) const LN2_HI: f32 = 0.693_359_4;
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;

/// `c[0] + x * (c[1] + x * (..))`, as `special::horner`.
#[inline(always)]
fn horner_v<S: Simd, const N: usize>(s: S, c: &[f32; N], x: S::V) -> S::V {
    // A plain loop (an iterator fold would be one more call to inline).
    let mut acc = s.splat(c[N - 1]);
    let mut k = N - 1;
    while k > 0 {
        k -= 1;
        acc = s.add(s.mul(acc, x), s.splat(c[k]));
    }
    acc
}

/// `e^x`, lane by lane: the algorithm of [`super::special::exp`] in vector words.
#[inline(always)]
pub fn exp_v<S: Simd>(s: S, x: S::V) -> S::V {
    let xc = s.min(s.splat(88.75), s.max(s.splat(-104.0), x)); // clamp, NaN kept
    let big = s.add(s.mul(xc, s.splat(std::f32::consts::LOG2_E)), s.splat(ROUND));
    let n = s.sub(big, s.splat(ROUND));
    let r = s.sub(
        s.sub(xc, s.mul(n, s.splat(LN2_HI))),
        s.mul(n, s.splat(LN2_LO)),
    );
    let p = s.add(
        s.splat(1.0),
        s.add(r, s.mul(s.mul(r, r), horner_v(s, &EXP_POLY, r))),
    );
    let (s1, s2) = s.pow2_halves(big);
    let y = s.mul(s.mul(p, s1), s2);
    s.select_gt(x, s.splat(88.722_84), s.splat(f32::INFINITY), y)
}

/// `e^x` for the attention softmax, where speed matters more than the last bit:
/// the same range reduction and polynomial as [`exp_v`] but with fused
/// multiply-adds and, on AVX-512, one `scalef` for `2^n` (about half the
/// instructions). Within 2 ulp of [`exp_v`]; `-inf` and anything below -104 give
/// exactly 0, NaN stays NaN, above 88.72 gives `inf`.
#[inline(always)]
pub fn exp_fast_v<S: Simd>(s: S, x: S::V) -> S::V {
    let xc = s.min(s.splat(88.75), s.max(s.splat(-104.0), x));
    let big = s.mul_add(xc, s.splat(std::f32::consts::LOG2_E), s.splat(ROUND));
    let n = s.sub(big, s.splat(ROUND));
    let r = s.mul_add(n, s.splat(-LN2_HI), xc);
    let r = s.mul_add(n, s.splat(-LN2_LO), r);
    let c = &EXP_POLY;
    let mut h = s.splat(c[5]);
    for &k in c[..5].iter().rev() {
        h = s.mul_add(h, r, s.splat(k));
    }
    let p = s.add(s.splat(1.0), s.mul_add(s.mul(r, r), h, r));
    let y = s.pow2n(p, n, big);
    s.select_gt(x, s.splat(88.722_84), s.splat(f32::INFINITY), y)
}

/// `erf(x)`, lane by lane: the algorithm of [`super::special::erf`] in vector words.
#[inline(always)]
pub fn erf_v<S: Simd>(s: S, x: S::V) -> S::V {
    let a = s.abs(x);
    let small = s.add(x, s.mul(x, horner_v(s, &ERF_SMALL, s.mul(x, x))));
    let q = horner_v(s, &ERF_LARGE, s.min(a, s.splat(4.0)));
    let large = s.sub(s.splat(1.0), exp_v(s, q));
    let large = s.select_ge(a, s.splat(4.0), s.splat(1.0), large);
    s.select_ge(a, s.splat(0.875), s.copysign(large, x), small)
}

/// `op(x)` for the ops with a vector form, `None` for the rest (they keep the
/// scalar loop). Each arm is [`UnaryOp::apply`] written in vector words.
#[inline(always)]
pub fn unary_v<S: Simd>(s: S, op: UnaryOp, x: S::V) -> Option<S::V> {
    let one = s.splat(1.0);
    Some(match op {
        UnaryOp::Exp => exp_v(s, x),
        UnaryOp::Sigmoid => s.div(one, s.add(one, exp_v(s, s.neg(x)))),
        UnaryOp::Silu => s.div(x, s.add(one, exp_v(s, s.neg(x)))),
        UnaryOp::QuickGelu => s.div(x, s.add(one, exp_v(s, s.mul(s.splat(-1.702), x)))),
        UnaryOp::Gelu => {
            let e = erf_v(s, s.mul(x, s.splat(std::f32::consts::FRAC_1_SQRT_2)));
            s.mul(s.mul(s.splat(0.5), x), s.add(one, e))
        }
        UnaryOp::Neg => s.neg(x),
        UnaryOp::Abs => s.abs(x),
        UnaryOp::Sqr => s.mul(x, x),
        UnaryOp::Recip => s.div(one, x),
        _ => return None,
    })
}

/// Whether [`unary_v`] has a vector form of `op`.
pub fn has_vector_form(op: UnaryOp) -> bool {
    unary_v(Scalar, op, 0.0).is_some()
}

/// A kernel generic over the vector width: [`dispatch`] calls `call` with the
/// widest token this CPU has, inside a function compiled for that feature.
pub trait SimdFn {
    type Out;
    fn call<S: Simd>(self, s: S) -> Self::Out;
}

/// Run `f` with AVX-512F, else AVX2, else one lane.
#[inline]
pub fn dispatch<F: SimdFn>(f: F) -> F::Out {
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(t) = Avx512::detect() {
            return super::vmath_x86::run_avx512(t, f);
        }
        if let Some(t) = Avx2::detect() {
            return super::vmath_x86::run_avx2(t, f);
        }
    }
    f.call(Scalar)
}
