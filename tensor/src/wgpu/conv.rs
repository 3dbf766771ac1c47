//! conv2d on the GPU as an implicit GEMM ([`conv2d.wgsl`](conv2d.wgsl)): the
//! register-blocked matmul with its B tile gathered from the image on the fly, so
//! the im2col matrix is never written. `x: (N, C, H, W)`, `weight: (O, C/groups,
//! kh, kw)`, `bias: (O,)` -> `(N, O, H', W')`; stride, padding, dilation and groups
//! as `torch.nn.functional.conv2d`.

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
    let packed = |t: &Tensor| super::elementwise::packed(&on(&dev, t)?);
    let (x, w) = (packed(x)?, packed(weight)?);
    let b = packed(bias.unwrap_or(&Tensor::zeros([1])))?;
    let out = output(&dev, op, vec![g.n, g.o, g.oh, g.ow])?;
    if out.numel() == 0 {
        return Ok(out);
    }
    kernel::check_u32(op, x.numel().max(out.numel()))?;
    let (m, n, k) = (g.og, g.oh * g.ow, g.k());
    let meta = [
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
    .map(|v| v as u32);
    let groups = [
        n.div_ceil(64) as u32,
        m.div_ceil(64) as u32,
        (g.n * g.groups) as u32,
    ];
    let bufs = [buf(op, &out)?, buf(op, &x)?, buf(op, &w)?, buf(op, &b)?];
    kernel::run(&dev, op, include_str!("conv2d.wgsl"), &meta, &bufs, groups)?;
    Ok(out)
}
