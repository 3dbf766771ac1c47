//! The gradients of conv2d on the GPU, from the forward's pieces (the CPU twins are
//! in `ops/conv_backward.rs`; lesson 06 derives them):
//!
//! - `dW = sum_n dy_n (O, H'W') @ im2col(x_n)^T (H'W', C kh kw)`: the forward's im2col
//!   kernel, then a batched matmul and a sum over the batch;
//! - `dx = col2im(W^T (C kh kw, O) @ dy_n (O, H'W'))`: a matmul, then [`COL2IM`], one
//!   thread per input pixel adding the columns that read it (no atomics, so the sum
//!   order is fixed).
//!
//! Groups run one at a time on narrowed channels. Shapes: `x: (N, C, H, W)`,
//! `dy: (N, O, H', W')`, `W: (O, C/groups, kh, kw)`.

use super::conv::im2col;
use super::kernel;
use super::{buf, device_of, on, output};
use crate::error::{Result, TensorError};
use crate::ops::conv::Conv2dGeom;
use crate::tensor::Tensor;

/// WGSL: `dx[n, c, iy, ix] = sum over (ky, kx) with iy + ph - ky dh = oy sh (and the
/// same in x) of cols[n, (c, ky, kx), (oy, ox)]`. One thread per element of `dx`.
pub const COL2IM: &str = r#"
@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> cols: array<f32>;

// info: [numel, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow]
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= info[0]) { return; }
    let hh = info[2];
    let ww = info[3];
    let kh = info[4];
    let kw = info[5];
    let oh = info[12];
    let ow = info[13];
    let ix = i % ww;
    let iy = (i / ww) % hh;
    let c = (i / (ww * hh)) % info[1];
    let n = i / (ww * hh * info[1]);
    let k = info[1] * kh * kw;
    var acc = 0.0;
    for (var ky = 0u; ky < kh; ky = ky + 1u) {
        let ty = i32(iy + info[8]) - i32(ky * info[10]);
        if (ty < 0 || u32(ty) % info[6] != 0u || u32(ty) / info[6] >= oh) { continue; }
        let oy = u32(ty) / info[6];
        for (var kx = 0u; kx < kw; kx = kx + 1u) {
            let tx = i32(ix + info[9]) - i32(kx * info[11]);
            if (tx < 0 || u32(tx) % info[7] != 0u || u32(tx) / info[7] >= ow) { continue; }
            let ox = u32(tx) / info[7];
            let row = (c * kh + ky) * kw + kx;
            acc = acc + cols[(n * k + row) * oh * ow + oy * ow + ox];
        }
    }
    out[i] = acc;
}
"#;

/// The geometry of group `gi` alone (`groups` 1, its channels).
fn one_group(g: &Conv2dGeom) -> Conv2dGeom {
    Conv2dGeom {
        c: g.cg,
        o: g.og,
        groups: 1,
        ..*g
    }
}

/// `dW: (O, C/groups, kh, kw)` from `x` and `dy`.
pub(crate) fn backward_weight(x: &Tensor, dy: &Tensor, g: &Conv2dGeom) -> Result<Tensor> {
    let op = "conv2d_backward_weight";
    let dev = device_of(&[x, dy]).ok_or_else(|| TensorError::invalid(op, "not on wgpu"))?;
    let (x, dy) = (on(&dev, x)?, on(&dev, dy)?);
    let gg = one_group(g);
    let mut parts = Vec::with_capacity(g.groups);
    for gi in 0..g.groups {
        let xg = x.narrow(1, gi * g.cg, g.cg)?;
        let dyg = dy.narrow(1, gi * g.og, g.og)?.contiguous()?;
        let cols = im2col(&dev, &xg, &gg)?; // (N, K, P)
        let dyg = dyg.reshape([g.n, g.og, g.oh * g.ow])?;
        let dw = dyg.matmul(&cols.transpose(1, 2)?)?.sum_keepdim(0)?;
        parts.push(dw.reshape([g.og, g.cg, g.kh, g.kw])?);
    }
    Tensor::cat(&parts, 0)
}

/// `dx: (N, C, H, W)` from `dy` and the weight.
pub(crate) fn backward_input(dy: &Tensor, w: &Tensor, g: &Conv2dGeom) -> Result<Tensor> {
    let op = "conv2d_backward_input";
    let dev = device_of(&[dy, w]).ok_or_else(|| TensorError::invalid(op, "not on wgpu"))?;
    let (dy, w) = (on(&dev, dy)?, on(&dev, w)?);
    let gg = one_group(g);
    let k = gg.k();
    let mut parts = Vec::with_capacity(g.groups);
    for gi in 0..g.groups {
        let wg = w
            .narrow(0, gi * g.og, g.og)?
            .contiguous()?
            .reshape([g.og, k])?;
        let dyg = dy.narrow(1, gi * g.og, g.og)?.contiguous()?;
        let dyg = dyg.reshape([g.n, g.og, g.oh * g.ow])?;
        let cols = wg.t()?.broadcast_as([g.n, k, g.og])?.matmul(&dyg)?; // (N, K, P)
        parts.push(col2im(&dev, &cols, &gg)?);
    }
    Tensor::cat(&parts, 1)
}

/// [`COL2IM`] of `cols: (N, C kh kw, H'W')` -> `(N, C, H, W)`.
fn col2im(dev: &super::WgpuDevice, cols: &Tensor, g: &Conv2dGeom) -> Result<Tensor> {
    let op = "conv2d_backward_input (col2im)";
    let cols = super::elementwise::packed(&cols.contiguous()?)?;
    let out = output(dev, op, vec![g.n, g.c, g.h, g.w])?;
    let n = out.numel();
    if n == 0 {
        return Ok(out);
    }
    kernel::check_u32(op, n.max(cols.numel()))?;
    let meta = [
        n, g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.oh, g.ow,
    ]
    .map(|v| v as u32);
    let source = format!("{}{COL2IM}", kernel::FLAT_ID);
    let bufs = [buf(op, &out)?, buf(op, &cols)?];
    kernel::run(dev, op, &source, &meta, &bufs, kernel::grid(n))?;
    Ok(out)
}
