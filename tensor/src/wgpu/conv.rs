//! conv2d on the GPU as an implicit GEMM ([`conv2d.wgsl`](conv2d.wgsl)): the
//! register-blocked matmul with its B tile gathered from the image on the fly, so
//! the im2col matrix is never written. `x: (N, C, H, W)`, `weight: (O, C/groups,
//! kh, kw)`, `bias: (O,)` -> `(N, O, H', W')`; stride, padding, dilation and groups
//! as `torch.nn.functional.conv2d`. A 1x1 convolution with stride 1 and no padding
//! (SD's shortcuts and attention projections) is a plain batched matmul,
//! `W (O, C) @ x (N, C, H * W)`, and runs as one. Other ungrouped convolutions whose
//! im2col matrix fits in [`IM2COL_BYTES`] write it ([`IM2COL`], one thread per
//! element) and multiply with the matmul ladder's top rung: on an H200 that ran
//! SD's 3x3 convolutions several times faster than the implicit GEMM, whose
//! gathers cost more than the copy.

use super::kernel;
use super::{buf, device_of, on, output};
use crate::error::{Result, TensorError};
use crate::ops::conv::Conv2dGeom;
use crate::tensor::Tensor;

/// `x` (batched, checked into `g` by the caller) convolved with `weight`.
pub(crate) fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    g: &Conv2dGeom,
) -> Result<Tensor> {
    let op = "conv2d";
    let dev = device_of(&[x, weight]).ok_or_else(|| TensorError::invalid(op, "not on wgpu"))?;
    let pointwise = (g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.groups) == (1, 1, 1, 1, 0, 0, 1);
    let cols_bytes = (g.n * g.k() * g.oh * g.ow * 4) as u64;
    let limit = IM2COL_BYTES.min(dev.0.max_binding_bytes());
    if pointwise || (g.groups == 1 && cols_bytes <= limit) {
        let cols = if pointwise {
            on(&dev, x)?.reshape([g.n, g.c, g.h * g.w])?
        } else {
            im2col(&dev, &on(&dev, x)?, g)?
        };
        let w = on(&dev, weight)?.reshape([g.o, g.k()])?;
        let mut y = w.broadcast_as([g.n, g.o, g.k()])?.matmul(&cols)?;
        if let Some(b) = bias {
            y = y.add(&on(&dev, b)?.reshape([g.o, 1])?)?;
        }
        return y.reshape([g.n, g.o, g.oh, g.ow]);
    }
    let packed = |t: &Tensor| super::elementwise::packed(&on(&dev, t)?);
    let (x, w) = (packed(x)?, packed(weight)?);
    let b = packed(bias.unwrap_or(&Tensor::zeros([1])))?;
    let out = output(&dev, op, vec![g.n, g.o, g.oh, g.ow])?;
    if out.numel() == 0 {
        return Ok(out);
    }
    kernel::check_u32(op, x.numel().max(out.numel()))?;
    let (m, n, k) = (g.og, g.oh * g.ow, g.k());
    let mut meta = [
        m,
        n,
        k,
        g.groups,
        g.c,
        g.h,
        g.w,
        g.o,
        g.kh,
        g.kw,
        g.sh,
        g.sw,
        g.ph,
        g.pw,
        g.dh,
        g.dw,
        g.ow,
        bias.is_some() as usize,
        g.cg,
    ]
    .map(|v| v as u32)
    .to_vec();
    // Row kk = (c, ky, kx) of the im2col matrix: its offset in the image and the
    // dilated kernel position (see conv2d.wgsl).
    for kk in 0..k {
        let (c, ky, kx) = (kk / (g.kh * g.kw), kk / g.kw % g.kh, kk % g.kw);
        meta.push((c * g.h * g.w + ky * g.dh * g.w + kx * g.dw) as u32);
        meta.push(((ky * g.dh) | ((kx * g.dw) << 16)) as u32);
    }
    let groups = [
        n.div_ceil(64) as u32,
        m.div_ceil(64) as u32,
        (g.n * g.groups) as u32,
    ];
    let bufs = [buf(op, &out)?, buf(op, &x)?, buf(op, &w)?, buf(op, &b)?];
    kernel::run(&dev, op, include_str!("conv2d.wgsl"), &meta, &bufs, groups)?;
    Ok(out)
}

/// The largest im2col matrix written (bigger ones take the implicit GEMM).
pub const IM2COL_BYTES: u64 = 512 << 20;

/// WGSL: `cols[n, (c, ky, kx), (oy, ox)] = x[n, c, oy * sh - ph + ky * dh, ox * sw
/// - pw + kx * dw]`, 0 over the padding. One thread per element of `cols`.
pub const IM2COL: &str = r#"
@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;

// info: [numel, C, H, W, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, x offset]
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let i = flat_id(wid, nwg, lid);
    if (i >= info[0]) { return; }
    let kh = info[4];
    let kw = info[5];
    let pixels = info[12] * info[13];
    let k = info[1] * kh * kw;
    let p = i % pixels;
    let kk = (i / pixels) % k;
    let n = i / (pixels * k);
    let c = kk / (kh * kw);
    let ky = (kk / kw) % kh;
    let kx = kk % kw;
    let iy = i32((p / info[13]) * info[6] + ky * info[10]) - i32(info[8]);
    let ix = i32((p % info[13]) * info[7] + kx * info[11]) - i32(info[9]);
    var v = 0.0;
    if (iy >= 0 && ix >= 0 && iy < i32(info[2]) && ix < i32(info[3])) {
        v = x[info[14] + ((n * info[1] + c) * info[2] + u32(iy)) * info[3] + u32(ix)];
    }
    out[i] = v;
}
"#;

/// The im2col matrix of `x` (on the GPU): `(N, C * kh * kw, H' * W')`.
pub(crate) fn im2col(dev: &super::WgpuDevice, x: &Tensor, g: &Conv2dGeom) -> Result<Tensor> {
    let op = "conv2d (im2col)";
    let x = x.contiguous()?;
    let cols = output(dev, op, vec![g.n, g.k(), g.oh * g.ow])?;
    let n = cols.numel();
    kernel::check_u32(op, n.max(x.numel()))?;
    let meta = [
        n,
        g.c,
        g.h,
        g.w,
        g.kh,
        g.kw,
        g.sh,
        g.sw,
        g.ph,
        g.pw,
        g.dh,
        g.dw,
        g.oh,
        g.ow,
        x.layout().offset(),
    ]
    .map(|v| v as u32);
    let source = format!("{}{IM2COL}", kernel::FLAT_ID);
    let bufs = [buf(op, &cols)?, buf(op, &x)?];
    kernel::run(dev, op, &source, &meta, &bufs, kernel::grid(n))?;
    Ok(cols)
}
