//! Random number generators written from scratch (lesson `lessons/02-random`).
//!
//! Every generator implements [`Rng`]: a uniform draw in `[0, 1)`. Library code never
//! uses a global generator; a generator is always an explicit argument.
//!
//! - [`wichmann_hill`]: the course's Wichmann-Hill, copyable ([`NaiveWichmannHill`]);
//! - [`fork_safe`]: the library's [`WichmannHill`], fork-safe and splittable;
//! - [`fork`]: draw in a real forked child ([`draw_in_forked_child`]), the lesson's experiment;
//! - [`normal`]: Box-Muller ([`BoxMuller`]) and `Tensor::rand` / `Tensor::randn`;
//! - [`mt19937`] and [`torch`]: PyTorch's CPU generator ([`TorchGenerator`]), so a
//!   seed gives the same `randn` as `torch.manual_seed(seed)`.
//!
//! ```
//! use tensor::random::WichmannHill;
//! use tensor::Rng;
//! let mut rng = WichmannHill::seed(457428938475);
//! let mean = (0..10_000).map(|_| rng.uniform()).sum::<f64>() / 10_000.0;
//! assert!((mean - 0.50118776801666).abs() < 1e-14);
//! ```

pub mod fork;
pub mod fork_safe;
pub mod mt19937;
pub mod normal;
pub mod torch;
pub mod wichmann_hill;

pub use fork::draw_in_forked_child;
pub use fork_safe::WichmannHill;
pub use mt19937::Mt19937;
pub use normal::{box_muller, BoxMuller};
pub use torch::TorchGenerator;
pub use wichmann_hill::NaiveWichmannHill;

/// A source of uniform random numbers in `[0, 1)`.
pub trait Rng {
    /// One uniform draw in `[0, 1)`.
    fn uniform(&mut self) -> f64;
}

impl<R: Rng + ?Sized> Rng for &mut R {
    fn uniform(&mut self) -> f64 {
        (**self).uniform()
    }
}
