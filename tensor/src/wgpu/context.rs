//! The GPU context: one wgpu instance, adapter, device and queue, the adapter's
//! limits, a cache of compiled compute pipelines keyed by kernel source, the
//! buffer pool ([`super::pool`]) and the command encoder being filled.
//!
//! Commands are batched: each dispatch (and copy, and clear) is recorded into one
//! pending command encoder, submitted every [`BATCH`] commands and whenever the
//! host waits for the GPU ([`Context::flush`], called by `synchronize`, readback and
//! upload). One submit per op would cost the CPU more than many small kernels take
//! on the GPU.
//!
//! Errors from the driver never panic: wgpu's default handler for errors nobody
//! catches panics, so the device gets a handler that records the message, and
//! [`Context::check`] turns a recorded error (or a lost device) into a
//! [`TensorError::Device`]. Buffer creation runs inside an out-of-memory error scope
//! and dispatches inside a validation scope, each popped right away (on native wgpu
//! the pop resolves without waiting for the GPU).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use super::pool::{Pool, PooledBuffer};
use crate::error::{Result, TensorError};

/// Options for opening a GPU context.
#[derive(Clone, Debug, Default)]
pub struct ContextOptions {
    /// Cap on the bytes one storage binding may hold (below the adapter's own
    /// limit); tensors bigger than this are split into chunks. Tests set it small
    /// to exercise the splitting without 150 MB tensors.
    pub max_binding_bytes: Option<u64>,
    /// Bytes of freed buffers kept for reuse (default [`DEFAULT_POOL_BYTES`]).
    pub pool_bytes: Option<u64>,
}

/// Freed buffers kept for reuse by default: 2 GiB.
pub const DEFAULT_POOL_BYTES: u64 = 2 << 30;

/// Commands recorded before the pending encoder is submitted.
pub const BATCH: usize = 64;

/// The encoder being filled and how many commands it holds.
#[derive(Default)]
struct Pending {
    enc: Option<wgpu::CommandEncoder>,
    count: usize,
}

/// Instance, adapter, device, queue, limits and the pipeline cache.
pub struct Context {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    max_binding: u64,
    pipelines: Mutex<HashMap<String, wgpu::ComputePipeline>>,
    error: Arc<Mutex<Option<String>>>,
    pool: Arc<Pool>,
    pending: Mutex<Pending>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "wgpu({} via {:?}, max binding {} bytes)",
            self.info.name, self.info.backend, self.max_binding
        )
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Context {
    /// Open the best adapter (high-performance preference) and a device with every
    /// limit the adapter offers.
    pub fn new(options: &ContextOptions) -> Result<Context> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::PRIMARY;
        let instance = wgpu::Instance::new(desc);
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            ..Default::default()
        }))
        .map_err(|e| TensorError::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("tensor"),
            required_limits: limits.clone(),
            ..Default::default()
        }))
        .map_err(|e| TensorError::Device {
            op: "wgpu::request_device",
            msg: e.to_string(),
        })?;
        let error = Arc::new(Mutex::new(None::<String>));
        let sink = Arc::clone(&error);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            lock(&sink).get_or_insert_with(|| e.to_string());
        }));
        let lost = Arc::clone(&error);
        device.set_device_lost_callback(move |reason, msg| {
            lock(&lost).get_or_insert_with(|| format!("device lost ({reason:?}): {msg}"));
        });
        let adapter_max = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let max_binding = options
            .max_binding_bytes
            .map_or(adapter_max, |m| m.min(adapter_max))
            / 16
            * 16;
        Ok(Context {
            device,
            queue,
            info,
            limits,
            max_binding: max_binding.max(16),
            pipelines: Mutex::new(HashMap::new()),
            error,
            pool: Pool::new(options.pool_bytes.unwrap_or(DEFAULT_POOL_BYTES)),
            pending: Mutex::new(Pending::default()),
        })
    }

    /// The adapter's name, backend and device type.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// The limits the device was opened with (all the adapter offers).
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }

    /// Largest number of bytes one buffer binding may hold here.
    pub fn max_binding_bytes(&self) -> u64 {
        self.max_binding
    }

    /// Err when the driver has reported an error or the device was lost.
    pub fn check(&self, op: &'static str) -> Result<()> {
        match lock(&self.error).clone() {
            Some(msg) => Err(TensorError::Device { op, msg }),
            None => Ok(()),
        }
    }

    /// A storage buffer of `bytes` (at least 16): a free one from the pool or a new
    /// one, created in an out-of-memory scope (on failure the pool is emptied and
    /// creation tried once more). With `zeroed` it reads as zeros (wgpu zero-fills
    /// new buffers; a reused one is cleared on the GPU); without, a reused buffer
    /// keeps its old contents for the caller to overwrite.
    pub(crate) fn create_buffer(
        &self,
        op: &'static str,
        bytes: u64,
        zeroed: bool,
    ) -> Result<PooledBuffer> {
        self.check(op)?;
        let size = bytes.max(16).next_multiple_of(4);
        if let Some(buf) = self.pool.take(size) {
            if zeroed {
                self.encode(|enc| enc.clear_buffer(&buf, 0, None));
            }
            return Ok(PooledBuffer::new(buf, &self.pool));
        }
        let create = || {
            let scope = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
            let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(op),
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            match pollster::block_on(scope.pop()) {
                Some(e) => Err(e),
                None => Ok(buf),
            }
        };
        let buf = create().or_else(|_| {
            self.pool.clear();
            create()
        });
        match buf {
            Ok(buf) => Ok(PooledBuffer::new(buf, &self.pool)),
            Err(e) => Err(TensorError::DeviceOutOfMemory {
                op,
                bytes,
                msg: e.to_string(),
            }),
        }
    }

    /// Bytes held by freed buffers waiting for reuse.
    pub fn pooled_bytes(&self) -> u64 {
        self.pool.free_bytes()
    }

    /// Record commands into the pending encoder with `f`; submit it once it holds
    /// [`BATCH`] commands.
    pub(crate) fn encode<R>(&self, f: impl FnOnce(&mut wgpu::CommandEncoder) -> R) -> R {
        let mut p = lock(&self.pending);
        let enc = p.enc.get_or_insert_with(|| {
            self.device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("batch"),
                })
        });
        let r = f(enc);
        p.count += 1;
        if p.count >= BATCH {
            // Submitted under the lock, so that batches reach the queue in the order
            // they were recorded, whichever thread records.
            p.count = 0;
            self.submit(p.enc.take());
        }
        r
    }

    /// Submit the pending commands (the GPU runs them in order after everything
    /// submitted before).
    pub fn flush(&self) {
        let mut p = lock(&self.pending);
        p.count = 0;
        self.submit(p.enc.take());
    }

    /// Finish and submit `enc`; a validation error found now (recording defers
    /// them) is kept for the next [`Context::check`].
    fn submit(&self, enc: Option<wgpu::CommandEncoder>) {
        let Some(enc) = enc else { return };
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        self.queue.submit([enc.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            lock(&self.error).get_or_insert_with(|| e.to_string());
        }
    }

    /// The compute pipeline for `source` (entry point `main`), compiled once.
    pub(crate) fn pipeline(&self, op: &'static str, source: &str) -> Result<wgpu::ComputePipeline> {
        if let Some(p) = lock(&self.pipelines).get(source) {
            return Ok(p.clone());
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(op),
                source: wgpu::ShaderSource::Wgsl(source.into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(op),
                layout: None,
                module: &module,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(TensorError::Device {
                op,
                msg: format!("shader does not compile: {e}"),
            });
        }
        lock(&self.pipelines).insert(source.to_string(), pipeline.clone());
        Ok(pipeline)
    }

    /// Run `source` once over `groups` workgroups with `buffers` bound at 0, 1, ..
    /// in order (the shader declares each one).
    pub(crate) fn dispatch(
        &self,
        op: &'static str,
        source: &str,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        let pipeline = self.pipeline(op, source)?;
        if groups.contains(&0) {
            return Ok(());
        }
        let max = self.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(TensorError::invalid(
                op,
                format!("{groups:?} workgroups exceed the adapter's limit of {max} per dimension"),
            ));
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        let bind = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(op),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(TensorError::Device {
                op,
                msg: e.to_string(),
            });
        }
        self.encode(|enc| {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(op),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        });
        self.check(op)
    }

    /// Block until every submitted command has finished (no spinning: the device
    /// poll waits on the driver's fence).
    pub fn synchronize(&self) -> Result<()> {
        self.flush();
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| TensorError::Device {
                op: "wgpu::synchronize",
                msg: e.to_string(),
            })?;
        self.check("wgpu::synchronize")
    }
}

/// The process-wide default context, opened on first use; the failure (no adapter)
/// is remembered too, so later calls answer at once.
pub(crate) fn shared() -> Result<Arc<Context>> {
    static SHARED: OnceLock<std::result::Result<Arc<Context>, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            Context::new(&ContextOptions::default())
                .map(Arc::new)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(TensorError::NoAdapter)
}
