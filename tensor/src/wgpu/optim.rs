//! The fused optimizer and EMA updates of [`crate::ops::optim`] on the GPU: one thread per
//! element reads the parameter, its gradient and its state and writes the new
//! parameter and state to fresh buffers (the old ones go back to the pool when
//! their tensors drop). Operands are packed contiguous first; the settings travel
//! as `bitcast` words of the metadata. `p, g, state: (n) -> (n)`.
//!
//! ```
//! use tensor::ops::optim::{adamw_step, AdamWStep};
//! use tensor::{Device, Tensor};
//! let Ok(gpu) = Device::wgpu() else {
//!     println!("skipped: no wgpu adapter");
//!     return;
//! };
//! let on = |v: &[f32]| Tensor::from_slice(v, [2]).unwrap().to_device(&gpu).unwrap();
//! let (p, g, zero) = (on(&[1.0, 1.0]), on(&[3.0, -3.0]), on(&[0.0, 0.0]));
//! // Step 1 with lr = 0.1: neg_step = -lr / (1 - beta1), bc2_sqrt = sqrt(1 - beta2).
//! let s = AdamWStep { decay: 1.0, w1: 0.1, beta2: 0.999, w2: 0.001, eps: 1e-8, bc2_sqrt: 0.001f32.sqrt(), neg_step: -1.0 };
//! let [p, m, _v] = adamw_step(&p, &g, &zero, &zero, &s).unwrap();
//! assert!(p.is_gpu());
//! let p = p.to_vec().unwrap(); // the first Adam step moves by lr whatever g's scale
//! assert!((p[0] - 0.9).abs() < 1e-5 && (p[1] - 1.1).abs() < 1e-5, "{p:?}");
//! assert_eq!(m.to_vec().unwrap(), vec![0.3, -0.3]);
//! ```

use super::elementwise::packed;
use super::kernel::{self, FLAT_ID};
use super::{buf, device_of, on, output};
use crate::error::Result;
use crate::ops::optim::{AdamWStep, SgdStep};
use crate::storage::Storage;
use crate::tensor::Tensor;

/// The bindings and entry point shared by both kernels: `outs` read-write outputs
/// then `ins` read-only inputs, `i` the element, `info[0]` the count.
fn header(outs: &[&str], ins: &[&str]) -> String {
    let mut s = String::from("@group(0) @binding(0) var<storage, read> info: array<u32>;\n");
    for (k, n) in outs.iter().enumerate() {
        s += &format!(
            "@group(0) @binding({}) var<storage, read_write> {n}: array<f32>;\n",
            k + 1
        );
    }
    for (k, n) in ins.iter().enumerate() {
        s += &format!(
            "@group(0) @binding({}) var<storage, read> {n}: array<f32>;\n",
            k + 1 + outs.len()
        );
    }
    s += FLAT_ID;
    s += "fn word(k: u32) -> f32 { return bitcast<f32>(info[k]); }\n";
    s += "@compute @workgroup_size(256)\nfn main(@builtin(workgroup_id) wid: vec3<u32>, \
          @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {\n";
    s += "    let i = flat_id(wid, nwg, lid);\n    if (i >= info[0]) { return; }\n";
    s
}

/// `ts` on the device of the first GPU operand, each packed contiguous in one
/// binding; `None` when none is on a GPU or one is too large for a single binding
/// (the host loop then does the step).
fn operands(ts: &[&Tensor]) -> Result<Option<(super::WgpuDevice, Vec<Tensor>)>> {
    let Some(dev) = device_of(ts) else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(ts.len());
    for t in ts {
        let t = packed(&on(&dev, t)?)?;
        match t.storage().as_ref() {
            Storage::Wgpu(b) if b.single("optim").is_ok() => out.push(t),
            _ => return Ok(None),
        }
    }
    Ok(Some((dev, out)))
}

/// AdamW on the GPU; `None` to leave it to the host loop.
pub fn adamw(
    p: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    s: &AdamWStep,
) -> Result<Option<[Tensor; 3]>> {
    let op = "adamw_step";
    let Some((dev, ts)) = operands(&[p, g, m, v])? else {
        return Ok(None);
    };
    let n = p.numel();
    kernel::check_u32(op, n)?;
    let mut src = header(&["out_p", "out_m", "out_v"], &["p", "g", "m", "v"]);
    src += "    let gi = g[i];
    let mi = m[i];
    let w1 = word(2u);
    let mn = select(gi - (gi - mi) * (1.0 - w1), mi + w1 * (gi - mi), abs(w1) < 0.5);
    let vn = v[i] * word(3u) + word(4u) * gi * gi;
    out_m[i] = mn;
    out_v[i] = vn;
    let denom = sqrt(vn) / word(6u) + word(5u);
    out_p[i] = p[i] * word(1u) + word(7u) * mn / denom;
}
";
    let meta = [
        n as u32,
        s.decay.to_bits(),
        s.w1.to_bits(),
        s.beta2.to_bits(),
        s.w2.to_bits(),
        s.eps.to_bits(),
        s.bc2_sqrt.to_bits(),
        s.neg_step.to_bits(),
    ];
    let dims = p.dims().to_vec();
    let outs = [
        output(&dev, op, dims.clone())?,
        output(&dev, op, dims.clone())?,
        output(&dev, op, dims)?,
    ];
    let mut bufs = Vec::with_capacity(7);
    for t in outs.iter().chain(&ts) {
        bufs.push(buf(op, t)?);
    }
    kernel::run(&dev, op, &src, &meta, &bufs, kernel::grid(n))?;
    Ok(Some(outs))
}

/// SGD on the GPU; `None` to leave it to the host loop.
pub fn sgd(
    p: &Tensor,
    g: &Tensor,
    b: Option<&Tensor>,
    s: &SgdStep,
) -> Result<Option<(Tensor, Option<Tensor>)>> {
    let op = "sgd_step";
    let momentum = s.momentum != 0.0;
    let b = b.filter(|_| momentum); // without momentum there is no buffer to read
    let mut inputs = vec![p, g];
    inputs.extend(b);
    let Some((dev, ts)) = operands(&inputs)? else {
        return Ok(None);
    };
    let n = p.numel();
    kernel::check_u32(op, n)?;
    let (outs, ins): (&[&str], &[&str]) = match (momentum, b.is_some()) {
        (false, _) => (&["out_p"], &["p", "g"]),
        (true, false) => (&["out_p", "out_b"], &["p", "g"]),
        (true, true) => (&["out_p", "out_b"], &["p", "g", "b"]),
    };
    let mut src = header(outs, ins);
    src += "    var gi = g[i];\n";
    if s.weight_decay != 0.0 {
        src += "    gi = gi + word(2u) * p[i];\n";
    }
    if momentum {
        src += if b.is_some() {
            "    let bn = b[i] * word(3u) + word(4u) * gi;\n"
        } else {
            "    let bn = gi;\n"
        };
        src += "    out_b[i] = bn;\n";
        src += if s.nesterov {
            "    gi = gi + word(3u) * bn;\n"
        } else {
            "    gi = bn;\n"
        };
    }
    src += "    out_p[i] = p[i] + (-word(1u)) * gi;\n}\n";
    let meta = [
        n as u32,
        s.lr.to_bits(),
        s.weight_decay.to_bits(),
        s.momentum.to_bits(),
        s.damp.to_bits(),
    ];
    let new_p = output(&dev, op, p.dims().to_vec())?;
    let new_b = if momentum {
        Some(output(&dev, op, p.dims().to_vec())?)
    } else {
        None
    };
    let mut bufs = vec![buf(op, &new_p)?];
    if let Some(t) = &new_b {
        bufs.push(buf(op, t)?);
    }
    for t in &ts {
        bufs.push(buf(op, t)?);
    }
    kernel::run(&dev, op, &src, &meta, &bufs, kernel::grid(n))?;
    Ok(Some((new_p, new_b)))
}

/// The EMA update on the GPU; `None` to leave it to the host loop.
pub fn ema(s: &Tensor, p: &Tensor, w: f32) -> Result<Option<Tensor>> {
    let op = "ema_step";
    let Some((dev, ts)) = operands(&[s, p])? else {
        return Ok(None);
    };
    let n = s.numel();
    kernel::check_u32(op, n)?;
    let mut src = header(&["out_s"], &["s", "p"]);
    src += "    out_s[i] = s[i] - word(1u) * (s[i] - p[i]);\n}\n";
    let out = output(&dev, op, s.dims().to_vec())?;
    let bufs = [buf(op, &out)?, buf(op, &ts[0])?, buf(op, &ts[1])?];
    kernel::run(
        &dev,
        op,
        &src,
        &[n as u32, w.to_bits()],
        &bufs,
        kernel::grid(n),
    )?;
    Ok(Some(out))
}
