//! The matmul ladder of the course, from three loops to the library's fastest rung.
//!
//! The first four are the notebook's versions, on the from-scratch [`Matrix`]; each
//! replaces the innermost loop of the previous one with a bigger operation. The last
//! ones call the library (`tensor/src/matmul/`) on the same values in one flat buffer.
//! Every version returns exactly the product, and the claims check each against
//! [`matmul_loops`].

use tensor::matmul::{self, MatRef};
use tensor::{Result, Tensor, TensorError};

use crate::einsum::einsum;
use crate::matrix::Matrix;

fn check(a: &Matrix, b: &Matrix) -> Result<()> {
    if a.n_cols() != b.n_rows() {
        return Err(TensorError::invalid(
            "matmul",
            format!("inner dimensions differ: {:?} @ {:?}", a.shape(), b.shape()),
        ));
    }
    Ok(())
}

/// Version 1, three loops: `c[i,j] += a[i,k] * b[k,j]` (the notebook's first matmul).
pub fn matmul_loops(a: &Matrix, b: &Matrix) -> Result<Matrix> {
    check(a, b)?;
    let (ar, ac) = a.shape();
    let bc = b.n_cols();
    let mut c = Matrix::zeros(ar, bc);
    for i in 0..ar {
        for j in 0..bc {
            for k in 0..ac {
                c[(i, j)] += a[(i, k)] * b[(k, j)];
            }
        }
    }
    Ok(c)
}

/// `sum_k x[k] * y[k]`, added in order `k = 0, 1, ..` starting from 0.
pub fn dot(x: impl Iterator<Item = f32>, y: impl Iterator<Item = f32>) -> f32 {
    x.zip(y).fold(0.0, |acc, (u, v)| acc + u * v)
}

/// Version 2, elementwise: the innermost loop becomes one operation on whole rows
/// and columns, the course's `(a[i,:] * b[:,j]).sum()`.
pub fn matmul_elementwise(a: &Matrix, b: &Matrix) -> Result<Matrix> {
    check(a, b)?;
    let mut c = Matrix::zeros(a.n_rows(), b.n_cols());
    for i in 0..a.n_rows() {
        for j in 0..b.n_cols() {
            c[(i, j)] = dot(a.row(i).iter().copied(), b.col(j));
        }
    }
    Ok(c)
}

/// `col[:, None] * m`: row `k` of `m` times `col[k]`. The column vector is
/// *broadcast* across `m`'s columns, as NumPy and PyTorch do for shapes `(K, 1)` and
/// `(K, N)`.
pub fn broadcast_mul(col: &[f32], m: &Matrix) -> Matrix {
    let mut out = m.clone();
    for (k, &s) in col.iter().enumerate().take(m.n_rows()) {
        for v in out.row_mut(k) {
            *v *= s;
        }
    }
    out
}

/// `m.sum(dim=0)`: add the rows together (in order, starting from zeros).
pub fn sum_rows(m: &Matrix) -> Vec<f32> {
    let mut acc = vec![0.0f32; m.n_cols()];
    for k in 0..m.n_rows() {
        for (s, &v) in acc.iter_mut().zip(m.row(k)) {
            *s += v;
        }
    }
    acc
}

/// Version 3, broadcasting: a whole row of C at once, the course's
/// `c[i] = (a[i,:,None] * b).sum(dim=0)`. Two loops are gone.
pub fn matmul_broadcast(a: &Matrix, b: &Matrix) -> Result<Matrix> {
    check(a, b)?;
    let mut c = Matrix::zeros(a.n_rows(), b.n_cols());
    for i in 0..a.n_rows() {
        let row = sum_rows(&broadcast_mul(a.row(i), b));
        c.row_mut(i).copy_from_slice(&row);
    }
    Ok(c)
}

/// Version 4, einsum: `einsum("ik,kj->ij", a, b)`. No loop left in sight.
pub fn matmul_einsum(a: &Matrix, b: &Matrix) -> Result<Matrix> {
    check(a, b)?;
    let out = einsum("ik,kj->ij", a, b)?;
    Matrix::from_flat(a.n_rows(), b.n_cols(), &out.data)
}

/// A library rung: `gemm(a, b, c)` on flat row-major buffers (`tensor::matmul`).
pub type Rung = fn(MatRef<'_>, MatRef<'_>, &mut [f32]);

/// The library's rungs with their names, slowest first.
pub const LIBRARY_RUNGS: [(&str, Rung); 5] = [
    ("naive (i,j,p loops)", matmul::naive::gemm),
    ("reorder (i,p,j loops)", matmul::reorder::gemm),
    ("blocked (cache tiles)", matmul::blocked::gemm),
    ("simd (packed, best kernel)", matmul::simd::gemm),
    ("parallel (simd + rayon)", matmul::parallel::gemm),
];

/// Multiply with a library rung: copy both matrices into flat buffers, run it, and
/// turn C back into a [`Matrix`].
pub fn matmul_with(rung: Rung, a: &Matrix, b: &Matrix) -> Result<Matrix> {
    check(a, b)?;
    let (af, bf) = (a.to_flat(), b.to_flat());
    let am = MatRef::row_major(&af, a.n_rows(), a.n_cols())?;
    let bm = MatRef::row_major(&bf, b.n_rows(), b.n_cols())?;
    let mut c = vec![0.0f32; a.n_rows() * b.n_cols()];
    matmul::check_gemm(&am, &bm, c.len())?;
    rung(am, bm, &mut c);
    Matrix::from_flat(a.n_rows(), b.n_cols(), &c)
}

/// Version 5: the library's cache-blocked loops (`tensor/src/matmul/blocked.rs`).
pub fn matmul_blocked(a: &Matrix, b: &Matrix) -> Result<Matrix> {
    matmul_with(matmul::blocked::gemm, a, b)
}

/// Version 6: packing + SIMD micro-kernel (`tensor/src/matmul/simd.rs`).
pub fn matmul_simd(a: &Matrix, b: &Matrix) -> Result<Matrix> {
    matmul_with(matmul::simd::gemm, a, b)
}

/// Version 7: the SIMD rung on every core (`tensor/src/matmul/parallel.rs`).
pub fn matmul_parallel(a: &Matrix, b: &Matrix) -> Result<Matrix> {
    matmul_with(matmul::parallel::gemm, a, b)
}

/// The user-facing op: `Tensor::matmul` (`tensor/src/matmul/tensor_op.rs`), the
/// course's `a @ b`.
pub fn matmul_tensor(a: &Matrix, b: &Matrix) -> Result<Matrix> {
    let at = Tensor::from_vec(a.to_flat(), [a.n_rows(), a.n_cols()])?;
    let bt = Tensor::from_vec(b.to_flat(), [b.n_rows(), b.n_cols()])?;
    let c = at.matmul(&bt)?;
    Matrix::from_flat(a.n_rows(), b.n_cols(), &c.to_vec()?)
}
