//! Group norm and layer norm on the GPU: one workgroup of 256 threads per row.
//!
//! A row is one (sample, group) block of a group norm (`C/G * spatial` contiguous
//! elements) or one normalised vector of a layer norm. Two passes over it, each a
//! 256-way strided fold finished by a tree in workgroup memory: the mean, then the
//! mean of squared deviations (the two-pass variance, as PyTorch, so no
//! cancellation). A third pass writes `(x - mean) * rstd * w[c] + b[c]`, optionally
//! followed by SiLU (SD's ResnetBlock2D opens with `silu(group_norm(x))`).
//! `x: (N, C, *) -> same`; `x: (*, D) -> same`.
//!
//! ```
//! use tensor::{Device, Tensor};
//! let Ok(gpu) = Device::wgpu() else {
//!     println!("skipped: no wgpu adapter");
//!     return;
//! };
//! let x = Tensor::from_slice(&[1.0, 3.0], [1, 2]).unwrap().to_device(&gpu).unwrap();
//! let y = x.layer_norm(&[2], None, None, 0.0).unwrap().to_vec().unwrap();
//! assert!((y[0] + 1.0).abs() < 1e-6 && (y[1] - 1.0).abs() < 1e-6);
//! ```

use super::kernel;
use super::{buf, device_of, on, output};
use crate::error::{Result, TensorError};
use crate::tensor::Tensor;

const NORM: &str = r#"
@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read> weight: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;
var<workgroup> part: array<f32, 256>;

fn total(lid: u32, v: f32) -> f32 {
    part[lid] = v;
    workgroupBarrier();
    var s = 128u;
    while (s > 0u) {
        if (lid < s) {
            part[lid] = part[lid] + part[lid + s];
        }
        workgroupBarrier();
        s = s / 2u;
    }
    let r = part[0];
    workgroupBarrier();
    return r;
}

// info: [rows, len, groups (0: layer norm), spatial, eps, has_w, has_b, silu]
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let r = min(wid.y * nwg.x + wid.x, info[0] - 1u);
    let len = info[1];
    let groups = info[2];
    let spatial = info[3];
    let base = r * len;
    var s = 0.0;
    for (var j = lid; j < len; j = j + 256u) {
        s = s + src[base + j];
    }
    let mean = total(lid, s) / f32(len);
    var q = 0.0;
    for (var j = lid; j < len; j = j + 256u) {
        let d = src[base + j] - mean;
        q = q + d * d;
    }
    let rstd = inverseSqrt(total(lid, q) / f32(len) + bitcast<f32>(info[4]));
    for (var j = lid; j < len; j = j + 256u) {
        var c = j;
        if (groups > 0u) {
            c = (r % groups) * (len / spatial) + j / spatial;
        }
        var y = (src[base + j] - mean) * rstd;
        if (info[5] == 1u) { y = y * weight[c]; }
        if (info[6] == 1u) { y = y + bias[c]; }
        if (info[7] == 1u) { y = y / (1.0 + exp(-y)); }
        out[base + j] = y;
    }
}
"#;

/// Normalise rows of `len` of contiguous `x`; `groups > 0` means a group norm with
/// channels `c = (row % groups) * (len / spatial) + j / spatial`.
#[allow(clippy::too_many_arguments)]
fn norm(
    op: &'static str,
    x: &Tensor,
    len: usize,
    groups: usize,
    spatial: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
    silu: bool,
) -> Result<Tensor> {
    let operands: Vec<&Tensor> = [Some(x), weight, bias].into_iter().flatten().collect();
    let dev = device_of(&operands).ok_or_else(|| TensorError::invalid(op, "not on wgpu"))?;
    let x = super::elementwise::packed(&on(&dev, x)?)?;
    let out = output(&dev, op, x.dims().to_vec())?;
    if x.numel() == 0 || len == 0 {
        return Ok(out);
    }
    kernel::check_u32(op, x.numel())?;
    let rows = x.numel() / len;
    let dummy = Tensor::zeros([1]);
    let w = super::elementwise::packed(&on(&dev, weight.unwrap_or(&dummy))?)?;
    let b = super::elementwise::packed(&on(&dev, bias.unwrap_or(&dummy))?)?;
    let meta = [
        rows as u32,
        len as u32,
        groups as u32,
        spatial.max(1) as u32,
        (eps as f32).to_bits(),
        weight.is_some() as u32,
        bias.is_some() as u32,
        silu as u32,
    ];
    let groups_grid = [rows.min(65_535) as u32, rows.div_ceil(65_535) as u32, 1];
    let bufs = [buf(op, &out)?, buf(op, &x)?, buf(op, &w)?, buf(op, &b)?];
    kernel::run(&dev, op, NORM, &meta, &bufs, groups_grid)?;
    Ok(out)
}

/// `group_norm` (optionally fused with SiLU) of `x: (N, C, *)`; arguments checked
/// by the caller.
pub fn group_norm(
    x: &Tensor,
    num_groups: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
    silu: bool,
) -> Result<Tensor> {
    let c = x.dims()[1];
    let spatial: usize = x.dims()[2..].iter().product();
    let len = c / num_groups * spatial;
    let op = if silu {
        "group_norm_silu"
    } else {
        "group_norm"
    };
    norm(op, x, len, num_groups, spatial, weight, bias, eps, silu)
}

/// `layer_norm` over the trailing `len` elements; arguments checked by the caller.
pub fn layer_norm(
    x: &Tensor,
    len: usize,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    eps: f64,
) -> Result<Tensor> {
    norm("layer_norm", x, len, 0, 1, weight, bias, eps, false)
}
