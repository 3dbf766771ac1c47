//! Elementwise kernels, generated: one WGSL template per arity (unary, binary,
//! ternary) with the op's expression pasted in from [`UnaryOp::wgsl`] /
//! [`BinaryOp::wgsl`], so the op is written once for both backends. Inputs may be
//! any strided or broadcast layout: each thread turns its row-major output index
//! into a storage offset per operand ([`kernel::OFFSET_OF`]). The output is
//! contiguous. `x: (..) -> (..)`; `a, b` broadcast to one shape.
//!
//! Also the strided copy (`contiguous()` of a view) and the scalar ops the CPU
//! writes as closures (`affine`, `powf`, `clamp`...), as expressions in `p0`, `p1`.
//!
//! ```
//! use tensor::{Device, Tensor};
//! let Ok(gpu) = Device::wgpu() else {
//!     println!("skipped: no wgpu adapter");
//!     return;
//! };
//! let a = Tensor::from_slice(&[1.0, 2.0, 3.0], [3, 1]).unwrap().to_device(&gpu).unwrap();
//! let b = Tensor::from_slice(&[10.0, 20.0], [2]).unwrap(); // a CPU operand, uploaded
//! assert_eq!(a.add(&b).unwrap().to_vec().unwrap(), vec![11.0, 21.0, 12.0, 22.0, 13.0, 23.0]);
//! assert_eq!(a.t().unwrap().relu().unwrap().to_vec().unwrap(), vec![1.0, 2.0, 3.0]);
//! ```

use super::kernel::{self, FLAT_ID, OFFSET_OF};
use super::{buf, device_of, on, WgpuBuffer, WgpuDevice};
use crate::error::{Result, TensorError};
use crate::layout::Layout;
use crate::ops::binary::BinaryOp;
use crate::ops::special::WGSL_HELPERS;
use crate::ops::unary::UnaryOp;
use crate::shape::Shape;
use crate::storage::Storage;
use crate::tensor::Tensor;

/// The WGSL of an elementwise kernel over `arity` inputs named `x` (unary) or
/// `a, b, c`, computing `expr`.
pub fn source(arity: usize, expr: &str) -> String {
    let names = match arity {
        1 => vec!["x"],
        2 => vec!["a", "b"],
        _ => vec!["a", "b", "c"],
    };
    let mut s = String::from(WGSL_HELPERS);
    s += "@group(0) @binding(0) var<storage, read> info: array<u32>;\n";
    s += "@group(0) @binding(1) var<storage, read_write> out: array<f32>;\n";
    for (k, n) in names.iter().enumerate() {
        s += &format!(
            "@group(0) @binding({}) var<storage, read> in_{n}: array<f32>;\n",
            k + 2
        );
    }
    s += FLAT_ID;
    s += OFFSET_OF;
    s += "@compute @workgroup_size(256)\nfn main(@builtin(workgroup_id) wid: vec3<u32>, \
          @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {\n";
    s += "    let i = flat_id(wid, nwg, lid);\n    if (i >= info[0]) { return; }\n";
    s += "    let p0 = bitcast<f32>(info[2]);\n    let p1 = bitcast<f32>(info[3]);\n";
    for (k, n) in names.iter().enumerate() {
        s += &format!("    let {n} = in_{n}[offset_of(i, {k}u)];\n");
    }
    s += &format!("    out[i] = {expr};\n}}\n");
    s
}

/// Run the `expr` kernel over `inputs` broadcast to `shape`.
fn launch(
    op: &'static str,
    dev: &WgpuDevice,
    expr: &str,
    params: [f32; 2],
    shape: &Shape,
    inputs: &[(&wgpu::Buffer, Layout)],
) -> Result<WgpuBuffer> {
    let n = shape.numel();
    kernel::check_u32(op, n)?;
    let out = WgpuBuffer::uninit(dev, op, n)?;
    let operands: Vec<(usize, &[usize])> = inputs
        .iter()
        .map(|(_, l)| (l.offset(), l.strides()))
        .collect();
    let meta = kernel::strided_meta(shape.dims(), params, &operands);
    let mut bufs = vec![out.single(op)?];
    bufs.extend(inputs.iter().map(|(b, _)| *b));
    kernel::run(
        dev,
        op,
        &source(inputs.len(), expr),
        &meta,
        &bufs,
        kernel::grid(n),
    )?;
    Ok(out)
}

fn wrap(b: WgpuBuffer, shape: Shape) -> Result<Tensor> {
    Tensor::from_storage(
        std::sync::Arc::new(Storage::Wgpu(b)),
        Layout::contiguous(shape),
    )
}

/// `expr` (in `x`, `p0`, `p1`) applied to every element of `x`.
pub fn map_expr(op: &'static str, x: &Tensor, expr: &str, params: [f32; 2]) -> Result<Tensor> {
    let dev = device_of(&[x]).ok_or_else(|| TensorError::invalid(op, "no tensor on wgpu"))?;
    let x = on(&dev, x)?;
    let b = launch(
        op,
        &dev,
        expr,
        params,
        x.shape(),
        &[(buf(op, &x)?, x.layout().clone())],
    )?;
    wrap(b, x.shape().clone())
}

/// A [`UnaryOp`] on the GPU.
pub fn unary(op: UnaryOp, x: &Tensor) -> Result<Tensor> {
    map_expr(op.name(), x, op.wgsl(), [0.0, 0.0])
}

/// `expr` (in `a`, `b`, and `c` for three inputs; parameters `p0`, `p1`) over
/// `inputs` broadcast together (NumPy rules).
pub fn zip_n_expr(
    op: &'static str,
    inputs: &[&Tensor],
    expr: &str,
    params: [f32; 2],
) -> Result<Tensor> {
    let dev = device_of(inputs).ok_or_else(|| TensorError::invalid(op, "no tensor on wgpu"))?;
    let mut shape = inputs
        .first()
        .ok_or_else(|| TensorError::invalid(op, "no inputs"))?
        .shape()
        .clone();
    for t in &inputs[1..] {
        shape = Shape::broadcast(op, &shape, t.shape())?;
    }
    let ts = inputs
        .iter()
        .map(|t| on(&dev, t))
        .collect::<Result<Vec<_>>>()?;
    let bound = ts
        .iter()
        .map(|t| Ok((buf(op, t)?, t.layout().broadcast_as(shape.clone())?)))
        .collect::<Result<Vec<_>>>()?;
    let out = launch(op, &dev, expr, params, &shape, &bound)?;
    wrap(out, shape)
}

/// `expr` (in `a`, `b`) with NumPy broadcasting.
pub fn zip_expr(op: &'static str, a: &Tensor, b: &Tensor, expr: &str) -> Result<Tensor> {
    zip_n_expr(op, &[a, b], expr, [0.0; 2])
}

/// A [`BinaryOp`] on the GPU.
pub fn binary(op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    zip_expr(op.name(), a, b, op.wgsl())
}

/// `torch.where(cond, on_true, on_false)` on the GPU (NaN counts as true).
pub fn where_cond(c: &Tensor, t: &Tensor, f: &Tensor) -> Result<Tensor> {
    zip_n_expr(
        "where_cond",
        &[c, t, f],
        "select(c, b, !(a == 0.0))",
        [0.0; 2],
    )
}

/// The elements `layout` views in `b`, packed contiguous (the strided copy).
pub fn copy_layout(b: &WgpuBuffer, layout: &Layout) -> Result<WgpuBuffer> {
    let op = "contiguous";
    launch(
        op,
        b.device(),
        "x",
        [0.0; 2],
        layout.shape(),
        &[(b.single(op)?, layout.clone())],
    )
}

/// `x.contiguous()` for a tensor on the GPU.
pub fn copy(x: &Tensor) -> Result<Tensor> {
    match x.storage().as_ref() {
        Storage::Wgpu(b) => wrap(copy_layout(b, x.layout())?, x.shape().clone()),
        Storage::Cpu(_) => x.contiguous(),
    }
}

/// `x` contiguous from element 0 of its buffer (a copy unless it already is), for
/// kernels that index the buffer directly.
pub fn packed(x: &Tensor) -> Result<Tensor> {
    if x.is_contiguous() && x.layout().offset() == 0 {
        Ok(x.clone())
    } else {
        copy(x)
    }
}

/// `x ^ e` with the CPU's exact fast paths.
pub fn powf_expr(e: f32) -> &'static str {
    match e {
        1.0 => "x",
        2.0 => "x * x",
        3.0 => "x * x * x",
        0.5 => "sqrt(x)",
        -0.5 => "1.0 / sqrt(x)",
        -1.0 => "1.0 / x",
        -2.0 => "1.0 / (x * x)",
        _ => "pow_f32(x, p0)",
    }
}

/// A fresh zero-filled tensor on `dev` (wgpu zeroes new buffers).
pub fn zeros(dev: &WgpuDevice, dims: Vec<usize>) -> Result<Tensor> {
    super::output_zeroed(dev, "zeros", dims)
}
