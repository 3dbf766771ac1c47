//! Where a tensor's storage lives: [`Device::Cpu`] (host memory) or, with the
//! default cargo feature `wgpu`, [`Device::Wgpu`] (a GPU through Vulkan, Metal or
//! DX12). `Tensor::to_device` copies between them; an op whose inputs live on wgpu
//! runs there (CPU operands such as scalars are uploaded on the way) and returns a
//! tensor on wgpu. Introduced in `lessons/01-matmul` (the GPU chapter).
//!
//! ```
//! use tensor::{Device, Tensor};
//! let x = Tensor::from_slice(&[1.0, 2.0], [2]).unwrap();
//! assert_eq!(x.device(), Device::Cpu);
//! assert_eq!("cpu".parse::<Device>().unwrap(), Device::Cpu);
//! // With a GPU: let g = x.to_device(&Device::wgpu()?)?; g.exp()?.to_vec()?
//! ```

use crate::error::{Result, TensorError};
use crate::storage::Storage;
use crate::tensor::Tensor;

/// A compute device.
#[derive(Clone, Debug, PartialEq)]
pub enum Device {
    /// Host memory and the CPU kernels.
    Cpu,
    /// A GPU through wgpu; cheap to clone (an `Arc` to the shared context).
    #[cfg(feature = "wgpu")]
    Wgpu(crate::wgpu::WgpuDevice),
}

impl Device {
    /// The default GPU (created once per process, then shared). Errors with
    /// [`TensorError::NoAdapter`] when there is none, or when the crate was built
    /// without the `wgpu` feature.
    pub fn wgpu() -> Result<Device> {
        #[cfg(feature = "wgpu")]
        {
            crate::wgpu::WgpuDevice::shared().map(Device::Wgpu)
        }
        #[cfg(not(feature = "wgpu"))]
        {
            Err(TensorError::NoAdapter(
                "the tensor crate was built without the `wgpu` feature".into(),
            ))
        }
    }

    /// `"cpu"` or `"wgpu"`.
    pub fn name(&self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            #[cfg(feature = "wgpu")]
            Device::Wgpu(_) => "wgpu",
        }
    }

    /// True for a GPU device.
    pub fn is_gpu(&self) -> bool {
        !matches!(self, Device::Cpu)
    }
}

impl std::str::FromStr for Device {
    type Err = TensorError;
    /// `"cpu"`, or `"wgpu"` / `"gpu"` (opens the default GPU).
    fn from_str(s: &str) -> Result<Device> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "wgpu" | "gpu" => Device::wgpu(),
            other => Err(TensorError::invalid(
                "Device::from_str",
                format!("unknown device {other:?}: expected cpu or wgpu"),
            )),
        }
    }
}

impl Tensor {
    /// The device this tensor's storage lives on.
    pub fn device(&self) -> Device {
        match self.storage().as_ref() {
            Storage::Cpu(_) => Device::Cpu,
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(b) => Device::Wgpu(b.device().clone()),
        }
    }

    /// For the ops whose kernel is a Rust closure (`ops::unary::map`,
    /// `ops::binary::zip`, `zip3`, called with a caller's own function), which can
    /// only run on the CPU: when one of `tensors` lives on a GPU, that device (the
    /// result goes back there) and every operand brought to the CPU; `None` when all
    /// are on the CPU already. The project's own ops (autodiff's derivatives among
    /// them, `ops::derivative`) have WGSL twins and never take this road.
    pub(crate) fn closure_operands(tensors: &[&Tensor]) -> Result<Option<(Device, Vec<Tensor>)>> {
        let Some(gpu) = tensors.iter().find(|t| t.is_gpu()) else {
            return Ok(None);
        };
        let cpu = tensors
            .iter()
            .map(|t| t.to_device(&Device::Cpu))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some((gpu.device(), cpu)))
    }

    /// True when the storage lives on a GPU.
    pub fn is_gpu(&self) -> bool {
        !matches!(self.storage().as_ref(), Storage::Cpu(_))
    }

    /// A copy on `device` (a cheap clone when already there). Only the viewed
    /// elements travel: the result is contiguous unless no copy was needed.
    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        match (self.storage().as_ref(), device) {
            (Storage::Cpu(_), Device::Cpu) => Ok(self.clone()),
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(_), Device::Cpu) => {
                Tensor::from_vec(self.to_vec()?, self.shape().clone())
            }
            #[cfg(feature = "wgpu")]
            (Storage::Cpu(_), Device::Wgpu(d)) => {
                let data = self.contiguous()?;
                let slice = data.contiguous_slice()?.unwrap_or(&[]);
                let buf = crate::wgpu::buffer::upload(d, slice)?;
                Tensor::from_storage(
                    std::sync::Arc::new(Storage::Wgpu(buf)),
                    crate::layout::Layout::contiguous(self.shape().clone()),
                )
            }
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(b), Device::Wgpu(d)) if b.device() == d => Ok(self.clone()),
            #[cfg(feature = "wgpu")]
            (Storage::Wgpu(_), Device::Wgpu(_)) => self.to_device(&Device::Cpu)?.to_device(device),
        }
    }
}
