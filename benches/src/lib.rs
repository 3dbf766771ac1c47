//! Shared helpers for the benches in `benches/benches/` and the peer runner
//! (`src/bin/peers.rs`, driven by `peers/peers.py`): the shapes every comparison
//! uses, their FLOP counts, and deterministic input data.
//!
//! The shapes are the square sizes of the matmul ladder plus the products and
//! convolutions Stable Diffusion 1.5 spends its time in at 512 x 512:
//!
//! - `4096x320 @ 320x320`: a linear layer (q/k/v/out projections) at the 64 x 64
//!   latent, 320 channels;
//! - `4096x40 @ 40x4096`: attention scores `Q K^T` of one head (head dim 40), with B
//!   read as the transpose of K, as attention does;
//! - `1024x640 @ 640x640`: the same linear layer at 32 x 32, 640 channels;
//! - 3x3 conv 320 -> 320 at 64 x 64 (UNet) and 128 -> 128 at 512 x 512 (VAE decoder);
//! - attention `(2, 8, 4096, 40)`: batch 2 (classifier-free guidance), 8 heads.
//!
//! ```
//! use benches::{cases, Case};
//! let mm = cases().into_iter().find(|c| c.name == "mm 512").unwrap();
//! assert_eq!(mm.case, Case::Matmul { m: 512, k: 512, n: 512, b_transposed: false });
//! assert_eq!(mm.flops(), 2.0 * 512.0 * 512.0 * 512.0);
//! ```

/// One benchmark problem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    /// C (m x n) = A (m x k) * B (k x n); with `b_transposed` B is the transposed
    /// view of a row-major (n x k) matrix (no copy).
    Matmul {
        m: usize,
        k: usize,
        n: usize,
        b_transposed: bool,
    },
    /// A batch-1 convolution `(1, c_in, h, w)` with a `(c_out, c_in, kernel, kernel)`
    /// weight, stride 1, padding `kernel / 2` (same size out), with bias.
    Conv {
        c_in: usize,
        c_out: usize,
        h: usize,
        w: usize,
        kernel: usize,
    },
    /// `softmax(Q K^T / sqrt(d)) V` on `(batch, heads, seq, d)` tensors.
    Attention {
        batch: usize,
        heads: usize,
        seq: usize,
        d: usize,
    },
}

/// A problem with the name every report uses for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedCase {
    pub name: &'static str,
    pub case: Case,
}

impl NamedCase {
    /// Floating-point operations of one run (a multiply-add counts as 2).
    pub fn flops(&self) -> f64 {
        match self.case {
            Case::Matmul { m, k, n, .. } => 2.0 * (m * k * n) as f64,
            Case::Conv {
                c_in,
                c_out,
                h,
                w,
                kernel,
            } => 2.0 * (c_out * c_in * kernel * kernel * h * w) as f64,
            // Q K^T and P V: two products of seq x seq x d per head.
            Case::Attention {
                batch,
                heads,
                seq,
                d,
            } => 4.0 * (batch * heads * seq * seq * d) as f64,
        }
    }
}

const fn mm(name: &'static str, m: usize, k: usize, n: usize, b_transposed: bool) -> NamedCase {
    NamedCase {
        name,
        case: Case::Matmul {
            m,
            k,
            n,
            b_transposed,
        },
    }
}

/// Every problem, in report order.
pub fn cases() -> Vec<NamedCase> {
    vec![
        mm("mm 256", 256, 256, 256, false),
        mm("mm 512", 512, 512, 512, false),
        mm("mm 1024", 1024, 1024, 1024, false),
        mm("mm 2048", 2048, 2048, 2048, false),
        mm("sd 4096x320 @ 320x320", 4096, 320, 320, false),
        mm("sd 4096x40 @ 40x4096 (K^T)", 4096, 40, 4096, true),
        mm("sd 4096x4096 @ 4096x40", 4096, 4096, 40, false),
        mm("sd 1024x640 @ 640x640", 1024, 640, 640, false),
        NamedCase {
            name: "conv3x3 320->320 @64x64",
            case: Case::Conv {
                c_in: 320,
                c_out: 320,
                h: 64,
                w: 64,
                kernel: 3,
            },
        },
        NamedCase {
            name: "conv3x3 128->128 @512x512",
            case: Case::Conv {
                c_in: 128,
                c_out: 128,
                h: 512,
                w: 512,
                kernel: 3,
            },
        },
        NamedCase {
            name: "attention (2,8,4096,40)",
            case: Case::Attention {
                batch: 2,
                heads: 8,
                seq: 4096,
                d: 40,
            },
        },
    ]
}

/// `n` deterministic values in [-0.5, 0.5) (xorshift32), different for each `seed`.
pub fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}
