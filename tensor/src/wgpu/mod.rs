//! The wgpu backend: the same `Tensor` ops on a GPU (Vulkan, Metal, DX12) through
//! compute shaders written here in WGSL, readable next to their CPU twins.
//!
//! - [`context`]: instance, adapter (and its limits), device, queue, the pipeline
//!   cache keyed by kernel source, and error handling (no panics on driver errors).
//! - [`buffer`]: [`WgpuBuffer`] (f32 storage, split into chunks when bigger than one
//!   binding may be), upload and download (`map_async` + `device.poll(Wait)`).
//! - [`pool`]: the caching allocator that hands freed buffers to the next op.
//! - [`elementwise`]: unary / binary / ternary kernels generated from the op enums'
//!   WGSL snippets, over any strided or broadcast layout; strided copy.
//! - [`reduce`]: reductions, softmax, argmax / argmin. [`matmul`]: the matmul
//!   ladder (naive, shared-memory tiles, register blocking with vec4, generated and
//!   unrolled, vec4 loads with prefetch). [`conv`]: conv2d (1x1 as a matmul, im2col +
//!   matmul, an implicit GEMM for groups) and its gradients ([`conv_backward`]:
//!   im2col + matmul, matmul + col2im). [`norm`]: group / layer norm. [`attention`]:
//!   tiled attention with an online softmax. [`layers`]: upsample, pad (constant,
//!   reflect, replicate), cat, index_select. [`index`]: gather, and index_add without
//!   float atomics (each output pulls its sources, in the CPU's order). [`pool2d`]:
//!   max and average pooling.
//!
//! Ops route here at their entry (`if x.is_gpu()`): the CPU paths are untouched.
//! A CPU operand of a GPU op (a scalar, a bias) is uploaded on the way.
//! Introduced in `lessons/01-matmul` (the GPU chapter).
//!
//! ```
//! use tensor::{Device, Tensor};
//! let Ok(gpu) = Device::wgpu() else {
//!     println!("skipped: no wgpu adapter");
//!     return;
//! };
//! let a = Tensor::from_slice(&[1.0, 2.0, 3.0, 4.0], [2, 2]).unwrap().to_device(&gpu).unwrap();
//! let c = a.matmul(&a).unwrap();
//! assert_eq!(c.to_vec().unwrap(), vec![7.0, 10.0, 15.0, 22.0]);
//! ```

pub mod attention;
pub mod buffer;
pub mod context;
pub mod conv;
pub mod conv_backward;
pub mod elementwise;
pub mod index;
pub mod kernel;
pub mod layers;
pub mod matmul;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod pool2d;
pub mod reduce;

use std::sync::Arc;

pub use buffer::WgpuBuffer;
pub use context::{Context, ContextOptions};

use crate::error::{Result, TensorError};
use crate::storage::Storage;
use crate::tensor::Tensor;

/// A handle to a GPU context; cheap to clone, equal when it is the same context.
#[derive(Clone, Debug)]
pub struct WgpuDevice(pub(crate) Arc<Context>);

impl PartialEq for WgpuDevice {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl WgpuDevice {
    /// The process-wide default GPU.
    pub fn shared() -> Result<WgpuDevice> {
        context::shared().map(WgpuDevice)
    }

    /// A new, separate context with `options` (for tests of chunking, or to pin a
    /// smaller binding size).
    pub fn with_options(options: &ContextOptions) -> Result<WgpuDevice> {
        Context::new(options).map(|c| WgpuDevice(Arc::new(c)))
    }

    /// The context (adapter info, limits, synchronize).
    pub fn context(&self) -> &Context {
        &self.0
    }
}

/// The GPU device of the first of `tensors` that lives on wgpu.
pub(crate) fn device_of(tensors: &[&Tensor]) -> Option<WgpuDevice> {
    tensors.iter().find_map(|t| match t.storage().as_ref() {
        Storage::Wgpu(b) => Some(b.device().clone()),
        Storage::Cpu(_) => None,
    })
}

/// `t` on `dev`: a CPU tensor is uploaded (contiguous), a tensor on another GPU
/// context is an error.
pub(crate) fn on(dev: &WgpuDevice, t: &Tensor) -> Result<Tensor> {
    match t.storage().as_ref() {
        Storage::Wgpu(b) if b.device() == dev => Ok(t.clone()),
        Storage::Wgpu(_) => Err(TensorError::invalid(
            "wgpu",
            "operands live on two different GPU contexts",
        )),
        Storage::Cpu(_) => t.to_device(&crate::Device::Wgpu(dev.clone())),
    }
}

/// The buffer behind a tensor that [`on`] placed on the GPU, as one binding.
pub(crate) fn buf<'a>(op: &'static str, t: &'a Tensor) -> Result<&'a wgpu::Buffer> {
    match t.storage().as_ref() {
        Storage::Wgpu(b) => b.single(op),
        Storage::Cpu(_) => Err(TensorError::invalid(op, "expected a tensor on wgpu")),
    }
}

/// A new tensor of `dims` over a contiguous buffer whose contents are stale (from
/// the pool): for kernels that write every element.
pub(crate) fn output(dev: &WgpuDevice, op: &'static str, dims: Vec<usize>) -> Result<Tensor> {
    let n: usize = dims.iter().product();
    wrap(WgpuBuffer::uninit(dev, op, n)?, dims)
}

/// [`output`] reading as zeros.
pub(crate) fn output_zeroed(
    dev: &WgpuDevice,
    op: &'static str,
    dims: Vec<usize>,
) -> Result<Tensor> {
    let n: usize = dims.iter().product();
    wrap(WgpuBuffer::new(dev, op, n)?, dims)
}

fn wrap(b: WgpuBuffer, dims: Vec<usize>) -> Result<Tensor> {
    Tensor::from_storage(
        Arc::new(Storage::Wgpu(b)),
        crate::layout::Layout::contiguous(dims),
    )
}
