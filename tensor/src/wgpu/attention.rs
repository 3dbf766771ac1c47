//! `scaled_dot_product_attention` on the GPU, online softmax, the scores never
//! stored: heads of at most 64 (multiples of 4) with
//! [`attention_tiled.wgsl`](attention_tiled.wgsl), 64 queries per workgroup sharing
//! each tile of K and V; others with [`attention.wgsl`](attention.wgsl), one
//! workgroup per query. `q: (.., L, D)`, `k: (.., S, D)`,
//! `v: (.., S, Dv)`, optional additive `mask` broadcast to `(.., L, S)` ->
//! `(.., L, Dv)`. Head dims up to 256 (the query row sits in workgroup memory, each
//! of the 64 threads holds up to 4 output channels); wider heads (the VAE's single
//! 512-channel head) take the composite path, `softmax(q k^T * scale + mask) v`
//! with the scores in memory, from the GPU's matmul and softmax.

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
        let (q, k, v) = (on(&dev, &p.q)?, on(&dev, &p.k)?, on(&dev, &p.v)?);
        return q.scaled_dot_product_attention_naive(
            &k,
            &v,
            p.mask.as_ref(),
            Some(p.scale),
            causal,
        );
    }
    let nb: usize = p.batch.iter().product();
    let dims = [p.batch.clone(), vec![p.lq, p.dv]].concat();
    if p.lk == 0 {
        return super::output_zeroed(&dev, op, dims); // no keys: an empty sum, zeros (as the CPU kernel)
    }
    let out = output(&dev, op, dims)?;
    if out.numel() == 0 {
        return Ok(out);
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
    let tiled = p.d.is_multiple_of(4)
        && p.dv.is_multiple_of(4)
        && (4..=64).contains(&p.d)
        && (4..=64).contains(&p.dv)
        && nb <= 65_535;
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
    let bufs = [
        buf(op, &out)?,
        buf(op, &q)?,
        buf(op, &k)?,
        buf(op, &v)?,
        buf(op, &mask)?,
    ];
    if tiled {
        let groups = [p.lq.div_ceil(64) as u32, nb as u32, 1];
        kernel::run(&dev, op, &tiled_source(p.d, p.dv), &meta, &bufs, groups)?;
    } else {
        let groups = [rows.min(65_535) as u32, rows.div_ceil(65_535) as u32, 1];
        kernel::run(
            &dev,
            op,
            include_str!("attention.wgsl"),
            &meta,
            &bufs,
            groups,
        )?;
    }
    Ok(out)
}

/// [`attention_tiled.wgsl`](attention_tiled.wgsl) for head dims `d` and `dv`
/// (multiples of 4, at most 64), its loops over the head dim unrolled.
fn tiled_source(d: usize, dv: usize) -> String {
    let (d4, dv4) = (d / 4, dv / 4);
    let lines = |n: usize, f: &dyn Fn(usize) -> String| -> String {
        (0..n).map(|i| format!("{}\n", f(i))).collect::<String>()
    };
    let q_load = lines(d4, &|i| {
        let at = |c: usize| format!("q[qrow + {}u]", 4 * i + c);
        format!(
            "    let q{i} = vec4<f32>({}, {}, {}, {});",
            at(0),
            at(1),
            at(2),
            at(3)
        )
    });
    let dot = format!(
        "                let dot_ = {};",
        (0..d4)
            .map(|i| format!("dot(q{i}, ks[kb + {i}u])"))
            .collect::<Vec<_>>()
            .join("\n                    + ")
    );
    include_str!("attention_tiled.wgsl")
        .replace("{D}", &d.to_string())
        .replace("{DV}", &dv.to_string())
        .replace("{KS}", &(32 * d4).max(1).to_string())
        .replace("{VS}", &(32 * dv4).max(1).to_string())
        .replace("{Q_LOAD}", q_load.trim_end())
        .replace(
            "{ACC_INIT}",
            lines(dv4, &|i| format!("    var acc{i} = vec4<f32>(0.0);")).trim_end(),
        )
        .replace("{DOT}", &dot)
        .replace(
            "{ACC_SCALE}",
            lines(dv4, &|i| format!("        acc{i} = acc{i} * corr;")).trim_end(),
        )
        .replace(
            "{ACC_ADD}",
            lines(dv4, &|i| {
                format!("                acc{i} = fma(vec4<f32>(p), vs[vb + {i}u], acc{i});")
            })
            .trim_end(),
        )
        .replace(
            "{STORE}",
            lines(dv4, &|i| {
                let c = 4 * i;
                format!(
                    "        out[o + {c}u] = acc{i}.x / l;\n        out[o + {}u] = acc{i}.y / l;\n        \
                     out[o + {}u] = acc{i}.z / l;\n        out[o + {}u] = acc{i}.w / l;",
                    c + 1,
                    c + 2,
                    c + 3
                )
            })
            .trim_end(),
        )
}
