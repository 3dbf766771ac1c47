//! Storage: the flat buffer behind one or more tensors. Immutable once shared
//! (tensors hold it in an `Arc`); ops write new storage. This enum is the only place
//! that matches on device: `Cpu` holds a `Vec<f32>`, `Wgpu` (with the default cargo
//! feature `wgpu`) a GPU buffer, see [`crate::wgpu`].

/// Flat element buffer on one device.
#[derive(Debug, Clone)]
pub enum Storage {
    /// Host memory, f32 (the compute type).
    Cpu(Vec<f32>),
    /// GPU memory through wgpu (Vulkan, Metal, DX12), f32.
    #[cfg(feature = "wgpu")]
    Wgpu(crate::wgpu::WgpuBuffer),
}

impl Storage {
    /// Number of f32 elements held.
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(v) => v.len(),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(b) => b.len(),
        }
    }

    /// True when no elements are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Name of the device, for messages.
    pub fn device_name(&self) -> &'static str {
        match self {
            Storage::Cpu(_) => "cpu",
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => "wgpu",
        }
    }
}

/// Ask the C allocator to keep freed memory for reuse; run once, when the first
/// tensor is made.
///
/// A training step allocates and frees the same few dozen megabytes of activations
/// and gradients every step. With glibc's default settings, freed memory at the top
/// of the heap is handed back to the OS as soon as a few megabytes are free, so
/// the next step's buffers arrive as fresh pages and every 4 KB page costs a page
/// fault on first touch: measured on lesson 05's CNN, about 3,800 faults and a fifth
/// of the step's time. Raising glibc's trim threshold (and its mmap threshold, which
/// the first setting would otherwise freeze at 128 KB) keeps that memory in the
/// process, as a long-running Python process does by accident.
pub(crate) fn keep_freed_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: `mallopt` only changes two numeric settings of glibc's malloc; it
        // may be called at any time from any thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
        }
    });
}
