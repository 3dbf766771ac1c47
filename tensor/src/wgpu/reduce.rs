//! Reductions and softmax on the GPU: one workgroup of 256 threads per output.
//!
//! Each thread folds a strided share of the reduced elements (thread `t` takes
//! elements `t, t + 256, ..`), then the 256 partial results meet in workgroup
//! memory and halve in 8 rounds (a tree: 128 pairs, 64, .., 1), with a barrier
//! between rounds. The fold is [`ReduceOp::wgsl`]. The kept and reduced dims are
//! two strided views of the input, exactly as the CPU kernel splits them, so any
//! layout is read in place. Accumulation is in f32 (the CPU uses f64), so a sum of
//! n values may differ from the CPU by about `n * 6e-8` of its magnitude.
//! `argmax` / `argmin` fold (value, index) pairs the same way, with the CPU's rule
//! (the first NaN, else the first extreme), so their indices are exact.
//! `x: (2, 3, 4).sum(&[0, 2]) -> (3,)`.
//!
//! ```
//! use tensor::{Device, Tensor};
//! let Ok(gpu) = Device::wgpu() else {
//!     println!("skipped: no wgpu adapter");
//!     return;
//! };
//! let x = Tensor::arange(0.0, 6.0, 1.0).unwrap().reshape([2, 3]).unwrap().to_device(&gpu).unwrap();
//! assert_eq!(x.sum(&[0], false).unwrap().to_vec().unwrap(), vec![3.0, 5.0, 7.0]);
//! assert_eq!(x.max(&[1], false).unwrap().to_vec().unwrap(), vec![2.0, 5.0]);
//! assert_eq!(x.argmin(0, false).unwrap().to_vec().unwrap(), vec![0.0, 0.0, 0.0]);
//! let p = x.softmax(1).unwrap().to_vec().unwrap();
//! assert!((p[0] - 0.090_030_57).abs() < 1e-6);
//! ```

use super::kernel::{self, FLAT_ID};
use super::{buf, device_of, on, output};
use crate::error::{Result, TensorError};
use crate::layout::Layout;
use crate::ops::reduce::ReduceOp;
use crate::tensor::Tensor;

/// Workgroups for `n` outputs, one each, over a 2-D grid.
fn groups(n: usize) -> [u32; 3] {
    let x = n.min(65_535);
    let y = if x == 0 { 0 } else { n.div_ceil(x) };
    [x as u32, y as u32, 1]
}

/// WGSL: fold `x` into `acc` 256 ways, then combine in a tree; `EXPR` is the fold.
const TREE: &str = r#"
var<workgroup> part: array<f32, 256>;
fn tree(lid: u32, v: f32) -> f32 {
    part[lid] = v;
    workgroupBarrier();
    var s = 128u;
    while (s > 0u) {
        if (lid < s) {
            let acc = part[lid];
            let x = part[lid + s];
            part[lid] = EXPR;
        }
        workgroupBarrier();
        s = s / 2u;
    }
    let r = part[0];
    workgroupBarrier();
    return r;
}
"#;

/// WGSL: the storage offset of row-major index `i` over the `rank` dims whose sizes
/// start at `info[at]`, followed by their strides.
const STRIDED: &str = r#"
fn strided(i: u32, rank: u32, at: u32) -> u32 {
    var off = 0u;
    var rem = i;
    var d = rank;
    while (d > 0u) {
        d = d - 1u;
        let size = info[at + d];
        off = off + (rem % size) * info[at + rank + d];
        rem = rem / size;
    }
    return off;
}
"#;

fn reduce_source(op: ReduceOp) -> String {
    let mut s = String::from(
        "@group(0) @binding(0) var<storage, read> info: array<u32>;\n\
         @group(0) @binding(1) var<storage, read_write> out: array<f32>;\n\
         @group(0) @binding(2) var<storage, read> src: array<f32>;\n",
    );
    s += &TREE.replace("EXPR", op.wgsl());
    s += FLAT_ID;
    s += STRIDED;
    s += r#"
// meta: [n_out, n_red, kept_rank, red_rank, identity, scale, offset,
//        kept dims, kept strides, red dims, red strides]

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let o = wid.y * nwg.x + wid.x;
    let valid = o < info[0];
    let n_red = info[1];
    let kr = info[2];
    let rr = info[3];
    let base = info[6] + strided(min(o, info[0] - 1u), kr, 7u);
    var acc = bitcast<f32>(info[4]);
    var r = lid;
    while (r < n_red) {
        let x = src[base + strided(r, rr, 7u + 2u * kr)];
        acc = EXPR;
        r = r + 256u;
    }
    let total = tree(lid, acc);
    if (valid && lid == 0u) {
        out[o] = total * bitcast<f32>(info[5]);
    }
}
"#
    .replace("EXPR", op.wgsl())
    .as_str();
    s
}

/// Fold the `reduced` view of `x` for every position of the `kept` view; `scale`
/// multiplies each result (1 / count for a mean).
pub fn reduce(
    x: &Tensor,
    op: ReduceOp,
    kept: &Layout,
    reduced: &Layout,
    out_dims: Vec<usize>,
    scale: f32,
) -> Result<Tensor> {
    let name = op.name();
    let dev = device_of(&[x]).ok_or_else(|| TensorError::invalid(name, "not on wgpu"))?;
    let (n_out, n_red) = (kept.numel(), reduced.numel());
    kernel::check_u32(name, x.numel())?;
    let out = output(&dev, name, out_dims)?;
    if n_out == 0 {
        return Ok(out);
    }
    let identity = op.identity() as f32;
    let mut meta = vec![
        n_out as u32,
        n_red as u32,
        kept.rank() as u32,
        reduced.rank() as u32,
        identity.to_bits(),
        scale.to_bits(),
        kept.offset() as u32,
    ];
    for l in [kept, reduced] {
        meta.extend(l.dims().iter().map(|&d| d as u32));
        meta.extend(l.strides().iter().map(|&s| s as u32));
    }
    let bufs = [buf(name, &out)?, buf(name, x)?];
    kernel::run(&dev, name, &reduce_source(op), &meta, &bufs, groups(n_out))?;
    Ok(out)
}

const SOFTMAX: &str = r#"
@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
var<workgroup> part: array<f32, 256>;

// Combine the 256 partial values with max (op 0) or sum (op 1).
fn tree(lid: u32, v: f32, op: u32) -> f32 {
    part[lid] = v;
    workgroupBarrier();
    var s = 128u;
    while (s > 0u) {
        if (lid < s) {
            if (op == 0u) {
                part[lid] = max(part[lid], part[lid + s]);
            } else {
                part[lid] = part[lid] + part[lid + s];
            }
        }
        workgroupBarrier();
        s = s / 2u;
    }
    let r = part[0];
    workgroupBarrier();
    return r;
}

// meta: [rows, n, inner, log]. Row `o` = (outer, inner) reads n elements at stride
// `inner`: a contiguous (outer, n, inner) tensor, softmax over the middle dim.
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let o = min(wid.y * nwg.x + wid.x, info[0] - 1u);
    let n = info[1];
    let inner = info[2];
    let base = (o / inner) * n * inner + o % inner;
    var m = -3.4028235e38;
    for (var j = lid; j < n; j = j + 256u) {
        m = max(m, src[base + j * inner]);
    }
    m = tree(lid, m, 0u);
    var s = 0.0;
    for (var j = lid; j < n; j = j + 256u) {
        s = s + exp(src[base + j * inner] - m);
    }
    s = tree(lid, s, 1u);
    let ls = log(s);
    for (var j = lid; j < n; j = j + 256u) {
        let v = src[base + j * inner] - m;
        if (info[3] == 1u) {
            out[base + j * inner] = v - ls;
        } else {
            out[base + j * inner] = exp(v) / s;
        }
    }
}
"#;

/// Softmax (or log-softmax) of `x` along dim `d`.
pub fn softmax(x: &Tensor, d: usize, log: bool) -> Result<Tensor> {
    let name = if log { "log_softmax" } else { "softmax" };
    let dev = device_of(&[x]).ok_or_else(|| TensorError::invalid(name, "not on wgpu"))?;
    let x = super::elementwise::packed(&on(&dev, x)?)?;
    let dims = x.dims().to_vec();
    let out = output(&dev, name, dims.clone())?;
    let n = dims[d];
    let inner: usize = dims[d + 1..].iter().product();
    let rows = x.numel() / n.max(1);
    if x.numel() == 0 {
        return Ok(out);
    }
    kernel::check_u32(name, x.numel())?;
    let meta = [rows as u32, n as u32, inner as u32, log as u32];
    let bufs = [buf(name, &out)?, buf(name, &x)?];
    kernel::run(&dev, name, SOFTMAX, &meta, &bufs, groups(rows))?;
    Ok(out)
}

const ARG_EXTREME: &str = r#"
@group(0) @binding(0) var<storage, read> info: array<u32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
var<workgroup> best_v: array<f32, 256>;
var<workgroup> best_i: array<u32, 256>;

const NONE: u32 = 0xffffffffu;

// NaN by its bits: WGSL compilers may assume comparisons never see NaN.
fn nan(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// Does candidate (a, ia) beat (b, ib)? The first NaN wins, then the largest
// (smallest for argmin) value, then the lower index: the CPU's sequential scan.
fn beats(a: f32, ia: u32, b: f32, ib: u32) -> bool {
    if (ia == NONE) { return false; }
    if (ib == NONE) { return true; }
    let na = nan(a);
    let nb = nan(b);
    if (na || nb) {
        if (na && nb) { return ia < ib; }
        return na;
    }
    if (a == b) { return ia < ib; }
    if (info[4] == 1u) { return a > b; }
    return a < b;
}

// meta: [n_out, n, kept_rank, red_stride, want_max, offset, kept dims, kept strides]
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let o = wid.y * nwg.x + wid.x;
    let valid = o < info[0];
    let n = info[1];
    let kr = info[2];
    let rst = info[3];
    let base = info[5] + strided(min(o, info[0] - 1u), kr, 6u);
    var bv = 0.0;
    var bi = NONE;
    for (var i = lid; i < n; i = i + 256u) {
        let v = src[base + i * rst];
        if (beats(v, i, bv, bi)) {
            bv = v;
            bi = i;
        }
    }
    best_v[lid] = bv;
    best_i[lid] = bi;
    workgroupBarrier();
    var s = 128u;
    while (s > 0u) {
        if (lid < s && beats(best_v[lid + s], best_i[lid + s], best_v[lid], best_i[lid])) {
            best_v[lid] = best_v[lid + s];
            best_i[lid] = best_i[lid + s];
        }
        workgroupBarrier();
        s = s / 2u;
    }
    if (valid && lid == 0u) {
        out[o] = f32(best_i[0]);
    }
}
"#;

/// `argmax` / `argmin` along the one `reduced` dim (non-empty, checked by the
/// caller) for every position of the `kept` view; indices as f32. A workgroup per
/// output folds (value, index) pairs with the CPU's rule: first NaN, else first
/// extreme.
pub fn arg_extreme(
    x: &Tensor,
    name: &'static str,
    kept: &Layout,
    reduced: &Layout,
    out_dims: Vec<usize>,
    want_max: bool,
) -> Result<Tensor> {
    let dev = device_of(&[x]).ok_or_else(|| TensorError::invalid(name, "not on wgpu"))?;
    let (n_out, n) = (kept.numel(), reduced.numel());
    kernel::check_u32(name, x.numel())?;
    let out = output(&dev, name, out_dims)?;
    if n_out == 0 || n == 0 {
        return Ok(out);
    }
    let rst = reduced.strides().first().copied().unwrap_or(0);
    let mut meta = vec![
        n_out as u32,
        n as u32,
        kept.rank() as u32,
        rst as u32,
        want_max as u32,
        kept.offset() as u32,
    ];
    meta.extend(kept.dims().iter().map(|&d| d as u32));
    meta.extend(kept.strides().iter().map(|&s| s as u32));
    let bufs = [buf(name, &out)?, buf(name, x)?];
    let source = format!("{STRIDED}{ARG_EXTREME}");
    kernel::run(&dev, name, &source, &meta, &bufs, groups(n_out))?;
    Ok(out)
}
