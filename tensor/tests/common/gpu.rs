//! The wgpu device for GPU tests: `Some(device)` when an adapter exists, else
//! `None` after printing "skipped: no wgpu adapter" (as issue 6 asks: a test
//! without an adapter says so rather than passing in silence). CI installs Mesa's
//! lavapipe (software Vulkan), so it has one.

use tensor::{Device, Tensor};

/// The shared GPU device, or `None` (printed) when there is no adapter.
pub fn gpu(test: &str) -> Option<Device> {
    match Device::wgpu() {
        Ok(d) => Some(d),
        Err(e) => {
            println!("skipped: no wgpu adapter ({test}: {e})");
            None
        }
    }
}

/// `t` moved to `dev`, keeping its layout's meaning (the copy is contiguous).
pub fn to(dev: &Device, t: &Tensor) -> Tensor {
    t.to_device(dev).unwrap()
}

/// Largest |a - b| / max(1, |b|) over two equal-length vectors: an absolute
/// difference for values up to 1, relative above (GPU `exp`, `log`... are exact to
/// a few ulp of the result, not to an absolute bound). NaN when one side has NaN
/// where the other does not.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            if x.is_nan() && y.is_nan() || x == y {
                0.0
            } else {
                (x - y).abs() / y.abs().max(1.0)
            }
        })
        .fold(0.0f32, |m, d| if d.is_nan() { f32::NAN } else { m.max(d) })
}

/// Assert the GPU result `g` matches the CPU result `c` in shape and within `tol`.
pub fn assert_close(what: &str, g: &Tensor, c: &Tensor, tol: f32) {
    assert_eq!(g.dims(), c.dims(), "{what}: shape");
    assert!(g.is_gpu(), "{what}: result left the GPU");
    let (gv, cv) = (g.to_vec().unwrap(), c.to_vec().unwrap());
    let d = max_diff(&gv, &cv);
    assert!(d <= tol, "{what}: max abs diff {d} > {tol}");
}

/// `t` on `dev` with the same layout (permuted, sliced or broadcast views stay
/// views): its whole storage buffer is uploaded and viewed through `t`'s layout.
pub fn same_layout(dev: &Device, t: &Tensor) -> Tensor {
    let Device::Wgpu(w) = dev else {
        panic!("not a wgpu device")
    };
    let buf = tensor::wgpu::buffer::upload(w, t.cpu_storage().unwrap()).unwrap();
    Tensor::from_storage(
        std::sync::Arc::new(tensor::Storage::Wgpu(buf)),
        t.layout().clone(),
    )
    .unwrap()
}
