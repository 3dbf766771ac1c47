//! The library's Wichmann-Hill: the course's generator, made safe to use across
//! `fork()` and across threads. Introduced in lesson `lessons/02-random`.
//!
//! **The bug.** A forked child gets a byte-for-byte copy of its parent's memory, so a
//! generator held in a plain struct ([`NaiveWichmannHill`]) continues the *same*
//! stream in parent and child: two data-loader workers hand out the same "random"
//! augmentations. Seeded with 457428938475, three draws, then `fork()`: both processes
//! draw 0.9559050644103264.
//!
//! **The fix.** [`WichmannHill`] remembers the process id it was seeded in
//! (`libc::getpid`). Every draw compares it with the current pid (one system call,
//! since glibc no longer caches the pid: measured about 120 ns per draw against 11 ns
//! for the naive generator on a 2-vCPU VM). When they differ the generator is in a
//! forked child, and before drawing it re-derives its state from `(key, new pid)`:
//!
//! ```text
//! splitmix64(v)        = the SplitMix64 finaliser of v + 0x9E3779B97F4A7C15
//! mix(key, tag, v)     = splitmix64(key ^ splitmix64(tag ^ v))
//! key after fork       = mix(key, FORK_TAG,  pid as u64)    FORK_TAG  = 0x666f726b_00000000 ("fork")
//! key of split stream i= mix(key, SPLIT_TAG, i)              SPLIT_TAG = 0x73706c69_74000000 ("split")
//! state for a key      = NaiveWichmannHill::seed(key)         (the course's divmod chain)
//! ```
//!
//! The *key* of a generator made by [`WichmannHill::seed`] is the seed itself, so in
//! the process that seeded it the stream is exactly the course's. A child's stream
//! depends only on `(key, child pid)`: reproducible, and the parent can compute it with
//! [`WichmannHill::forked_stream`]. The child records its own pid and key, so a
//! grandchild re-derives again. Nothing about the parent's draw count enters the mix.
//!
//! **Threads** share a pid, so they must not share a generator: [`WichmannHill::split`]
//! hands out the i-th child stream `mix(key, SPLIT_TAG, i)`, deterministically (the
//! same seed gives the same streams, in the same order). Wichmann-Hill has period about
//! 6.95e12; streams from different keys start at unrelated points of that cycle, so for
//! the lengths used here they do not overlap in practice (not a proof of independence).
//!
//! ```
//! use tensor::random::WichmannHill;
//! use tensor::Rng;
//! let mut rng = WichmannHill::seed(457428938475);
//! assert_eq!(rng.state(), (4976, 20238, 499));
//! assert_eq!(rng.uniform(), 0.7645251082582081);
//! let mut worker = rng.split();                       // an independent, deterministic stream
//! assert_ne!(worker.uniform(), rng.uniform());
//! ```

use super::wichmann_hill::NaiveWichmannHill;
use super::Rng;

/// Domain tag mixed in when a forked child re-derives its state ("fork").
pub const FORK_TAG: u64 = 0x666f_726b_0000_0000;
/// Domain tag mixed in when a stream is split off ("split").
pub const SPLIT_TAG: u64 = 0x7370_6c69_7400_0000;

/// SplitMix64's output function applied to `v + golden gamma` (Steele, Lea, Flood 2014):
/// a bijection on u64 whose output bits each depend on every input bit.
pub fn splitmix64(v: u64) -> u64 {
    let mut z = v.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `splitmix64(key ^ splitmix64(tag ^ v))`: the key of a derived stream.
pub fn mix(key: u64, tag: u64, v: u64) -> u64 {
    splitmix64(key ^ splitmix64(tag ^ v))
}

/// The id of the calling process.
pub fn current_pid() -> i32 {
    // SAFETY: getpid has no preconditions, cannot fail and is async-signal-safe.
    unsafe { libc::getpid() }
}

/// Fork-safe, splittable Wichmann-Hill (see the module docs for the derivation rules).
///
/// Not `Clone`: a copy would repeat the stream, which is the bug this type exists to
/// prevent. Use [`WichmannHill::split`] for a second stream.
#[derive(Debug)]
pub struct WichmannHill {
    inner: NaiveWichmannHill,
    key: u64,
    pid: i32,
    splits: u64,
}

impl WichmannHill {
    /// Seed exactly as the course does; remembers the current process id.
    pub fn seed(seed: u64) -> Self {
        Self::from_key(seed)
    }

    fn from_key(key: u64) -> Self {
        WichmannHill {
            inner: NaiveWichmannHill::seed(key),
            key,
            pid: current_pid(),
            splits: 0,
        }
    }

    /// The stream this generator becomes in a forked child whose pid is `pid`, built
    /// here (in the calling process). Lets a parent predict, and a test check, what a
    /// child draws: `rng.forked_stream(child_pid).uniform()` equals the child's next draw.
    pub fn forked_stream(&self, pid: i32) -> WichmannHill {
        Self::from_key(mix(self.key, FORK_TAG, pid as u32 as u64))
    }

    /// Hand out the next independent stream (for a thread or worker). Deterministic:
    /// the i-th split of a generator with key `k` has key `mix(k, SPLIT_TAG, i)`.
    pub fn split(&mut self) -> WichmannHill {
        self.check_fork();
        let child = Self::from_key(mix(self.key, SPLIT_TAG, self.splits));
        self.splits += 1;
        child
    }

    /// The key the state was derived from: the seed, or a derived key after a split or
    /// a fork.
    pub fn key(&self) -> u64 {
        self.key
    }

    /// The process id this generator's state belongs to.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The current Wichmann-Hill state `(x, y, z)` (as last drawn; a pending fork
    /// re-derivation happens on the next draw or split).
    pub fn state(&self) -> (u32, u32, u32) {
        self.inner.state()
    }

    /// If we are in a forked child, become the child's stream. Only getpid and
    /// arithmetic: async-signal-safe, so a child may draw before it execs or exits.
    fn check_fork(&mut self) {
        let pid = current_pid();
        if pid != self.pid {
            *self = Self::from_key(mix(self.key, FORK_TAG, pid as u32 as u64));
        }
    }
}

impl Rng for WichmannHill {
    fn uniform(&mut self) -> f64 {
        self.check_fork();
        self.inner.uniform()
    }
}
