//! Wichmann-Hill (1982), exactly as the course writes it: three small multiplicative
//! congruential generators whose fractions are summed modulo 1.
//!
//! Lesson `lessons/02-random` builds it first. The state is three integers
//! `(x, y, z)` with `1 <= x < 30269`, `1 <= y < 30307`, `1 <= z < 30323`:
//!
//! ```text
//! seed(a):  a, x = divmod(a, 30268); a, y = divmod(a, 30306); a, z = divmod(a, 30322)
//!           state = (x+1, y+1, z+1)
//! rand():   x = 171*x % 30269; y = 172*y % 30307; z = 170*z % 30323
//!           return (x/30269 + y/30307 + z/30323) % 1.0          (f64 arithmetic)
//! ```
//!
//! [`NaiveWichmannHill`] is that and nothing more: copying it (or forking the process
//! that holds it) copies the stream, which is the bug lesson 02 shows. The fork-safe
//! generator the library uses is [`super::WichmannHill`], built on this one.
//!
//! ```
//! use tensor::random::NaiveWichmannHill;
//! use tensor::Rng;
//! let mut rng = NaiveWichmannHill::seed(457428938475);
//! assert_eq!(rng.state(), (4976, 20238, 499));
//! assert_eq!(rng.uniform(), 0.7645251082582081);
//! assert_eq!(rng.uniform(), 0.7920889799553945);
//! ```

use super::Rng;

/// Moduli of the three component generators.
const M: [u32; 3] = [30269, 30307, 30323];
/// Multipliers of the three component generators.
const A: [u32; 3] = [171, 172, 170];

/// The course's Wichmann-Hill generator with a plain, copyable state.
///
/// Deliberately `Clone` and `Copy`-like in spirit: a copy continues the very same
/// stream. Use [`super::WichmannHill`] when a process may fork or threads need streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NaiveWichmannHill {
    state: (u32, u32, u32),
}

impl NaiveWichmannHill {
    /// Seed with the course's divmod chain (any `u64`; the high digits only feed `z`).
    pub fn seed(a: u64) -> Self {
        let (a, x) = (a / 30268, a % 30268);
        let (a, y) = (a / 30306, a % 30306);
        let z = a % 30322;
        // Each remainder is < modulus - 1, so each component is in 1..modulus: never 0,
        // which would be a fixed point of the multiplicative generator.
        NaiveWichmannHill {
            state: (x as u32 + 1, y as u32 + 1, z as u32 + 1),
        }
    }

    /// A generator at an explicit state. Each component must be in `1..modulus`
    /// (30269, 30307, 30323); `None` otherwise (a 0 component would stay 0 forever).
    pub fn from_state(state: (u32, u32, u32)) -> Option<Self> {
        let (x, y, z) = state;
        let ok = (1..M[0]).contains(&x) && (1..M[1]).contains(&y) && (1..M[2]).contains(&z);
        ok.then_some(NaiveWichmannHill { state })
    }

    /// The current state `(x, y, z)`.
    pub fn state(&self) -> (u32, u32, u32) {
        self.state
    }
}

impl Rng for NaiveWichmannHill {
    fn uniform(&mut self) -> f64 {
        let (x, y, z) = self.state;
        // Products stay below 2^23: exact in u32.
        let x = A[0] * x % M[0];
        let y = A[1] * y % M[1];
        let z = A[2] * z % M[2];
        self.state = (x, y, z);
        // Same operation order as the Python expression, so the f64 results are identical.
        (x as f64 / M[0] as f64 + y as f64 / M[1] as f64 + z as f64 / M[2] as f64) % 1.0
    }
}
