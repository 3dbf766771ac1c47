//! Tensor ops. Elementwise maps and zips with NumPy broadcasting, reductions and
//! softmax (`unary`, `binary`, `reduce`, `softmax`) and the elementwise derivatives
//! autodiff records (`derivative`), the fused optimizer steps (`optim`); the layers diffusion models need
//! (`conv`, `pool`, `resize`, `concat`, `index`, `norm`), flash attention
//! (`attention`, with its materialising twin `attention_naive`), and the explicit
//! SIMD math behind the fused kernels (`vmath`, with its scalar twins in `special`).

pub mod act_slice;
pub mod attention;
pub mod attention_naive;
pub mod attention_tile;
pub mod bias_act;
pub mod binary;
pub mod concat;
pub mod conv;
pub mod conv_backward;
pub mod conv_batched;
pub mod conv_im2col;
pub mod conv_naive;
pub mod conv_nhwc;
pub mod conv_pack;
pub mod conv_taps;
pub mod derivative;
pub mod index;
pub mod index_add;
pub mod norm;
pub mod norm_naive;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod softmax;
pub mod special;
pub mod strided;
pub mod unary;
pub mod vmath;
#[cfg(target_arch = "x86_64")]
pub mod vmath_x86;
