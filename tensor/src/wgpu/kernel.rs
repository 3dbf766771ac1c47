//! Plumbing shared by the WGSL kernels: the binding convention, the metadata
//! buffer, the dispatch grid and the strided-index function.
//!
//! Every kernel binds, in order: `meta` (a read-only `array<u32>` of sizes,
//! strides, offsets and `bitcast` f32 parameters) at 0, the output at 1, the inputs
//! from 2. One thread per output element in a 256-wide workgroup; a 1-D grid caps
//! at 65,535 workgroups, so bigger jobs fold the thread id over a 2-D grid
//! ([`grid`], [`FLAT_ID`]).

use wgpu::util::DeviceExt;

use super::WgpuDevice;
use crate::error::Result;

/// Threads per workgroup of the elementwise kernels.
pub const WG: u32 = 256;

/// Workgroups for `threads` threads of [`WG`] each: `[x, y, 1]` with `x <= 65535`.
pub fn grid(threads: usize) -> [u32; 3] {
    let groups = threads.div_ceil(WG as usize);
    let x = groups.min(65_535);
    let y = if x == 0 { 0 } else { groups.div_ceil(x) };
    [x as u32, y as u32, 1]
}

/// WGSL: the flat thread id over the 2-D grid of [`grid`].
pub const FLAT_ID: &str = r#"
fn flat_id(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + lid;
}
"#;

/// WGSL: the storage offset of row-major element `i` for operand `k`, with `meta`
/// laid out as `[numel, rank, p0, p1, dims[rank], then per operand: offset,
/// strides[rank]]` ([`strided_meta`] writes it).
pub const OFFSET_OF: &str = r#"
fn offset_of(i: u32, k: u32) -> u32 {
    let rank = info[1];
    let base = 4u + rank + k * (rank + 1u);
    var off = info[base];
    var rem = i;
    var d = rank;
    while (d > 0u) {
        d = d - 1u;
        let size = info[4u + d];
        off = off + (rem % size) * info[base + 1u + d];
        rem = rem / size;
    }
    return off;
}
"#;

/// Metadata for [`OFFSET_OF`]: `dims`, two f32 parameters, and each operand's
/// `(offset, strides)` (already broadcast to `dims`).
pub fn strided_meta(dims: &[usize], params: [f32; 2], operands: &[(usize, &[usize])]) -> Vec<u32> {
    let numel: usize = dims.iter().product();
    let mut m = vec![
        numel as u32,
        dims.len() as u32,
        params[0].to_bits(),
        params[1].to_bits(),
    ];
    m.extend(dims.iter().map(|&d| d as u32));
    for (off, strides) in operands {
        m.push(*off as u32);
        m.extend(strides.iter().map(|&s| s as u32));
    }
    m
}

/// Upload `meta` and run `source` with `meta`, `out` and `inputs` bound at 0, 1, 2...
pub fn run(
    dev: &WgpuDevice,
    op: &'static str,
    source: &str,
    meta: &[u32],
    buffers: &[&wgpu::Buffer],
    groups: [u32; 3],
) -> Result<()> {
    let ctx = &dev.0;
    let words: &[u32] = if meta.is_empty() { &[0] } else { meta };
    let meta_buf = ctx
        .device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("meta"),
            contents: bytemuck::cast_slice(words),
            usage: wgpu::BufferUsages::STORAGE,
        });
    let mut all = Vec::with_capacity(buffers.len() + 1);
    all.push(&meta_buf);
    all.extend_from_slice(buffers);
    ctx.dispatch(op, source, &all, groups)
}

/// Refuse sizes that do not fit the kernels' u32 index arithmetic.
pub fn check_u32(op: &'static str, n: usize) -> Result<()> {
    if n > u32::MAX as usize {
        return Err(crate::TensorError::invalid(
            op,
            format!("{n} elements exceed the GPU kernels' u32 indexing"),
        ));
    }
    Ok(())
}
