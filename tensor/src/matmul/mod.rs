//! Matrix multiplication (lesson `lessons/01-matmul`).
//!
//! `gemm` is the one entry point every other kernel (conv2d, attention, linear layers)
//! calls: C (m x n, contiguous, overwritten) = A (m x k) * B (k x n), where A and B are
//! read through [`MatRef`]s with arbitrary row and column strides.

/// A read-only strided view of a matrix: element `(i, j)` is
/// `data[offset + i * row_stride + j * col_stride]`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl MatRef<'_> {
    /// Element `(i, j)`.
    #[inline(always)]
    pub fn at(&self, i: usize, j: usize) -> f32 {
        self.data[self.offset + i * self.row_stride + j * self.col_stride]
    }
}

/// C = A * B with `c` a contiguous row-major `a.rows x b.cols` buffer (overwritten).
/// Callers guarantee `a.cols == b.rows` and `c.len() == a.rows * b.cols`.
pub fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    // Placeholder until the ladder lands: the plain triple loop.
    let n = b.cols;
    for i in 0..a.rows {
        for j in 0..n {
            let mut acc = 0.0f32;
            for p in 0..a.cols {
                acc += a.at(i, p) * b.at(p, j);
            }
            c[i * n + j] = acc;
        }
    }
}
