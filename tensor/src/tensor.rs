//! Tensor: a cheap-clone handle (an `Arc`) to immutable storage plus a [`Layout`].
//!
//! Views return new tensors over the same storage; ops produce new storage.
//! Introduced in `lessons/03-tensors`.
//!
//! ```
//! use tensor::Tensor;
//! let x = Tensor::arange(0.0, 6.0, 1.0).unwrap().reshape([2, 3]).unwrap();
//! let y = x.t().unwrap();                       // (3, 2), no copy
//! assert_eq!(y.to_vec().unwrap(), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
//! assert!(!y.is_contiguous());
//! assert!(y.contiguous().unwrap().is_contiguous());
//! ```

use std::sync::Arc;

use crate::error::{Result, TensorError};
use crate::layout::Layout;
use crate::shape::Shape;
use crate::storage::Storage;

/// An N-d array of f32: shared storage and a strided layout over it.
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Storage>,
    layout: Layout,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head: Vec<f32> = match self.to_vec() {
            Ok(v) => v.into_iter().take(8).collect(),
            Err(_) => Vec::new(),
        };
        write!(
            f,
            "Tensor(shape={:?}, strides={:?}, device={}, head={:?})",
            self.dims(),
            self.layout.strides(),
            self.storage.device_name(),
            head
        )
    }
}

impl Tensor {
    // ---- construction -------------------------------------------------------

    /// A tensor over existing storage with an explicit layout. The layout must stay
    /// inside the storage.
    pub fn from_storage(storage: Arc<Storage>, layout: Layout) -> Result<Self> {
        if layout.storage_extent() > storage.len() {
            return Err(TensorError::invalid(
                "from_storage",
                format!(
                    "layout {:?} strides {:?} offset {} reads past storage of {} elements",
                    layout.dims(),
                    layout.strides(),
                    layout.offset(),
                    storage.len()
                ),
            ));
        }
        Ok(Tensor { storage, layout })
    }

    /// A contiguous tensor owning `data`, which must have `shape.numel()` elements.
    pub fn from_vec(data: Vec<f32>, shape: impl Into<Shape>) -> Result<Self> {
        let shape = shape.into();
        if data.len() != shape.numel() {
            return Err(TensorError::ElementCount {
                op: "from_vec",
                shape: shape.dims().to_vec(),
                expected: shape.numel(),
                got: data.len(),
            });
        }
        crate::storage::keep_freed_memory();
        Ok(Tensor {
            storage: Arc::new(Storage::Cpu(data)),
            layout: Layout::contiguous(shape),
        })
    }

    /// A contiguous tensor copied from a slice.
    pub fn from_slice(data: &[f32], shape: impl Into<Shape>) -> Result<Self> {
        Self::from_vec(data.to_vec(), shape)
    }

    /// Every element equal to `value`.
    pub fn full(shape: impl Into<Shape>, value: f32) -> Self {
        let shape = shape.into();
        let n = shape.numel();
        crate::storage::keep_freed_memory();
        Tensor {
            storage: Arc::new(Storage::Cpu(vec![value; n])),
            layout: Layout::contiguous(shape),
        }
    }

    /// All zeros.
    pub fn zeros(shape: impl Into<Shape>) -> Self {
        Self::full(shape, 0.0)
    }

    /// All ones.
    pub fn ones(shape: impl Into<Shape>) -> Self {
        Self::full(shape, 1.0)
    }

    /// A rank-0 tensor holding one value.
    pub fn scalar(value: f32) -> Self {
        Self::full(Shape::new(vec![]), value)
    }

    /// `start, start+step, ..` up to but excluding `end` (as `torch.arange`).
    pub fn arange(start: f32, end: f32, step: f32) -> Result<Self> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return Err(TensorError::invalid(
                "arange",
                format!("start {start}, end {end}, step {step}: need finite values and step != 0"),
            ));
        }
        let n = ((end - start) / step).ceil().max(0.0) as usize;
        let data = (0..n).map(|i| start + i as f32 * step).collect::<Vec<_>>();
        Self::from_vec(data, [n])
    }

    // ---- inspection ---------------------------------------------------------

    pub fn layout(&self) -> &Layout {
        &self.layout
    }
    pub fn shape(&self) -> &Shape {
        self.layout.shape()
    }
    pub fn dims(&self) -> &[usize] {
        self.layout.dims()
    }
    pub fn rank(&self) -> usize {
        self.layout.rank()
    }
    pub fn numel(&self) -> usize {
        self.layout.numel()
    }
    pub fn strides(&self) -> &[usize] {
        self.layout.strides()
    }
    pub fn is_contiguous(&self) -> bool {
        self.layout.is_contiguous()
    }
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// Size of one dim (negative counts from the end).
    pub fn dim(&self, dim: isize) -> Result<usize> {
        Ok(self.dims()[self.shape().dim("dim", dim)?])
    }

    /// The whole CPU storage buffer (index it through [`Tensor::layout`]). Errors for
    /// a tensor on another device (move it with [`Tensor::to_device`] first).
    pub fn cpu_storage(&self) -> Result<&[f32]> {
        match self.storage.as_ref() {
            Storage::Cpu(v) => Ok(v),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(_) => Err(TensorError::invalid(
                "cpu_storage",
                format!(
                    "tensor of shape {:?} lives on wgpu; call to_device(&Device::Cpu) first",
                    self.dims()
                ),
            )),
        }
    }

    /// The elements as a slice when the layout is contiguous, else `None`.
    pub fn contiguous_slice(&self) -> Result<Option<&[f32]>> {
        let data = self.cpu_storage()?;
        Ok(self.layout.contiguous_range().map(|r| &data[r]))
    }

    /// The elements in row-major logical order (downloaded from the GPU for a
    /// tensor on wgpu).
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        #[cfg(feature = "wgpu")]
        if let Storage::Wgpu(b) = self.storage.as_ref() {
            return crate::wgpu::buffer::download_layout(b, &self.layout);
        }
        if let Some(s) = self.contiguous_slice()? {
            return Ok(s.to_vec());
        }
        let mut out = vec![0.0f32; self.numel()];
        crate::ops::strided::copy_strided(self.cpu_storage()?, &self.layout, &mut out)?;
        Ok(out)
    }

    /// The single value of a one-element tensor.
    pub fn to_scalar(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(TensorError::invalid(
                "to_scalar",
                format!(
                    "tensor of shape {:?} has {} elements, not 1",
                    self.dims(),
                    self.numel()
                ),
            ));
        }
        Ok(self.to_vec()?[0])
    }

    /// A contiguous tensor with the same values; a cheap clone when already contiguous.
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        #[cfg(feature = "wgpu")]
        if let Storage::Wgpu(_) = self.storage.as_ref() {
            return crate::wgpu::elementwise::copy(self);
        }
        Self::from_vec(self.to_vec()?, self.shape().clone())
    }

    // ---- views (zero-copy) --------------------------------------------------

    fn with_layout(&self, layout: Layout) -> Tensor {
        Tensor {
            storage: Arc::clone(&self.storage),
            layout,
        }
    }

    /// Same elements in a new shape; zero-copy when contiguous, else copies first
    /// (as `torch.reshape`). See [`Tensor::flatten`] for merging dims.
    pub fn reshape(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        let src = self.contiguous()?;
        let layout = src.layout.reshape(shape)?;
        Ok(src.with_layout(layout))
    }

    /// Like [`Tensor::reshape`] but refuses to copy (as `torch.view`).
    pub fn view(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        Ok(self.with_layout(self.layout.reshape(shape)?))
    }

    /// Merge dims `start..=end` into one.
    pub fn flatten(&self, start: isize, end: isize) -> Result<Tensor> {
        if self.rank() == 0 {
            return self.reshape([1]);
        }
        let s = self.shape().dim("flatten", start)?;
        let e = self.shape().dim("flatten", end)?;
        if s > e {
            return Err(TensorError::invalid(
                "flatten",
                format!("start dim {s} is after end dim {e}"),
            ));
        }
        let d = self.dims();
        let mut dims = d[..s].to_vec();
        dims.push(d[s..=e].iter().product());
        dims.extend_from_slice(&d[e + 1..]);
        self.reshape(dims)
    }

    /// Reorder dims: output dim `i` is input dim `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        Ok(self.with_layout(self.layout.permute(perm)?))
    }

    /// Swap two dims.
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Tensor> {
        Ok(self.with_layout(self.layout.transpose(d0, d1)?))
    }

    /// Swap the last two dims (matrix transpose; batch dims stay).
    pub fn t(&self) -> Result<Tensor> {
        if self.rank() < 2 {
            return Err(TensorError::invalid(
                "t",
                format!("needs rank >= 2, got shape {:?}", self.dims()),
            ));
        }
        self.transpose(-2, -1)
    }

    /// Keep `len` entries of `dim` from `start`.
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        Ok(self.with_layout(self.layout.narrow(dim, start, len)?))
    }

    /// Broadcast to `shape` (stride-0 dims), zero-copy.
    pub fn broadcast_as(&self, shape: impl Into<Shape>) -> Result<Tensor> {
        Ok(self.with_layout(self.layout.broadcast_as(shape)?))
    }

    /// Remove a size-1 dim.
    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        Ok(self.with_layout(self.layout.squeeze(dim)?))
    }

    /// Insert a size-1 dim.
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        Ok(self.with_layout(self.layout.unsqueeze(dim)?))
    }
}
