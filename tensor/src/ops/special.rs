//! Special functions written here rather than taken from libm: [`erf`] (max error
//! 1.5 ulp, about 9e-8) and [`exp`] (1 ulp), scalar `f32 -> f32`. Both are
//! branch-free and call no library function, so loops over them vectorise (exp,
//! sigmoid, silu, gelu, softmax); [`super::vmath`] has their vector twins, which
//! share the polynomial fits below, and [`WGSL_HELPERS`] their GPU twins.
//! Introduced in `lessons/03-tensors`.
//!
//! ```
//! use tensor::ops::special::{erf, exp};
//! assert!((erf(0.5) - 0.520_499_9).abs() < 1e-7);
//! assert_eq!(exp(0.0), 1.0);
//! ```

use crate::ops::vmath;

// erf(x) for |x| < 0.875: x + x * P(x^2) (a near-minimax fit of erf(x)/x - 1).
pub(crate) const ERF_SMALL: [f32; 6] = [
    0.128_379_15,
    -0.376_125_57,
    0.112_825_245,
    -0.026_793_96,
    0.005_035_879_6,
    -0.000_622_245_7,
];
// erf(x) for 0.875 <= |x| < 4: 1 - exp(Q(|x|)), Q a fit of ln(erfc(x)).
pub(crate) const ERF_LARGE: [f32; 9] = [
    0.000_294_265_4,
    -1.130_131_5,
    -0.631_995_4,
    -0.109_925_11,
    0.026_335_5,
    -0.004_730_268,
    0.000_590_712_24,
    -4.535_422_7e-5,
    1.602_471_8e-6,
];

/// `c[0] + x * (c[1] + x * (..))`.
#[inline(always)]
fn horner<const N: usize>(c: &[f32; N], x: f32) -> f32 {
    c[..N - 1]
        .iter()
        .rev()
        .fold(c[N - 1], |acc, &k| acc * x + k)
}

/// The error function in f32, max error 1.5 ulp (about 9e-8) against the exact value.
/// Two polynomial fits (made for this crate by weighted least squares): a series in
/// `x^2` near 0 and `1 - exp(Q(|x|))` further out; `|x| >= 4` rounds to +-1.
/// Both branches are computed and one selected, so loops over it vectorise.
/// NaN propagates.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    let small = x + x * horner(&ERF_SMALL, x * x);
    let large = 1.0 - exp(horner(&ERF_LARGE, a.min(4.0)));
    let large = if a >= 4.0 { 1.0 } else { large };
    if a < 0.875 || a.is_nan() {
        small
    } else {
        large.copysign(x)
    }
}

// exp(r) = 1 + r + r^2 * P(r) on |r| <= ln(2)/2 (a near-minimax fit, rel. error 1e-8).
pub(crate) const EXP_POLY: [f32; 6] = [
    0.5,
    0.166_666_73,
    0.041_666_374,
    0.008_331_312,
    0.001_394_160_6,
    0.000_212_349_48,
];

/// `e^x` in f32 within 1 ulp, written without branches or library calls so that
/// loops over it vectorise (the softmax and activation kernels use it).
/// `x = n ln2 + r` with `n` an integer (`r` split exactly, Cody-Waite), `e^r` from a
/// polynomial, and `2^n` built from exponent bits in two halves so that results in
/// the subnormal range round once. Overflows to `inf` above 88.72, underflows to 0.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // LN2_HI = 355/512: n * LN2_HI is exact for |n| <= 2^15; (t + ROUND) - ROUND
    // rounds t (ROUND = 1.5 * 2^23). The vector twin `vmath::exp_v` shares them.
    use vmath::{LN2_HI, LN2_LO, ROUND};
    let xc = x.clamp(-104.0, 88.75);
    let big = xc * std::f32::consts::LOG2_E + ROUND;
    let n = big - ROUND;
    // The integer n sits in the low mantissa bits of `big` (no float-to-int cast).
    let ni = big.to_bits() as i32 - ROUND.to_bits() as i32;
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 + (r + r * r * horner(&EXP_POLY, r));
    let (n1, n2) = (ni >> 1, ni - (ni >> 1));
    let s1 = f32::from_bits(((n1 + 127) as u32) << 23);
    let s2 = f32::from_bits(((n2 + 127) as u32) << 23);
    let y = p * s1 * s2;
    if x > 88.722_84 {
        f32::INFINITY
    } else {
        y
    }
}

/// WGSL helper functions the op snippets call: `erf_f32` (same fits as [`erf`]),
/// `sigmoid_f32` and `pow_f32` (PyTorch's `pow`, which WGSL's `pow` leaves
/// undefined for `x <= 0`).
/// Infinities and NaN come from runtime `1 / 0` and `sqrt(-a)`: WGSL rejects them
/// as constants.
pub const WGSL_HELPERS: &str = r#"
fn erf_f32(x: f32) -> f32 {
    let a = abs(x);
    if (a >= 4.0) {
        return sign(x);
    }
    if (a >= 0.875) {
        var q = 1.6024718e-6;
        q = q * a - 4.5354227e-5;
        q = q * a + 5.9071224e-4;
        q = q * a - 4.730268e-3;
        q = q * a + 2.63355e-2;
        q = q * a - 1.0992511e-1;
        q = q * a - 6.319954e-1;
        q = q * a - 1.1301315;
        q = q * a + 2.942654e-4;
        return sign(x) * (1.0 - exp(q));
    }
    let s = x * x;
    var p = -6.222457e-4;
    p = p * s + 5.0358796e-3;
    p = p * s - 2.679396e-2;
    p = p * s + 1.12825245e-1;
    p = p * s - 3.7612557e-1;
    p = p * s + 1.2837915e-1;
    return x + x * p;
}

fn sigmoid_f32(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

fn pow_f32(a: f32, b: f32) -> f32 {
    if (b == 0.0) {
        return 1.0;
    }
    if (a == 0.0) {
        return select(0.0, 1.0 / a, b < 0.0);
    }
    if (a > 0.0) {
        return pow(a, b);
    }
    if (b != round(b)) {
        return sqrt(a);
    }
    let r = pow(-a, b);
    return select(r, -r, fract(b * 0.5) != 0.0);
}
"#;
