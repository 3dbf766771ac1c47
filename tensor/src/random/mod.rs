//! Random number generators written from scratch (lesson `lessons/02-random`).
//!
//! Every generator implements [`Rng`]: a uniform draw in `[0, 1)`. Library code never
//! uses a global generator; a generator is always an explicit argument.

/// A source of uniform random numbers in `[0, 1)`.
pub trait Rng {
    /// One uniform draw in `[0, 1)`.
    fn uniform(&mut self) -> f64;
}
