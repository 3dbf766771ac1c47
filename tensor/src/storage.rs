//! Storage: the flat buffer behind one or more tensors. Immutable once shared
//! (tensors hold it in an `Arc`); ops write new storage. This enum is the only place
//! that matches on device. The wgpu variant arrives with the wgpu backend.

/// Flat element buffer on one device.
#[derive(Debug, Clone)]
pub enum Storage {
    /// Host memory, f32 (the compute type).
    Cpu(Vec<f32>),
}

impl Storage {
    /// Number of f32 elements held.
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(v) => v.len(),
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
        }
    }
}
