//! Tensor ops. Elementwise maps and zips with NumPy broadcasting, reductions and
//! softmax (`unary`, `binary`, `reduce`, `softmax`); the layers diffusion models need
//! (`conv`, `pool`, `resize`, `concat`, `index`, `norm`).

pub mod binary;
pub mod concat;
pub mod conv;
pub mod conv_im2col;
pub mod conv_naive;
pub mod conv_pack;
pub mod index;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod softmax;
pub mod strided;
pub mod unary;
