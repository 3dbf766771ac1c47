//! A caching allocator for GPU buffers, like PyTorch's CUDA caching allocator: a
//! buffer whose last tensor is dropped goes back to a free list keyed by its size
//! instead of back to the driver, and the next request of that size takes it.
//!
//! A UNet step allocates an output for every op, the same sizes step after step;
//! asking the driver each time costs a memory allocation (slow for big buffers)
//! and wgpu's zero-fill of the new buffer. Reused buffers are cleared on the GPU by
//! the context (`Context::create_buffer`), so a new tensor still reads as zeros.
//!
//! The free lists hold at most `cap` bytes (`ContextOptions::pool_bytes`); past
//! that a dropped buffer is released to the driver. An allocation that fails for
//! lack of memory empties the lists and tries once more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Free buffers by byte size.
#[derive(Debug)]
pub struct Pool {
    free: Mutex<Free>,
    cap: u64,
}

#[derive(Debug, Default)]
struct Free {
    by_size: HashMap<u64, Vec<wgpu::Buffer>>,
    bytes: u64,
}

impl Pool {
    /// An empty pool holding at most `cap` bytes of free buffers.
    pub fn new(cap: u64) -> Arc<Pool> {
        Arc::new(Pool {
            free: Mutex::new(Free::default()),
            cap,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Free> {
        self.free.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A free buffer of exactly `bytes`, if one is held.
    pub fn take(&self, bytes: u64) -> Option<wgpu::Buffer> {
        let mut f = self.lock();
        let buf = f.by_size.get_mut(&bytes)?.pop()?;
        f.bytes -= bytes;
        Some(buf)
    }

    /// Give `buf` back: kept when it fits under the cap, else released.
    fn put(&self, buf: wgpu::Buffer) {
        let bytes = buf.size();
        let mut f = self.lock();
        if f.bytes + bytes <= self.cap {
            f.bytes += bytes;
            f.by_size.entry(bytes).or_default().push(buf);
        }
    }

    /// Release every free buffer to the driver.
    pub fn clear(&self) {
        let mut f = self.lock();
        f.by_size.clear();
        f.bytes = 0;
    }

    /// Bytes held in free buffers.
    pub fn free_bytes(&self) -> u64 {
        self.lock().bytes
    }
}

/// A buffer that returns to its [`Pool`] when dropped. Derefs to the
/// `wgpu::Buffer`.
#[derive(Debug)]
pub struct PooledBuffer {
    buf: Option<wgpu::Buffer>,
    pool: Arc<Pool>,
}

impl PooledBuffer {
    pub(crate) fn new(buf: wgpu::Buffer, pool: &Arc<Pool>) -> PooledBuffer {
        PooledBuffer {
            buf: Some(buf),
            pool: Arc::clone(pool),
        }
    }
}

impl std::ops::Deref for PooledBuffer {
    type Target = wgpu::Buffer;
    fn deref(&self) -> &wgpu::Buffer {
        // Only `drop` takes the buffer out.
        self.buf.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.pool.put(buf);
        }
    }
}
