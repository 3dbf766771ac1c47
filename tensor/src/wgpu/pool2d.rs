//! 2-d pooling on the GPU: `max_pool2d` and `avg_pool2d`, one thread per output
//! pixel, each walking its window clipped to the input exactly as the CPU does
//! (`ops/pool.rs`: floor mode, padding at most half the kernel, padded zeros counted
//! in the average's divisor, NaN wins the max). The average sums each window row
//! first and then the rows, in the CPU's order, so both agree to the last bit.
//! (`pool.rs` next door is the buffer pool, not this.)
//! `x: (N, C, H, W)` or `(C, H, W)` -> `(.., H', W')`.
//!
//! ```
//! use tensor::{Device, Tensor};
//! let Ok(gpu) = Device::wgpu() else {
//!     println!("skipped: no wgpu adapter");
//!     return;
//! };
//! let x = Tensor::arange(0.0, 16.0, 1.0).unwrap().reshape([1, 1, 4, 4]).unwrap().to_device(&gpu).unwrap();
//! let avg = x.avg_pool2d((2, 2), (2, 2), (0, 0)).unwrap();
//! assert_eq!(avg.to_vec().unwrap(), vec![2.5, 4.5, 10.5, 12.5]);
//! let max = x.max_pool2d((3, 3), (2, 2), (1, 1)).unwrap();
//! assert_eq!(max.to_vec().unwrap(), vec![5.0, 7.0, 13.0, 15.0]);
//! ```

use super::kernel::{self, FLAT_ID};
use super::{buf, device_of, output};
use crate::error::{Result, TensorError};
use crate::ops::pool::Pool;
use crate::tensor::Tensor;

const POOL: &str = r#"
@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;

fn nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Window [start, end) along one axis: output o, stride s, padding p, kernel k, size n.
fn lo(o: u32, s: u32, p: u32) -> u32 {
    return select(0u, o * s - p, o * s >= p);
}
fn hi(o: u32, s: u32, p: u32, k: u32, n: u32) -> u32 {
    return min(select(0u, o * s + k - p, o * s + k >= p), n);
}

// meta: [numel, max?, h, w, kh, kw, sh, sw, ph, pw, oh, ow, bits(1 / (kh * kw))]
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= info[0]) { return; }
    let h = info[2];
    let w = info[3];
    let oh = info[10];
    let ow = info[11];
    let x = i % ow;
    let y = (i / ow) % oh;
    let plane = (i / (ow * oh)) * h * w;
    let r0 = lo(y, info[6], info[8]);
    let r1 = hi(y, info[6], info[8], info[4], h);
    let c0 = lo(x, info[7], info[9]);
    let c1 = hi(x, info[7], info[9], info[5], w);
    if (info[1] == 1u) {
        var m = bitcast<f32>(0xff800000u); // -inf
        for (var r = r0; r < r1; r = r + 1u) {
            for (var c = c0; c < c1; c = c + 1u) {
                let v = src[plane + r * w + c];
                if (v > m || nan(v)) { m = v; }
            }
        }
        out[i] = m;
    } else {
        var acc = 0.0;
        for (var r = r0; r < r1; r = r + 1u) {
            var row = 0.0;
            for (var c = c0; c < c1; c = c + 1u) {
                row = row + src[plane + r * w + c];
            }
            acc = acc + row;
        }
        out[i] = acc * bitcast<f32>(info[12]);
    }
}
"#;

/// `op` ("max_pool2d" or "avg_pool2d") over `planes` planes with the window
/// geometry `p` (validated by the caller).
pub(crate) fn pool2d(x: &Tensor, op: &'static str, p: &Pool, planes: usize) -> Result<Tensor> {
    let dev = device_of(&[x]).ok_or_else(|| TensorError::invalid(op, "not on wgpu"))?;
    let x = super::elementwise::packed(x)?;
    let out = output(&dev, op, p.out_dims(x.dims()))?;
    let n = planes * p.oh * p.ow;
    if n == 0 {
        return Ok(out);
    }
    kernel::check_u32(op, n.max(x.numel()))?;
    let inv = 1.0 / (p.kh * p.kw) as f32;
    let mut meta = vec![n as u32, (op == "max_pool2d") as u32];
    meta.extend([p.h, p.w, p.kh, p.kw, p.sh, p.sw, p.ph, p.pw, p.oh, p.ow].map(|v| v as u32));
    meta.push(inv.to_bits());
    let source = format!("{FLAT_ID}{POOL}");
    let bufs = [buf(op, &out)?, buf(op, &x)?];
    kernel::run(&dev, op, &source, &meta, &bufs, kernel::grid(n))?;
    Ok(out)
}
