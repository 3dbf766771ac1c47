//! Indexing by tensors of positions on the GPU: `gather` and `index_add`, one
//! thread per output element, both reading any strided layout in place.
//!
//! - `gather(dim, index)`: thread `i` (row-major over `index`'s shape) reads its
//!   index value `k`, then `x` at its own position with the `dim` coordinate
//!   replaced by `k`. `x: (.., n, ..)`, `index: (.., m, ..)` -> `index`'s shape.
//! - `index_add(dim, indices, source)`: WGSL has no float atomics, so instead of
//!   scattering, every output element *pulls*: the host sorts the indices into a
//!   list per target row (CSR: `starts[size + 1]`, then the source rows in their
//!   original order), and thread `i` adds its row's sources one by one onto
//!   `self[i]`. That is the CPU's summation order, so the result is bitwise the
//!   same, and no thread loops over indices that are not its own.
//!   `self: (.., n, ..)`, `source: (.., len, ..)` -> `(.., n, ..)`.
//!
//! The index values were checked by the caller (`ops/index.rs`); the kernels only
//! convert them. Introduced with the tensors lesson (gather) and the autodiff lesson
//! (index_add, the backward of `embedding`).
//!
//! ```
//! use tensor::{Device, Tensor};
//! let Ok(gpu) = Device::wgpu() else {
//!     println!("skipped: no wgpu adapter");
//!     return;
//! };
//! let w = Tensor::arange(0.0, 6.0, 1.0).unwrap().reshape([3, 2]).unwrap().to_device(&gpu).unwrap();
//! let idx = Tensor::from_vec(vec![1.0, 0.0, 0.0], [3, 1]).unwrap(); // a CPU index is uploaded
//! assert_eq!(w.gather(1, &idx).unwrap().to_vec().unwrap(), vec![1.0, 2.0, 4.0]);
//! let src = Tensor::ones([2, 2]);
//! let out = w.index_add(0, &[2, 2], &src).unwrap();
//! assert_eq!(out.to_vec().unwrap(), vec![0.0, 1.0, 2.0, 3.0, 6.0, 7.0]);
//! ```

use super::kernel::{self, FLAT_ID, OFFSET_OF};
use super::{buf, device_of, on, output};
use crate::error::{Result, TensorError};
use crate::tensor::Tensor;

const GATHER: &str = r#"
@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read> idx: array<f32>;

// meta: strided_meta over index's dims with operands (x, index), then [d, inner]
// where inner is the product of index's dims after d.
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= info[0]) { return; }
    let rank = info[1];
    let tail = 4u + rank + 2u * (rank + 1u);
    let d = info[tail];
    let p = (i / info[tail + 1u]) % info[4u + d];
    let st = info[4u + rank + 1u + d];
    let k = u32(idx[offset_of(i, 1u)]);
    out[i] = src[offset_of(i, 0u) - p * st + k * st];
}
"#;

/// `x.gather(d, index)` (shapes and index values checked by the caller); `index`
/// may live on the CPU (it is uploaded) or the GPU.
pub fn gather(x: &Tensor, d: usize, index: &Tensor) -> Result<Tensor> {
    let op = "gather";
    let dev = device_of(&[x]).ok_or_else(|| TensorError::invalid(op, "not on wgpu"))?;
    let index = on(&dev, index)?;
    let dims = index.dims().to_vec();
    let out = output(&dev, op, dims.clone())?;
    let n = out.numel();
    if n == 0 {
        return Ok(out);
    }
    kernel::check_u32(op, n.max(x.numel()))?;
    let inner: usize = dims[d + 1..].iter().product();
    let mut meta = kernel::strided_meta(
        &dims,
        [0.0; 2],
        &[
            (x.layout().offset(), x.strides()),
            (index.layout().offset(), index.strides()),
        ],
    );
    meta.extend([d as u32, inner as u32]);
    let source = format!("{FLAT_ID}{OFFSET_OF}{GATHER}");
    let bufs = [buf(op, &out)?, buf(op, x)?, buf(op, &index)?];
    kernel::run(&dev, op, &source, &meta, &bufs, kernel::grid(n))?;
    Ok(out)
}

const INDEX_ADD: &str = r#"
@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> base: array<f32>;
@group(0) @binding(3) var<storage, read> src: array<f32>;

// meta: strided_meta over self's dims with operands (self, source), then
// [d, inner, csr], and at `csr`: starts[size + 1], then the source rows per target.
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= info[0]) { return; }
    let rank = info[1];
    let tail = 4u + rank + 2u * (rank + 1u);
    let d = info[tail];
    let csr = info[tail + 2u];
    let p = (i / info[tail + 1u]) % info[4u + d];
    let st = info[4u + rank + 1u + rank + 1u + d];
    let row0 = offset_of(i, 1u) - p * st;
    var acc = base[offset_of(i, 0u)];
    let end = info[csr + p + 1u];
    for (var k = info[csr + p]; k < end; k = k + 1u) {
        acc = acc + src[row0 + info[k] * st];
    }
    out[i] = acc;
}
"#;

/// `x.index_add(d, indices, source)` (shapes and indices checked by the caller).
pub fn index_add(x: &Tensor, d: usize, indices: &[usize], source: &Tensor) -> Result<Tensor> {
    let op = "index_add";
    let dev = device_of(&[x, source]).ok_or_else(|| TensorError::invalid(op, "not on wgpu"))?;
    let (x, source) = (on(&dev, x)?, on(&dev, source)?);
    let dims = x.dims().to_vec();
    let out = output(&dev, op, dims.clone())?;
    let n = out.numel();
    if n == 0 {
        return Ok(out);
    }
    kernel::check_u32(op, n.max(source.numel()))?;
    let size = dims[d];
    let inner: usize = dims[d + 1..].iter().product();
    let mut meta = kernel::strided_meta(
        &dims,
        [0.0; 2],
        &[
            (x.layout().offset(), x.strides()),
            (source.layout().offset(), source.strides()),
        ],
    );
    // CSR by target row, a counting sort that keeps each row's sources in order.
    let csr = meta.len() + 3;
    let mut starts = vec![0usize; size + 1];
    for &t in indices {
        starts[t + 1] += 1;
    }
    for t in 0..size {
        starts[t + 1] += starts[t];
    }
    let first = csr + size + 1;
    let mut rows = vec![0u32; indices.len()];
    let mut next = starts.clone();
    for (j, &t) in indices.iter().enumerate() {
        rows[next[t]] = j as u32;
        next[t] += 1;
    }
    kernel::check_u32(op, first + indices.len())?;
    meta.extend([d as u32, inner as u32, csr as u32]);
    meta.extend(starts.iter().map(|&s| (first + s) as u32));
    meta.extend(rows);
    let source_code = format!("{FLAT_ID}{OFFSET_OF}{INDEX_ADD}");
    let bufs = [buf(op, &out)?, buf(op, &x)?, buf(op, &source)?];
    kernel::run(&dev, op, &source_code, &meta, &bufs, kernel::grid(n))?;
    Ok(out)
}
