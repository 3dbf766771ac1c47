//! A matrix from scratch, as the course's first notebook builds it: a list of rows
//! (`Vec<Vec<f32>>`) and an index operator taking `(row, col)`.
//!
//! The course writes `class Matrix: def __getitem__(self, idxs): return
//! self.xs[idxs[0]][idxs[1]]`; in Rust the same is `impl Index<(usize, usize)>`, so
//! `m[(20, 15)]` reads row 20, column 15.

use std::ops::{Index, IndexMut};

use tensor::{Result, TensorError};

/// A dense matrix stored as a list of equally long rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    rows: Vec<Vec<f32>>,
    cols: usize,
}

impl Matrix {
    /// A matrix from its rows; every row must have the same length.
    pub fn from_rows(rows: Vec<Vec<f32>>) -> Result<Matrix> {
        let cols = rows.first().map_or(0, Vec::len);
        if let Some((i, r)) = rows.iter().enumerate().find(|(_, r)| r.len() != cols) {
            return Err(TensorError::invalid(
                "Matrix::from_rows",
                format!("row {i} has {} values, row 0 has {cols}", r.len()),
            ));
        }
        Ok(Matrix { rows, cols })
    }

    /// `rows x cols` zeros.
    pub fn zeros(rows: usize, cols: usize) -> Matrix {
        Matrix {
            rows: vec![vec![0.0; cols]; rows],
            cols,
        }
    }

    /// A matrix from row-major values (`data.len()` must be `rows * cols`).
    pub fn from_flat(rows: usize, cols: usize, data: &[f32]) -> Result<Matrix> {
        if rows.checked_mul(cols) != Some(data.len()) {
            return Err(TensorError::invalid(
                "Matrix::from_flat",
                format!("{} values do not fill a {rows} x {cols} matrix", data.len()),
            ));
        }
        if cols == 0 {
            return Ok(Matrix::zeros(rows, 0));
        }
        Ok(Matrix {
            rows: data.chunks(cols).map(<[f32]>::to_vec).collect(),
            cols,
        })
    }

    /// Uniform values in `[-1, 1)` from a tiny xorshift generator (lesson 02 builds
    /// proper generators; here any fixed pseudo-random fill will do).
    pub fn random(rows: usize, cols: usize, seed: u64) -> Matrix {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        Matrix {
            rows: (0..rows)
                .map(|_| (0..cols).map(|_| next()).collect())
                .collect(),
            cols,
        }
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.rows.len()
    }

    /// Number of columns.
    pub fn n_cols(&self) -> usize {
        self.cols
    }

    /// `(rows, cols)`, like the course's `.shape`.
    pub fn shape(&self) -> (usize, usize) {
        (self.rows.len(), self.cols)
    }

    /// Row `i` (the course's `a[i, :]`).
    pub fn row(&self, i: usize) -> &[f32] {
        &self.rows[i]
    }

    /// Row `i`, mutable.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        &mut self.rows[i]
    }

    /// Column `j` (the course's `a[:, j]`), read one row at a time.
    pub fn col(&self, j: usize) -> impl Iterator<Item = f32> + '_ {
        self.rows.iter().map(move |r| r[j])
    }

    /// Element `(i, j)`, or `None` outside the matrix.
    pub fn get(&self, i: usize, j: usize) -> Option<f32> {
        self.rows.get(i).and_then(|r| r.get(j)).copied()
    }

    /// The values in row-major order, one flat buffer (the layout the library uses;
    /// lesson 03 explains why).
    pub fn to_flat(&self) -> Vec<f32> {
        self.rows.concat()
    }
}

/// `m[(i, j)]` is row `i`, column `j`; out of range panics, as `Vec` indexing does
/// (use [`Matrix::get`] to get an `Option`).
impl Index<(usize, usize)> for Matrix {
    type Output = f32;
    fn index(&self, (i, j): (usize, usize)) -> &f32 {
        &self.rows[i][j]
    }
}

impl IndexMut<(usize, usize)> for Matrix {
    fn index_mut(&mut self, (i, j): (usize, usize)) -> &mut f32 {
        &mut self.rows[i][j]
    }
}
