//! Rung 5 of the GPU matmul ladder ([`vec4.wgsl`](vec4.wgsl)): rung 4 with vec4
//! loads and the next tile prefetched into registers, for row-major operands
//! aligned to four floats ([`vec4_ok`]).

use super::{launch_with, Tiles, PRELUDE};
use crate::error::{Result, TensorError};
use crate::tensor::Tensor;

/// True when `lhs @ rhs` can bind both operands as vec4 arrays: unit stride along
/// k for `lhs` and along n for `rhs`, and every other stride, offset, `k` and `n`
/// a multiple of 4.
pub fn vec4_ok(lhs: &Tensor, rhs: &Tensor) -> bool {
    let (lr, rr) = (lhs.rank(), rhs.rank());
    if lr < 2 || rr < 2 {
        return false;
    }
    let (ls, rs) = (lhs.strides(), rhs.strides());
    let four = |v: usize| v.is_multiple_of(4);
    ls[lr - 1] == 1
        && rs[rr - 1] == 1
        && four(lhs.dims()[lr - 1])
        && four(rhs.dims()[rr - 1])
        && four(lhs.layout().offset())
        && four(rhs.layout().offset())
        && ls[..lr - 1].iter().all(|&s| four(s))
        && rs[..rr - 1].iter().all(|&s| four(s))
}

/// `lhs @ rhs` with rung 5 (an error when [`vec4_ok`] is false).
pub fn matmul_vec4(lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    if !vec4_ok(lhs, rhs) {
        return Err(TensorError::invalid(
            "matmul (wgpu, vec4)",
            "operands are not row-major with rows aligned to 4 floats",
        ));
    }
    let prelude = PRELUDE.replace(
        "var<storage, read> a: array<f32>;",
        "var<storage, read> a: array<vec4<f32>>;",
    );
    let prelude = prelude.replace(
        "var<storage, read> b: array<f32>;",
        "var<storage, read> b: array<vec4<f32>>;",
    );
    let body = Tiles::DEFAULT.fill(include_str!("vec4.wgsl"), true);
    launch_with(&prelude, &body, [64, 64], lhs, rhs)
}
