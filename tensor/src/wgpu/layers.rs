//! Data-movement layers on the GPU: `cat`, `index_select` / `embedding` (which also
//! read tensors split into chunks), `upsample_nearest2d`, constant `pad`, and the
//! strided write they share ([`copy_into`]). Reflect and replicate `pad` map each
//! output index back into the input, one thread per output element ([`pad_edge`]).
//!
//! `cat` and `pad` allocate the output and write each input into its window, a
//! narrowed view of the output, with one strided-copy kernel per input.
//! `index_select` along dim 0 of a contiguous tensor is a list of buffer-to-buffer
//! row copies, split at chunk boundaries, so CLIP's 152 MB token table works on an
//! adapter that binds at most 128 MB. `x: (N, C, H, W) -> (N, C, H', W')`.
//!
//! ```
//! use tensor::{Device, Tensor};
//! let Ok(gpu) = Device::wgpu() else {
//!     println!("skipped: no wgpu adapter");
//!     return;
//! };
//! let x = Tensor::from_slice(&[1.0, 2.0, 3.0, 4.0], [1, 1, 2, 2]).unwrap().to_device(&gpu).unwrap();
//! let up = x.upsample_nearest2d(4, 4).unwrap().to_vec().unwrap();
//! assert_eq!(&up[..8], &[1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]);
//! let rows = Tensor::embedding(&x.reshape([2, 2]).unwrap(), &[1, 0, 1]).unwrap();
//! assert_eq!(rows.to_vec().unwrap(), vec![3.0, 4.0, 1.0, 2.0, 3.0, 4.0]);
//! ```

use std::sync::Arc;

use super::kernel::{self, FLAT_ID, OFFSET_OF};
use super::{buf, device_of, on, output, WgpuBuffer, WgpuDevice};
use crate::error::{Result, TensorError};
use crate::layout::Layout;
use crate::storage::Storage;
use crate::tensor::Tensor;

const COPY_INTO: &str = r#"
@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
"#;

/// Write `src` (any layout) into the window `dst` (a view of `out`'s buffer).
pub fn copy_into(out: &Tensor, dst: &Layout, src: &Tensor) -> Result<()> {
    let op = "copy_into";
    let dev = device_of(&[out]).ok_or_else(|| TensorError::invalid(op, "not on wgpu"))?;
    let src = on(&dev, src)?;
    let n = src.numel();
    if n == 0 {
        return Ok(());
    }
    kernel::check_u32(op, out.numel().max(n))?;
    let meta = kernel::strided_meta(
        src.dims(),
        [0.0; 2],
        &[
            (src.layout().offset(), src.strides()),
            (dst.offset(), dst.strides()),
        ],
    );
    let source = format!(
        "{COPY_INTO}{FLAT_ID}{OFFSET_OF}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {{
    let i = flat_id(wid, nwg, lid);
    if (i >= info[0]) {{ return; }}
    out[offset_of(i, 1u)] = src[offset_of(i, 0u)];
}}
"
    );
    let bufs = [buf(op, out)?, buf(op, &src)?];
    kernel::run(&dev, op, &source, &meta, &bufs, kernel::grid(n))
}

/// `torch.cat` on the GPU (`out_dims` already checked by the caller).
pub fn cat(parts: &[&Tensor], d: usize, out_dims: Vec<usize>) -> Result<Tensor> {
    let dev = device_of(parts).ok_or_else(|| TensorError::invalid("cat", "not on wgpu"))?;
    let out = output(&dev, "cat", out_dims)?;
    let mut at = 0;
    for p in parts {
        let len = p.dims()[d];
        let window = out.narrow(d as isize, at, len)?;
        copy_into(&out, window.layout(), p)?;
        at += len;
    }
    Ok(out)
}

/// `x` padded with `value`: `pads[i] = (before, after)` for dim `rank - 1 - i`.
pub fn pad(x: &Tensor, pads: &[(usize, usize)], value: f32) -> Result<Tensor> {
    let dev = device_of(&[x]).ok_or_else(|| TensorError::invalid("pad", "not on wgpu"))?;
    let rank = x.rank();
    let mut dims = x.dims().to_vec();
    for (i, &(b, a)) in pads.iter().enumerate() {
        dims[rank - 1 - i] += b + a;
    }
    let out = full(&dev, dims, value)?;
    let mut window = out.clone();
    for (i, &(b, _)) in pads.iter().enumerate() {
        let d = rank - 1 - i;
        window = window.narrow(d as isize, b, x.dims()[d])?;
    }
    copy_into(&out, window.layout(), x)?;
    Ok(out)
}

/// A contiguous tensor of `dims` filled with `value` on `dev`.
pub fn full(dev: &WgpuDevice, dims: Vec<usize>, value: f32) -> Result<Tensor> {
    if value == 0.0 && value.is_sign_positive() {
        return super::output_zeroed(dev, "full", dims);
    }
    let one = Tensor::scalar(value).to_device(&crate::Device::Wgpu(dev.clone()))?;
    super::elementwise::copy(&one.broadcast_as(dims)?)
}

/// Encode a copy of `n` elements from `src[s..]` to `dst[d..]`, split wherever
/// either side crosses a chunk boundary.
fn copy_elems(
    enc: &mut wgpu::CommandEncoder,
    src: &WgpuBuffer,
    mut s: usize,
    dst: &WgpuBuffer,
    mut d: usize,
    mut n: usize,
) {
    let (cs, cd) = (src.chunk_elems(), dst.chunk_elems());
    while n > 0 {
        let take = n.min(cs - s % cs).min(cd - d % cd);
        enc.copy_buffer_to_buffer(
            &src.chunks()[s / cs],
            (s % cs) as u64 * 4,
            &dst.chunks()[d / cd],
            (d % cd) as u64 * 4,
            take as u64 * 4,
        );
        (s, d, n) = (s + take, d + take, n - take);
    }
}

/// Rows `indices` of dim `d` (checked by the caller). Dim 0 of a contiguous tensor
/// is row copies (works on chunked tensors); any other case narrows and cats.
pub fn index_select(x: &Tensor, d: usize, indices: &[usize]) -> Result<Tensor> {
    let op = "index_select";
    let mut out_dims = x.dims().to_vec();
    out_dims[d] = indices.len();
    let (Storage::Wgpu(src), Some(range)) = (x.storage().as_ref(), x.layout().contiguous_range())
    else {
        let parts = indices
            .iter()
            .map(|&i| x.narrow(d as isize, i, 1))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Tensor> = parts.iter().collect();
        return cat(&refs, d, out_dims);
    };
    let dev = src.device().clone();
    let outer: usize = x.dims()[..d].iter().product();
    let inner: usize = x.dims()[d + 1..].iter().product();
    let size = x.dims()[d];
    let out = WgpuBuffer::uninit(&dev, op, outer * indices.len() * inner)?;
    if inner > 0 {
        dev.0.encode(|enc| {
            let mut at = 0;
            for o in 0..outer {
                for &i in indices {
                    copy_elems(
                        enc,
                        src,
                        range.start + (o * size + i) * inner,
                        &out,
                        at,
                        inner,
                    );
                    at += inner;
                }
            }
        });
        dev.0.check(op)?;
    }
    Tensor::from_storage(Arc::new(Storage::Wgpu(out)), Layout::contiguous(out_dims))
}

const UPSAMPLE: &str = r#"
@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;

// PyTorch's nearest source index (exact halving for a 2x upsample).
fn nearest(dst: u32, n_in: u32, n_out: u32) -> u32 {
    if (n_out == n_in) { return dst; }
    if (n_out == 2u * n_in) { return dst >> 1u; }
    let scale = f32(n_in) / f32(n_out);
    return min(u32(floor(f32(dst) * scale)), n_in - 1u);
}

// info: [numel, h, w, out_h, out_w]; one thread per output element.
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= info[0]) { return; }
    let h = info[1];
    let w = info[2];
    let oh = info[3];
    let ow = info[4];
    let x = i % ow;
    let y = (i / ow) % oh;
    let plane = i / (ow * oh);
    out[i] = src[plane * h * w + nearest(y, h, oh) * w + nearest(x, w, ow)];
}
"#;

/// Nearest resize of the last two dims of `x` (checked by the caller).
pub fn upsample_nearest2d(x: &Tensor, out_h: usize, out_w: usize) -> Result<Tensor> {
    let op = "upsample_nearest2d";
    let dev = device_of(&[x]).ok_or_else(|| TensorError::invalid(op, "not on wgpu"))?;
    let x = super::elementwise::packed(&x.contiguous()?)?;
    let r = x.rank();
    let (h, w) = (x.dims()[r - 2], x.dims()[r - 1]);
    let mut dims = x.dims().to_vec();
    dims[r - 2] = out_h;
    dims[r - 1] = out_w;
    let out = output(&dev, op, dims)?;
    let n = out.numel();
    kernel::check_u32(op, n.max(x.numel()))?;
    let meta = [n, h, w, out_h, out_w].map(|v| v as u32);
    let source = format!("{FLAT_ID}{UPSAMPLE}");
    let off = x.layout().offset();
    let x = if off == 0 {
        x
    } else {
        super::elementwise::copy(&x)?
    };
    let bufs = [buf(op, &out)?, buf(op, &x)?];
    kernel::run(&dev, op, &source, &meta, &bufs, kernel::grid(n))?;
    Ok(out)
}

const PAD_EDGE: &str = r#"
@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;

// meta: [numel, rank, reflect?, offset, then per dim: out size, before, in size,
// in stride]. Output index j - before outside [0, n) mirrors (reflect, no edge
// repeat) or clamps (replicate) into the input.
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= info[0]) { return; }
    var off = info[3];
    var rem = i;
    var d = info[1];
    while (d > 0u) {
        d = d - 1u;
        let at = 4u + 4u * d;
        let size = info[at];
        let last = i32(info[at + 2u]) - 1;
        var j = i32(rem % size) - i32(info[at + 1u]);
        rem = rem / size;
        if (info[2] == 1u) {
            if (j < 0) { j = -j; } else if (j > last) { j = 2 * last - j; }
        } else {
            j = clamp(j, 0, last);
        }
        off = off + u32(j) * info[at + 3u];
    }
    out[i] = src[off];
}
"#;

/// `x` padded by `pads` (as [`pad`]) with reflect (`reflect = true`) or replicate
/// borders (sizes checked by the caller: each pad smaller than its dim for reflect,
/// no empty padded dim for replicate).
pub fn pad_edge(x: &Tensor, pads: &[(usize, usize)], reflect: bool) -> Result<Tensor> {
    let op = "pad";
    let dev = device_of(&[x]).ok_or_else(|| TensorError::invalid(op, "not on wgpu"))?;
    let rank = x.rank();
    let mut meta = vec![0, rank as u32, reflect as u32, x.layout().offset() as u32];
    let mut dims = Vec::with_capacity(rank);
    for (d, (&n, &s)) in x.dims().iter().zip(x.strides()).enumerate() {
        let (b, a) = pads.get(rank - 1 - d).copied().unwrap_or((0, 0));
        dims.push(b + n + a);
        meta.extend([b + n + a, b, n, s].map(|v| v as u32));
    }
    let out = output(&dev, op, dims)?;
    let n = out.numel();
    if n == 0 {
        return Ok(out);
    }
    kernel::check_u32(op, n.max(x.numel()))?;
    meta[0] = n as u32;
    let source = format!("{FLAT_ID}{PAD_EDGE}");
    let bufs = [buf(op, &out)?, buf(op, x)?];
    kernel::run(&dev, op, &source, &meta, &bufs, kernel::grid(n))?;
    Ok(out)
}
