//! The GPU matmul ladder (the GPU chapter of `lessons/01-matmul`), three WGSL
//! kernels, each tested against the CPU product:
//!
//! 1. [`naive.wgsl`](naive.wgsl): one thread per output, straight from global memory.
//! 2. [`tiled.wgsl`](tiled.wgsl): 16 x 16 tiles staged in workgroup memory.
//! 3. [`register.wgsl`](register.wgsl): 64 x 64 tiles, each thread a 4 x 4 block
//!    of vec4 accumulators (register blocking).
//!
//! All three take `(batch.., m, k) @ (batch.., k, n)` with any strides (a
//! transposed or broadcast operand is read in place, like the CPU's `MatRef`) and
//! write a contiguous `(batch.., m, n)`; the batch is the grid's z dimension.
//! `Tensor::matmul` on wgpu uses rung 3.
//!
//! ```
//! use tensor::wgpu::matmul::{matmul_with, MatmulKernel};
//! use tensor::{Device, Tensor};
//! let Ok(gpu) = Device::wgpu() else {
//!     println!("skipped: no wgpu adapter");
//!     return;
//! };
//! let a = Tensor::from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [2, 3]).unwrap().to_device(&gpu).unwrap();
//! let b = Tensor::from_slice(&[1.0, 0.0, 0.0, 1.0, 1.0, 1.0], [3, 2]).unwrap().to_device(&gpu).unwrap();
//! for k in MatmulKernel::ALL {
//!     assert_eq!(matmul_with(k, &a, &b).unwrap().to_vec().unwrap(), vec![4.0, 5.0, 10.0, 11.0]);
//! }
//! ```

use super::kernel;
use super::{buf, device_of, on, output};
use crate::error::{Result, TensorError};
use crate::tensor::Tensor;

/// Which rung of the ladder to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatmulKernel {
    Naive,
    Tiled,
    Register,
}

impl MatmulKernel {
    /// All rungs, in ladder order.
    pub const ALL: [MatmulKernel; 3] = [
        MatmulKernel::Naive,
        MatmulKernel::Tiled,
        MatmulKernel::Register,
    ];

    /// The kernel's WGSL body (without [`PRELUDE`]).
    pub fn wgsl(self) -> &'static str {
        match self {
            MatmulKernel::Naive => include_str!("naive.wgsl"),
            MatmulKernel::Tiled => include_str!("tiled.wgsl"),
            MatmulKernel::Register => include_str!("register.wgsl"),
        }
    }

    /// Output elements per workgroup side.
    fn tile(self) -> usize {
        match self {
            MatmulKernel::Register => 64,
            _ => 16,
        }
    }
}

/// Bindings and batch offsets shared by the three kernels. `meta`: `[m, n, k,
/// batch_rank, a_off, a_row_stride, a_k_stride, b_off, b_k_stride, b_col_stride,
/// batch dims.., a batch strides.., b batch strides..]`.
pub const PRELUDE: &str = r#"
@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

// Storage offset of matrix `z` of the batch for operand `which` (0 = a, 1 = b).
fn batch_base(z: u32, which: u32) -> u32 {
    let rank = info[3];
    var off = info[4u + 3u * which];
    var rem = z;
    var d = rank;
    while (d > 0u) {
        d = d - 1u;
        let size = info[10u + d];
        off = off + (rem % size) * info[10u + rank * (1u + which) + d];
        rem = rem / size;
    }
    return off;
}
fn a_base(z: u32) -> u32 { return batch_base(z, 0u); }
fn b_base(z: u32) -> u32 { return batch_base(z, 1u); }
"#;

/// `lhs @ rhs` for `lhs: (batch.., m, k)` and `rhs: (batch.., k, n)` with equal
/// (already broadcast) batch dims, on the GPU with `kernel`.
pub fn matmul_with(kernel: MatmulKernel, lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    let op = "matmul";
    let dev = device_of(&[lhs, rhs]).ok_or_else(|| TensorError::invalid(op, "not on wgpu"))?;
    let (lhs, rhs) = (on(&dev, lhs)?, on(&dev, rhs)?);
    let (lr, rr) = (lhs.rank(), rhs.rank());
    if lr < 2 || lr != rr || lhs.dims()[..lr - 2] != rhs.dims()[..rr - 2] {
        return Err(TensorError::ShapeMismatch {
            op: "matmul (wgpu)",
            lhs: lhs.dims().to_vec(),
            rhs: rhs.dims().to_vec(),
        });
    }
    let (m, k, n) = (lhs.dims()[lr - 2], lhs.dims()[lr - 1], rhs.dims()[rr - 1]);
    if rhs.dims()[rr - 2] != k {
        return Err(TensorError::ShapeMismatch {
            op: "matmul (wgpu)",
            lhs: lhs.dims().to_vec(),
            rhs: rhs.dims().to_vec(),
        });
    }
    let batch_dims = &lhs.dims()[..lr - 2];
    let batch: usize = batch_dims.iter().product();
    let mut out_dims = batch_dims.to_vec();
    out_dims.extend([m, n]);
    let out = output(&dev, op, out_dims)?;
    if out.numel() == 0 {
        return Ok(out);
    }
    kernel::check_u32(op, lhs.numel().max(rhs.numel()).max(out.numel()))?;
    let (ls, rs) = (lhs.strides(), rhs.strides());
    let mut meta = vec![
        m,
        n,
        k,
        lr - 2,
        lhs.layout().offset(),
        ls[lr - 2],
        ls[lr - 1],
        rhs.layout().offset(),
        rs[rr - 2],
        rs[rr - 1],
    ];
    meta.extend(batch_dims);
    meta.extend(&ls[..lr - 2]);
    meta.extend(&rs[..rr - 2]);
    let meta: Vec<u32> = meta.into_iter().map(|v| v as u32).collect();
    let t = kernel.tile();
    let groups = [n.div_ceil(t) as u32, m.div_ceil(t) as u32, batch as u32];
    let source = format!("{PRELUDE}{}", kernel.wgsl());
    let bufs = [buf(op, &out)?, buf(op, &lhs)?, buf(op, &rhs)?];
    kernel::run(&dev, op, &source, &meta, &bufs, groups)?;
    Ok(out)
}

/// [`matmul_with`] the fastest rung.
pub fn matmul(lhs: &Tensor, rhs: &Tensor) -> Result<Tensor> {
    matmul_with(MatmulKernel::Register, lhs, rhs)
}
