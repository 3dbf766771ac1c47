//! Normal (Gaussian) draws from uniform ones with the Box-Muller transform, and the
//! tensor constructors `Tensor::rand` / `Tensor::randn`. Lesson `lessons/02-random`.
//!
//! Two independent uniforms `u1, u2` in `[0, 1)` give two independent standard normals:
//!
//! ```text
//! r = sqrt(-2 ln(1 - u1))        (1 - u1 is in (0, 1], so the log is finite)
//! theta = 2 pi u2
//! z0 = r cos(theta),  z1 = r sin(theta)
//! ```
//!
//! **The second value.** [`BoxMuller`] keeps `z1` and returns it on the next call
//! (the same caching torch's scalar `normal_distribution<double>` does), so a stream
//! of single draws wastes nothing. [`Tensor::randn`] has no cache across calls: it
//! fills its elements pairwise `(z0, z1), (z0, z1), ...` with a fresh [`BoxMuller`],
//! and for an odd count the last `z1` is dropped. So a `randn` result depends only on
//! the generator state, never on what an earlier call left behind, and equals the
//! first `numel` draws of a fresh `BoxMuller` on the same generator.
//!
//! Shapes: `Tensor::rand(shape, rng)` / `Tensor::randn(shape, rng) -> (shape)`, f32.
//!
//! ```
//! use tensor::random::{box_muller, NaiveWichmannHill};
//! use tensor::{Rng, Tensor};
//! let (z0, z1) = box_muller(0.5, 0.25);      // r = sqrt(2 ln 2), theta = pi / 2
//! assert!((z0 - 0.0).abs() < 1e-15 && (z1 - 1.1774100225154747).abs() < 1e-15);
//! let x = Tensor::randn([2, 3], &mut NaiveWichmannHill::seed(457428938475)).unwrap();
//! assert_eq!(x.dims(), &[2, 3]);
//! let u = Tensor::rand([4], &mut NaiveWichmannHill::seed(457428938475)).unwrap();
//! assert_eq!(u.to_vec().unwrap()[0], 0.7645251082582081_f64 as f32);
//! ```

use super::Rng;
use crate::error::{Result, TensorError};
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Box-Muller: two standard normals from two uniforms in `[0, 1)`.
pub fn box_muller(u1: f64, u2: f64) -> (f64, f64) {
    let r = (-2.0 * (1.0 - u1).ln()).sqrt();
    let theta = 2.0 * std::f64::consts::PI * u2;
    (r * theta.cos(), r * theta.sin())
}

/// A normal sampler `mean + std * z` that caches the second Box-Muller value.
#[derive(Clone, Debug)]
pub struct BoxMuller {
    mean: f64,
    std: f64,
    cached: Option<f64>,
}

impl BoxMuller {
    /// The standard normal (mean 0, std 1).
    pub fn standard() -> Self {
        BoxMuller {
            mean: 0.0,
            std: 1.0,
            cached: None,
        }
    }

    /// A normal with the given mean and standard deviation (finite, `std >= 0`).
    pub fn new(mean: f64, std: f64) -> Result<Self> {
        if !mean.is_finite() || !std.is_finite() || std < 0.0 {
            return Err(TensorError::invalid(
                "BoxMuller::new",
                format!("mean {mean}, std {std}: need finite values and std >= 0"),
            ));
        }
        Ok(BoxMuller {
            mean,
            std,
            cached: None,
        })
    }

    /// One draw: the cached `z1` if there is one, else two new uniforms.
    pub fn sample(&mut self, rng: &mut impl Rng) -> f64 {
        let z = match self.cached.take() {
            Some(z1) => z1,
            None => {
                let u1 = rng.uniform();
                let u2 = rng.uniform();
                let (z0, z1) = box_muller(u1, u2);
                self.cached = Some(z1);
                z0
            }
        };
        self.mean + self.std * z
    }

    /// Whether a second value is waiting.
    pub fn has_cached(&self) -> bool {
        self.cached.is_some()
    }
}

/// An f64 uniform in `[0, 1)` as an f32 that is still `< 1` (rounding to nearest could
/// otherwise turn 0.99999999 into 1.0).
fn uniform_f32(u: f64) -> f32 {
    let v = u as f32;
    if v >= 1.0 {
        1.0 - f32::EPSILON / 2.0
    } else {
        v
    }
}

impl Tensor {
    /// Uniform `[0, 1)` values, one `rng.uniform()` per element in row-major order.
    pub fn rand(shape: impl Into<Shape>, rng: &mut impl Rng) -> Result<Tensor> {
        let shape = shape.into();
        let data = (0..shape.numel())
            .map(|_| uniform_f32(rng.uniform()))
            .collect();
        Tensor::from_vec(data, shape)
    }

    /// Standard normal values by Box-Muller, filled pairwise; two uniforms per pair,
    /// the last `z1` dropped when `numel` is odd (see the module docs).
    pub fn randn(shape: impl Into<Shape>, rng: &mut impl Rng) -> Result<Tensor> {
        let shape = shape.into();
        let mut normal = BoxMuller::standard();
        let data = (0..shape.numel())
            .map(|_| normal.sample(rng) as f32)
            .collect();
        Tensor::from_vec(data, shape)
    }
}
