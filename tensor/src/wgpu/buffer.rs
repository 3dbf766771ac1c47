//! GPU storage ([`WgpuBuffer`]) and the copies between host and GPU.
//!
//! A buffer holds `len` f32 in one wgpu buffer, or, when `len * 4` bytes exceed the
//! largest storage binding the adapter allows (CLIP's token embedding is 152 MB in
//! f32; many adapters bind at most 128 MB), in several chunks of `chunk_elems`
//! elements. Upload, download and `index_select` handle chunks; the other kernels
//! bind one buffer and say so when a tensor is too big for that.
//!
//! Readback is asynchronous in wgpu: copy into a `MAP_READ` staging buffer, ask for
//! `map_async` with a callback that sends the outcome down a channel, then
//! `device.poll(Wait)` blocks on the driver until the copy is done and the callback
//! has run. Nothing spins.

use std::sync::{mpsc, Arc};

use super::pool::PooledBuffer;
use super::WgpuDevice;
use crate::error::{Result, TensorError};
use crate::layout::Layout;

/// f32 storage on a GPU.
#[derive(Clone, Debug)]
pub struct WgpuBuffer {
    dev: WgpuDevice,
    chunks: Arc<Vec<PooledBuffer>>,
    chunk_elems: usize,
    len: usize,
}

impl WgpuBuffer {
    /// Storage for `len` f32, reading as zeros (a new buffer is zeroed by wgpu, a
    /// reused one from the pool is cleared).
    pub fn new(dev: &WgpuDevice, op: &'static str, len: usize) -> Result<WgpuBuffer> {
        WgpuBuffer::alloc(dev, op, len, true)
    }

    /// Storage for `len` f32 that the caller overwrites entirely: a reused buffer
    /// keeps its old contents (no clear).
    pub(crate) fn uninit(dev: &WgpuDevice, op: &'static str, len: usize) -> Result<WgpuBuffer> {
        WgpuBuffer::alloc(dev, op, len, false)
    }

    /// [`WgpuBuffer::new`], with stale contents allowed when `zeroed` is false.
    fn alloc(dev: &WgpuDevice, op: &'static str, len: usize, zeroed: bool) -> Result<WgpuBuffer> {
        let chunk_elems = (dev.0.max_binding_bytes() / 4) as usize;
        let n_chunks = len.div_ceil(chunk_elems).max(1);
        let chunks = (0..n_chunks)
            .map(|c| {
                let elems = (len - (c * chunk_elems).min(len)).min(chunk_elems);
                dev.0.create_buffer(op, elems as u64 * 4, zeroed)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(WgpuBuffer {
            dev: dev.clone(),
            chunks: Arc::new(chunks),
            chunk_elems,
            len,
        })
    }

    /// Number of f32 elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device holding it.
    pub fn device(&self) -> &WgpuDevice {
        &self.dev
    }

    /// The chunks (one unless the buffer is bigger than one binding).
    pub fn chunks(&self) -> &[PooledBuffer] {
        &self.chunks
    }

    /// Elements per chunk (the last one may hold fewer).
    pub fn chunk_elems(&self) -> usize {
        self.chunk_elems
    }

    /// The one wgpu buffer, for a kernel that binds it whole.
    pub(crate) fn single(&self, op: &'static str) -> Result<&wgpu::Buffer> {
        match self.chunks.as_slice() {
            [one] => Ok(one),
            _ => Err(TensorError::invalid(
                op,
                format!(
                    "a tensor of {} bytes exceeds the adapter's largest storage binding \
                     ({} bytes); this kernel does not split (upload, download and \
                     index_select do)",
                    self.len as u64 * 4,
                    self.dev.0.max_binding_bytes()
                ),
            )),
        }
    }
}

/// Copy `data` to a new buffer on `dev`.
pub fn upload(dev: &WgpuDevice, data: &[f32]) -> Result<WgpuBuffer> {
    let buf = WgpuBuffer::alloc(dev, "upload", data.len(), false)?;
    // Queue writes run before the commands of the next submit: submit the pending
    // ones first, which may still read a reused buffer's old contents.
    dev.0.flush();
    for (chunk, part) in buf.chunks.iter().zip(data.chunks(buf.chunk_elems)) {
        dev.0
            .queue
            .write_buffer(chunk, 0, bytemuck::cast_slice(part));
    }
    dev.0.check("upload")?;
    Ok(buf)
}

/// Elements `start..start + len` of `buf`, read back to the host.
pub fn download(buf: &WgpuBuffer, start: usize, len: usize) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(len);
    let ctx = &buf.dev.0;
    let (ce, end) = (buf.chunk_elems, start + len);
    if end > buf.len {
        return Err(TensorError::invalid(
            "download",
            format!("range {start}..{end} past a buffer of {} elements", buf.len),
        ));
    }
    let mut pos = start;
    while pos < end {
        let (c, off) = (pos / ce, pos % ce);
        let n = (ce - off).min(end - pos);
        read_piece(ctx, &buf.chunks[c], off as u64 * 4, n, &mut out)?;
        pos += n;
    }
    Ok(out)
}

/// Copy `n` f32 from `src` at byte `offset` through a staging buffer into `out`.
fn read_piece(
    ctx: &super::Context,
    src: &wgpu::Buffer,
    offset: u64,
    n: usize,
    out: &mut Vec<f32>,
) -> Result<()> {
    let bytes = n as u64 * 4;
    let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("download"),
        size: bytes,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(TensorError::DeviceOutOfMemory {
            op: "download",
            bytes,
            msg: e.to_string(),
        });
    }
    ctx.encode(|enc| enc.copy_buffer_to_buffer(src, offset, &staging, 0, bytes));
    ctx.flush();
    let (tx, rx) = mpsc::channel();
    staging.map_async(wgpu::MapMode::Read, .., move |r| {
        // The receiver waits below; a failed send only means it gave up.
        let _ = tx.send(r);
    });
    ctx.synchronize()?;
    let mapped = rx.recv().map_err(|_| TensorError::Device {
        op: "download",
        msg: "the map callback never ran".into(),
    })?;
    mapped.map_err(|e| TensorError::Device {
        op: "download",
        msg: e.to_string(),
    })?;
    {
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| TensorError::Device {
                op: "download",
                msg: e.to_string(),
            })?;
        out.extend_from_slice(bytemuck::cast_slice(&view));
    }
    staging.unmap();
    Ok(())
}

/// The elements `layout` views in `buf`, row-major: a contiguous range is read
/// directly; any other layout is first gathered on the GPU by the strided copy.
pub fn download_layout(buf: &WgpuBuffer, layout: &Layout) -> Result<Vec<f32>> {
    if layout.numel() == 0 {
        return Ok(Vec::new());
    }
    if let Some(r) = layout.contiguous_range() {
        return download(buf, r.start, r.len());
    }
    let packed = super::elementwise::copy_layout(buf, layout)?;
    download(&packed, 0, layout.numel())
}
