//! Matrix multiplication: C (m x n) = A (m x k) * B (k x n), as a ladder of kernels
//! (lesson `lessons/01-matmul`).
//!
//! Every rung has the same signature, `gemm(a: MatRef, b: MatRef, c: &mut [f32])`: A
//! and B are read through [`MatRef`]s with arbitrary row and column strides (so a
//! transposed or narrowed view needs no copy) and C is a contiguous row-major
//! `m x n` buffer that is overwritten. Each rung is tested against [`naive`]:
//!
//! 1. [`naive`]: the textbook triple loop over `i, j, p`.
//! 2. [`reorder`]: loop order `i, p, j`, so the inner loop walks a row of B and a row
//!    of C with unit stride and the compiler vectorises it.
//! 3. [`blocked`]: cache blocking: work on tiles of A, B and C that stay in cache.
//! 4. [`simd`]: pack panels of B (and, where it pays, of A) into contiguous slivers,
//!    then a register-blocked micro-kernel ([`kernels`]: AVX-512F 6 x 64 or 12 x 32,
//!    AVX2+FMA 6 x 16, or portable) computes a tile of C in registers.
//! 5. [`parallel`]: the SIMD rung with row blocks of C spread over rayon threads.
//!
//! [`gemm`] is the one entry point every other kernel (conv2d, attention, linear
//! layers) calls; it dispatches to the fastest correct rung for the problem size.
//! [`try_gemm`] is the same with its contract checked and reported as an error.
//! `Tensor::matmul` (in `tensor_op.rs`) builds batched, broadcast matmul on top.
//!
//! ```
//! use tensor::matmul::{gemm, MatRef};
//! // A = [[1, 2, 3], [4, 5, 6]] (2 x 3), B = A^T read through swapped strides (3 x 2).
//! let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
//! let am = MatRef::row_major(&a, 2, 3).unwrap();
//! let bt = am.t();
//! let mut c = [0.0; 4];
//! gemm(am, bt, &mut c);
//! assert_eq!(c, [14.0, 32.0, 32.0, 77.0]); // A A^T
//! ```

pub mod blocked;
pub mod kernels;
pub mod naive;
pub mod packed;
pub mod parallel;
pub mod reorder;
pub mod simd;
mod tensor_op;

use crate::error::{Result, TensorError};

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

impl<'a> MatRef<'a> {
    /// A strided view, checked to stay inside `data`.
    pub fn new(
        data: &'a [f32],
        offset: usize,
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Result<Self> {
        let m = MatRef {
            data,
            offset,
            rows,
            cols,
            row_stride,
            col_stride,
        };
        m.check("MatRef::new")?;
        Ok(m)
    }

    /// A contiguous row-major `rows x cols` matrix (`data.len()` must be `rows * cols`).
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Result<Self> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(TensorError::invalid(
                "MatRef::row_major",
                format!(
                    "{} elements do not fill a {rows} x {cols} matrix",
                    data.len()
                ),
            ));
        }
        Self::new(data, 0, rows, cols, cols, 1)
    }

    /// The transpose, as a view: rows and columns (and their strides) swap.
    pub fn t(self) -> Self {
        MatRef {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Rows `start..start + len`, as a view (`start + len <= rows`).
    pub fn rows_range(self, start: usize, len: usize) -> Self {
        debug_assert!(start + len <= self.rows);
        MatRef {
            offset: if len == 0 {
                self.offset
            } else {
                self.offset + start * self.row_stride
            },
            rows: len,
            ..self
        }
    }

    /// Columns `start..start + len`, as a view (`start + len <= cols`).
    pub fn cols_range(self, start: usize, len: usize) -> Self {
        self.t().rows_range(start, len).t()
    }

    /// Element `(i, j)`.
    #[inline(always)]
    pub fn at(&self, i: usize, j: usize) -> f32 {
        self.data[self.offset + i * self.row_stride + j * self.col_stride]
    }

    /// Row `i` as a slice when columns are adjacent (`col_stride == 1`).
    #[inline]
    pub fn row_slice(&self, i: usize) -> Option<&'a [f32]> {
        if self.col_stride == 1 || self.cols <= 1 {
            let start = self.offset + i * self.row_stride;
            self.data.get(start..start + self.cols)
        } else {
            None
        }
    }

    /// Check that every element lies inside `data` (no overflow, no out-of-bounds read).
    fn check(&self, op: &'static str) -> Result<()> {
        if self.rows == 0 || self.cols == 0 {
            return Ok(());
        }
        let last = (self.rows - 1)
            .checked_mul(self.row_stride)
            .zip((self.cols - 1).checked_mul(self.col_stride))
            .and_then(|(r, c)| r.checked_add(c))
            .and_then(|rc| rc.checked_add(self.offset));
        match last {
            Some(l) if l < self.data.len() => Ok(()),
            _ => Err(TensorError::invalid(
                op,
                format!(
                    "{} x {} view with offset {} and strides ({}, {}) reads past a buffer of {} elements",
                    self.rows,
                    self.cols,
                    self.offset,
                    self.row_stride,
                    self.col_stride,
                    self.data.len()
                ),
            )),
        }
    }
}

/// Check the gemm contract: inner dims agree, views stay in bounds, C has `m * n` slots.
pub fn check_gemm(a: &MatRef<'_>, b: &MatRef<'_>, c_len: usize) -> Result<()> {
    if a.cols != b.rows {
        return Err(TensorError::invalid(
            "gemm",
            format!(
                "inner dimensions differ: A is {} x {} but B is {} x {}",
                a.rows, a.cols, b.rows, b.cols
            ),
        ));
    }
    a.check("gemm (A)")?;
    b.check("gemm (B)")?;
    if a.rows.checked_mul(b.cols) != Some(c_len) {
        return Err(TensorError::invalid(
            "gemm",
            format!(
                "C has {c_len} elements, expected {} x {} = {}",
                a.rows,
                b.cols,
                a.rows.saturating_mul(b.cols)
            ),
        ));
    }
    Ok(())
}

/// Problems below this many multiply-adds (`m * n * k`) skip packing and use the
/// reordered loops; packing costs more than it saves on tiny matrices.
const SMALL_WORK: usize = 16 * 16 * 16;
/// Problems above this many multiply-adds are worth spreading over threads (measured:
/// at 64^3 waking a second thread costs more than it saves, at 128^3 it pays).
const PARALLEL_WORK: usize = 100 * 100 * 100;

/// C = A * B with `c` a contiguous row-major `a.rows x b.cols` buffer (overwritten),
/// using the fastest rung for the size: reordered loops for tiny problems, the packed
/// SIMD kernel, and the threaded one for large problems (a matrix-vector product is
/// computed as its transpose, so the vector runs along the kernel's wide side).
///
/// Callers guarantee the contract checked by [`check_gemm`] (`a.cols == b.rows`, both
/// views inside their buffers, `c.len() == a.rows * b.cols`). A violated contract is a
/// bug in the caller and panics on a bounds check (never undefined behaviour); call
/// [`try_gemm`] to get it as an error instead.
pub fn gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) {
    debug_assert!(check_gemm(&a, &b, c.len()).is_ok(), "gemm contract broken");
    if b.cols == 1 && a.rows > 1 {
        // A matrix times a vector: C (m x 1) has the same memory as C^T (1 x m), and
        // C^T = B^T A^T puts the long side along the micro-kernel's 16-wide rows.
        return gemm(b.t(), a.t(), c);
    }
    let work = a.rows.saturating_mul(b.cols).saturating_mul(a.cols);
    if work <= SMALL_WORK {
        reorder::gemm(a, b, c);
    } else if work >= PARALLEL_WORK && rayon::current_num_threads() > 1 {
        parallel::gemm(a, b, c);
    } else {
        simd::gemm(a, b, c);
    }
}

/// [`gemm`] with its contract checked first: a mismatch is an error, never a panic.
pub fn try_gemm(a: MatRef<'_>, b: MatRef<'_>, c: &mut [f32]) -> Result<()> {
    check_gemm(&a, &b, c.len())?;
    gemm(a, b, c);
    Ok(())
}
