//! `scaled_dot_product_attention` on the GPU ([`attention.wgsl`](attention.wgsl)):
//! tiled, online softmax, one workgroup per query, the scores never stored. `q: (.., L, D)`, `k: (.., S, D)`,
//! `v: (.., S, Dv)`, optional additive `mask` broadcast to `(.., L, S)` ->
//! `(.., L, Dv)`. Head dims up to 256 (the query row sits in workgroup memory, each
//! of the 64 threads holds up to 4 output channels).

use super::kernel;
use super::{buf, device_of, on, output};
use crate::error::{Result, TensorError};
use crate::ops::attention::Prepared;
use crate::tensor::Tensor;

/// Attention for arguments already checked and broadcast by the CPU's `prepare`.
pub(crate) fn attention(p: &Prepared, causal: bool) -> Result<Tensor> {
    let op = "scaled_dot_product_attention";
    let dev =
        device_of(&[&p.q, &p.k, &p.v]).ok_or_else(|| TensorError::invalid(op, "not on wgpu"))?;
    if p.d > 256 || p.dv > 256 {
        return Err(TensorError::invalid(
            op,
            format!(
                "the wgpu kernel handles head dims up to 256, got {} and {}",
                p.d, p.dv
            ),
        ));
    }
    let nb: usize = p.batch.iter().product();
    let out = output(&dev, op, [p.batch.clone(), vec![p.lq, p.dv]].concat())?;
    if out.numel() == 0 || p.lk == 0 {
        return Ok(out); // no keys: an empty sum, zeros (as the CPU kernel)
    }
    let packed = |t: &Tensor| super::elementwise::copy(&on(&dev, t)?);
    let (q, k, v) = (packed(&p.q)?, packed(&p.k)?, packed(&p.v)?);
    let mask = match &p.mask {
        Some(m) => packed(m)?,
        None => on(&dev, &Tensor::zeros([1]))?,
    };
    kernel::check_u32(
        op,
        q.numel().max(k.numel()).max(v.numel()).max(mask.numel()),
    )?;
    let rows = nb * p.lq;
    let meta = [
        rows as u32,
        p.lq as u32,
        p.lk as u32,
        p.d as u32,
        p.dv as u32,
        p.scale.to_bits(),
        p.mask.is_some() as u32,
        causal as u32,
    ];
    let groups = [rows.min(65_535) as u32, rows.div_ceil(65_535) as u32, 1];
    let bufs = [
        buf(op, &out)?,
        buf(op, &q)?,
        buf(op, &k)?,
        buf(op, &v)?,
        buf(op, &mask)?,
    ];
    kernel::run(
        &dev,
        op,
        include_str!("attention.wgsl"),
        &meta,
        &bufs,
        groups,
    )?;
    Ok(out)
}
