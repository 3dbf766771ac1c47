//! The 32-bit Mersenne Twister, MT19937 (Matsumoto & Nishimura 1998): the engine
//! inside PyTorch's CPU generator ([`super::TorchGenerator`]). Lesson `lessons/02-random`.
//!
//! State: 624 words of 32 bits. Seeding (as `std::mt19937` and `at::mt19937`):
//! `s[0] = seed`, `s[i] = 1812433253 * (s[i-1] ^ (s[i-1] >> 30)) + i` (mod 2^32).
//! Every 624 outputs the whole state is "twisted"; each output is a tempered word.
//!
//! ```
//! use tensor::random::Mt19937;
//! let mut mt = Mt19937::new(5489);            // the C++ default seed
//! assert_eq!(mt.next_u32(), 3499211612);
//! let mut mt = Mt19937::new(5489);
//! let x = (0..10_000).map(|_| mt.next_u32()).last().unwrap();
//! assert_eq!(x, 4123659995);                  // the C++ standard's check value
//! ```

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER: u32 = 0x8000_0000;
const LOWER: u32 = 0x7fff_ffff;

/// MT19937 with 32-bit outputs.
#[derive(Clone)]
pub struct Mt19937 {
    state: Box<[u32; N]>,
    index: usize,
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Mt19937(index={}, state[0..2]={:?})",
            self.index,
            &self.state[..2]
        )
    }
}

impl Mt19937 {
    /// Seeded with a 32-bit value.
    pub fn new(seed: u32) -> Self {
        let mut state = Box::new([0u32; N]);
        state[0] = seed;
        for i in 1..N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, index: N }
    }

    /// Regenerate all 624 words.
    fn twist(&mut self) {
        let s = &mut self.state;
        for i in 0..N {
            let y = (s[i] & UPPER) | (s[(i + 1) % N] & LOWER);
            let mag = if y & 1 == 1 { MATRIX_A } else { 0 };
            s[i] = s[(i + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// The next 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }
}
