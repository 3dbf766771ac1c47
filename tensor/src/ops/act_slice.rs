//! Fused elementwise slice kernels on the [`super::vmath`] vocabulary (introduced with the
//! UNet lesson's fused ops): `dst[i] = act(pre(src[i]))`, where `pre` is a bias add,
//! a normalisation or nothing ([`Pre`]) and `act` an optional [`UnaryOp`]. One pass:
//! each vector is loaded once, transformed in registers and stored once. Also the
//! softmax row step [`exp_sub_sum`], and [`vec_uninit`], which makes output
//! buffers without zeroing them first (a memset of the whole output is otherwise a
//! third of the time of a memory-bound op).
//!
//! The branches on `pre` and `act` are taken once per slice, outside the loop: each
//! combination is its own small kernel (typed as [`PreOp`] x [`Act`]) with constants
//! the compiler folds. Results are bit
//! for bit `act.apply(pre(x))` computed one float at a time (no fused multiply-add),
//! on every vector width. Shapes: slices in, slices out.
//!
//! ```
//! use tensor::ops::act_slice::{act_slice, Pre};
//! use tensor::ops::unary::UnaryOp;
//! let x = [0.5f32; 19];
//! let b: Vec<f32> = (0..19).map(|i| i as f32).collect();
//! let mut y = [0.0f32; 19];
//! act_slice(Some(UnaryOp::Relu), Pre::Add(&b), &x, &mut y);
//! assert_eq!(y[0], 0.5);
//! act_slice(Some(UnaryOp::Silu), Pre::Norm { hi: 0.5, lo: 0.0, scale: 2.0, shift: 1.0 }, &x, &mut y);
//! assert!((y[18] - 0.731_058_6).abs() < 1e-7); // silu((0.5 - 0.5) * 2 + 1)
//! ```

use std::mem::MaybeUninit;

use super::unary::UnaryOp;
use super::vmath::{dispatch, exp_fast_v, exp_v, unary_v, Scalar, Simd, SimdFn};

/// Where a kernel writes: initialised floats, or not-yet-initialised ones.
pub trait Out {
    fn len(&self) -> usize;
    /// Store a vector at `i..i + LANES`.
    fn put<S: Simd>(&mut self, s: S, i: usize, v: S::V);
    /// Store one float at `i`.
    fn put1(&mut self, i: usize, v: f32);
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Out for [f32] {
    fn len(&self) -> usize {
        <[f32]>::len(self)
    }
    #[inline(always)]
    fn put<S: Simd>(&mut self, s: S, i: usize, v: S::V) {
        s.store(v, &mut self[i..]);
    }
    #[inline(always)]
    fn put1(&mut self, i: usize, v: f32) {
        self[i] = v;
    }
}

impl Out for [MaybeUninit<f32>] {
    fn len(&self) -> usize {
        <[MaybeUninit<f32>]>::len(self)
    }
    #[inline(always)]
    fn put<S: Simd>(&mut self, s: S, i: usize, v: S::V) {
        s.store_uninit(v, &mut self[i..]);
    }
    #[inline(always)]
    fn put1(&mut self, i: usize, v: f32) {
        self[i].write(v);
    }
}

/// A `Vec<f32>` of length `n` whose elements `fill` writes, never zeroed first.
///
/// # Safety
/// `fill` must write every element of the slice it is given (if it panics instead,
/// nothing uninitialised is exposed).
pub unsafe fn vec_uninit(n: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    fill(&mut v.spare_capacity_mut()[..n]);
    // SAFETY: the caller guarantees that `fill` initialised all `n` elements, and
    // the capacity is at least `n`.
    unsafe { v.set_len(n) };
    v
}

/// `dst[i] = g(i)`: whole vectors from `vf(i)` (for lanes `i..i + LANES`), the tail
/// from `sf(i)`, one lane at a time.
#[inline(always)]
pub fn fill_with<S: Simd, O: Out + ?Sized>(
    s: S,
    dst: &mut O,
    vf: impl Fn(usize) -> S::V,
    sf: impl Fn(usize) -> f32,
) {
    let n = dst.len();
    let main = n / S::LANES * S::LANES;
    for k in (0..main).step_by(S::LANES) {
        dst.put(s, k, vf(k));
    }
    for k in main..n {
        dst.put1(k, sf(k));
    }
}

/// What [`act_slice`] applies before the activation.
#[derive(Clone, Copy, Debug)]
pub enum Pre<'a> {
    /// `x`.
    Id,
    /// `x + bias[i]` (a slice as long as the input).
    Add(&'a [f32]),
    /// `x + c`.
    AddScalar(f32),
    /// `((x - hi) - lo) * scale + shift`: a normalisation whose mean `hi + lo` is
    /// carried in two floats, so `x - mean` keeps f64-like accuracy when `x` sits
    /// far from 0.
    Norm {
        hi: f32,
        lo: f32,
        scale: f32,
        shift: f32,
    },
    /// `((x - hi) - lo) * rstd * weight[i] + bias[i]`: a layer norm's row.
    NormAffine {
        hi: f32,
        lo: f32,
        rstd: f32,
        weight: &'a [f32],
        bias: &'a [f32],
    },
}

/// An activation as a type, so that every (pre, act) pair becomes its own small
/// kernel under [`dispatch`] (one giant function would stop the compiler from
/// inlining the intrinsics).
pub trait Act: Copy + Send + Sync {
    fn v<S: Simd>(s: S, x: S::V) -> S::V;
    fn s(x: f32) -> f32;
}

macro_rules! acts {
    ($($name:ident => $op:ident),*) => {$(
        #[doc = concat!("[`UnaryOp::", stringify!($op), "`] as an [`Act`].")]
        #[derive(Clone, Copy, Debug)]
        pub struct $name;
        impl Act for $name {
            #[inline(always)]
            fn v<S: Simd>(s: S, x: S::V) -> S::V {
                unary_v(s, UnaryOp::$op, x).unwrap_or(x)
            }
            #[inline(always)]
            fn s(x: f32) -> f32 {
                UnaryOp::$op.apply(x)
            }
        }
    )*};
}
acts!(ExpAct => Exp, SigmoidAct => Sigmoid, SiluAct => Silu, GeluAct => Gelu,
      QuickGeluAct => QuickGelu, NegAct => Neg, AbsAct => Abs, SqrAct => Sqr, RecipAct => Recip);

/// No activation.
#[derive(Clone, Copy, Debug)]
pub struct NoAct;
impl Act for NoAct {
    #[inline(always)]
    fn v<S: Simd>(_: S, x: S::V) -> S::V {
        x
    }
    #[inline(always)]
    fn s(x: f32) -> f32 {
        x
    }
}

/// A [`Pre`] as a type: the vector and the one-lane form of element `i`.
pub trait PreOp: Copy + Send + Sync {
    fn v<S: Simd>(&self, s: S, src: &[f32], i: usize) -> S::V;
    fn s(&self, src: &[f32], i: usize) -> f32;
}

#[derive(Clone, Copy)]
struct PId;
impl PreOp for PId {
    #[inline(always)]
    fn v<S: Simd>(&self, s: S, src: &[f32], i: usize) -> S::V {
        s.load(&src[i..])
    }
    #[inline(always)]
    fn s(&self, src: &[f32], i: usize) -> f32 {
        src[i]
    }
}

#[derive(Clone, Copy)]
struct PAdd<'a>(&'a [f32]);
impl PreOp for PAdd<'_> {
    #[inline(always)]
    fn v<S: Simd>(&self, s: S, src: &[f32], i: usize) -> S::V {
        s.add(s.load(&src[i..]), s.load(&self.0[i..]))
    }
    #[inline(always)]
    fn s(&self, src: &[f32], i: usize) -> f32 {
        src[i] + self.0[i]
    }
}

#[derive(Clone, Copy)]
struct PAddScalar(f32);
impl PreOp for PAddScalar {
    #[inline(always)]
    fn v<S: Simd>(&self, s: S, src: &[f32], i: usize) -> S::V {
        s.add(s.load(&src[i..]), s.splat(self.0))
    }
    #[inline(always)]
    fn s(&self, src: &[f32], i: usize) -> f32 {
        src[i] + self.0
    }
}

/// `((x - hi) - lo) * scale + shift`.
#[derive(Clone, Copy)]
pub struct PNorm {
    pub hi: f32,
    pub lo: f32,
    pub scale: f32,
    pub shift: f32,
}
impl PreOp for PNorm {
    #[inline(always)]
    fn v<S: Simd>(&self, s: S, src: &[f32], i: usize) -> S::V {
        let d = s.sub(s.sub(s.load(&src[i..]), s.splat(self.hi)), s.splat(self.lo));
        s.add(s.mul(d, s.splat(self.scale)), s.splat(self.shift))
    }
    #[inline(always)]
    fn s(&self, src: &[f32], i: usize) -> f32 {
        ((src[i] - self.hi) - self.lo) * self.scale + self.shift
    }
}

/// `((x - hi) - lo) * rstd * weight[i] + bias[i]`.
#[derive(Clone, Copy)]
pub struct PNormAffine<'a> {
    pub hi: f32,
    pub lo: f32,
    pub rstd: f32,
    pub weight: &'a [f32],
    pub bias: &'a [f32],
}
impl PreOp for PNormAffine<'_> {
    #[inline(always)]
    fn v<S: Simd>(&self, s: S, src: &[f32], i: usize) -> S::V {
        let d = s.sub(s.sub(s.load(&src[i..]), s.splat(self.hi)), s.splat(self.lo));
        let y = s.mul(s.mul(d, s.splat(self.rstd)), s.load(&self.weight[i..]));
        s.add(y, s.load(&self.bias[i..]))
    }
    #[inline(always)]
    fn s(&self, src: &[f32], i: usize) -> f32 {
        ((src[i] - self.hi) - self.lo) * self.rstd * self.weight[i] + self.bias[i]
    }
}

/// `dst[i] = A(pre(src[i]))` for `i < dst.len()` on width `S` (inline it into a
/// kernel that already runs under [`dispatch`]).
#[inline(always)]
pub fn act_run<S: Simd, A: Act, P: PreOp, O: Out + ?Sized>(s: S, p: P, src: &[f32], dst: &mut O) {
    let src = &src[..dst.len()];
    fill_with(
        s,
        dst,
        #[inline(always)]
        |i| A::v(s, p.v(s, src, i)),
        #[inline(always)]
        |i| A::s(p.s(src, i)),
    );
}

struct ActKernel<'a, A, P, O: ?Sized> {
    p: P,
    src: &'a [f32],
    dst: &'a mut O,
    act: std::marker::PhantomData<A>,
}

impl<A: Act, P: PreOp, O: Out + ?Sized> SimdFn for ActKernel<'_, A, P, O> {
    type Out = ();
    #[inline(always)]
    fn call<S: Simd>(self, s: S) {
        act_run::<S, A, P, O>(s, self.p, self.src, self.dst)
    }
}

/// Call `$body` with `$p` bound to the typed form of `$pre`.
macro_rules! by_pre {
    ($pre:expr, $src:expr, $p:ident => $body:expr) => {
        match $pre {
            Pre::Id => {
                let $p = PId;
                $body
            }
            Pre::Add(b) => {
                let $p = PAdd(&b[..$src.len()]);
                $body
            }
            Pre::AddScalar(c) => {
                let $p = PAddScalar(c);
                $body
            }
            Pre::Norm {
                hi,
                lo,
                scale,
                shift,
            } => {
                let $p = PNorm {
                    hi,
                    lo,
                    scale,
                    shift,
                };
                $body
            }
            Pre::NormAffine {
                hi,
                lo,
                rstd,
                weight,
                bias,
            } => {
                let n = $src.len();
                let $p = PNormAffine {
                    hi,
                    lo,
                    rstd,
                    weight: &weight[..n],
                    bias: &bias[..n],
                };
                $body
            }
        }
    };
}

/// Call `$body` with the type `$a` naming the [`Act`] of `$act`, or `$fallback`
/// with `$op` bound for ops without a vector form.
macro_rules! by_act {
    ($act:expr, $a:ident => $body:expr, $op:ident => $fallback:expr) => {
        match $act {
            None => {
                type $a = NoAct;
                $body
            }
            Some(UnaryOp::Exp) => {
                type $a = ExpAct;
                $body
            }
            Some(UnaryOp::Sigmoid) => {
                type $a = SigmoidAct;
                $body
            }
            Some(UnaryOp::Silu) => {
                type $a = SiluAct;
                $body
            }
            Some(UnaryOp::Gelu) => {
                type $a = GeluAct;
                $body
            }
            Some(UnaryOp::QuickGelu) => {
                type $a = QuickGeluAct;
                $body
            }
            Some(UnaryOp::Neg) => {
                type $a = NegAct;
                $body
            }
            Some(UnaryOp::Abs) => {
                type $a = AbsAct;
                $body
            }
            Some(UnaryOp::Sqr) => {
                type $a = SqrAct;
                $body
            }
            Some(UnaryOp::Recip) => {
                type $a = RecipAct;
                $body
            }
            Some($op) => $fallback,
        }
    };
}

/// The typed kernel for `act` and `pre` on the widest vectors (ops without a vector
/// form run [`UnaryOp::apply`] one by one).
fn act_any<O: Out + ?Sized>(act: Option<UnaryOp>, pre: Pre<'_>, src: &[f32], dst: &mut O) {
    let src = &src[..dst.len()];
    by_pre!(pre, src, p => by_act!(act,
        A => dispatch(ActKernel::<A, _, O> { p, src, dst, act: std::marker::PhantomData }),
        op => fill_with(Scalar, dst, |i| op.apply(p.s(src, i)), |i| op.apply(p.s(src, i)))))
}

/// `dst[i] = act(pre(src[i]))` for `i < src.len()`, on the widest vectors this CPU
/// has; ops without a vector form run [`UnaryOp::apply`] one by one. Panics if
/// `dst` or a slice in `pre` is shorter than `src`.
pub fn act_slice(act: Option<UnaryOp>, pre: Pre<'_>, src: &[f32], dst: &mut [f32]) {
    act_any(act, pre, src, &mut dst[..src.len()])
}

/// [`act_slice`] into not-yet-initialised floats (every one of `dst` is written).
pub fn act_slice_uninit(
    act: Option<UnaryOp>,
    pre: Pre<'_>,
    src: &[f32],
    dst: &mut [MaybeUninit<f32>],
) {
    act_any(act, pre, src, &mut dst[..src.len()])
}

/// [`act_slice`] on a chosen vector width (tests compare every width the CPU has;
/// outside a [`dispatch`] the intrinsics are not inlined, so this is slower).
pub fn act_slice_on<S: Simd>(
    s: S,
    act: Option<UnaryOp>,
    pre: Pre<'_>,
    src: &[f32],
    dst: &mut [f32],
) {
    let dst = &mut dst[..src.len()];
    by_pre!(pre, src, p => by_act!(act,
        A => act_run::<S, A, _, [f32]>(s, p, src, dst),
        op => fill_with(Scalar, dst, |i| op.apply(p.s(src, i)), |i| op.apply(p.s(src, i)))))
}

/// [`exp_fast_v`] over a slice on a chosen vector width (for tests).
pub fn exp_fast_slice_on<S: Simd>(s: S, src: &[f32], dst: &mut [f32]) {
    let dst = &mut dst[..src.len()];
    fill_with(
        s,
        dst,
        |i| exp_fast_v(s, s.load(&src[i..])),
        |i| exp_fast_v(Scalar, src[i]),
    );
}

/// `dst[i] = op(src[i])`, bit for bit [`UnaryOp::apply`].
pub fn map_slice(op: UnaryOp, src: &[f32], dst: &mut [f32]) {
    act_slice(Some(op), Pre::Id, src, dst)
}

struct ExpSubSum<'a> {
    src: &'a [f32],
    dst: &'a mut [f32],
    m: f32,
}

impl SimdFn for ExpSubSum<'_> {
    type Out = f64;
    #[inline(always)]
    fn call<S: Simd>(self, s: S) -> f64 {
        let ExpSubSum { src, dst, m } = self;
        let dst = &mut dst[..src.len()];
        let mv = s.splat(m);
        fill_with(
            s,
            dst,
            #[inline(always)]
            |i| exp_v(s, s.sub(s.load(&src[i..]), mv)),
            |i| super::special::exp(src[i] - m),
        );
        let mut lanes = [0.0f64; 8];
        let mut chunks = dst.chunks_exact(8);
        for c in &mut chunks {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l += v as f64;
            }
        }
        lanes.iter().sum::<f64>() + chunks.remainder().iter().map(|&v| v as f64).sum::<f64>()
    }
}

/// `dst[i] = exp(src[i] - m)`, returning the sum of the `dst` values (in f64):
/// the inner step of a softmax row.
pub fn exp_sub_sum(src: &[f32], m: f32, dst: &mut [f32]) -> f64 {
    dispatch(ExpSubSum { src, dst, m })
}
