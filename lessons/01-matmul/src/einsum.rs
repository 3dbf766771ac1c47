//! A tiny einsum for two matrices: `einsum("ik,kj->ij", a, b)` is the matrix product.
//!
//! Einstein notation names every axis with a letter. Letters shared by the inputs are
//! multiplied together; letters missing from the output are summed over. The course
//! first writes `einsum('ik,kj->ikj')` (every product `a[i,k] * b[k,j]`, nothing
//! summed) and sums over `k` by hand, then lets einsum do the sum with `'ik,kj->ij'`.
//!
//! This version is the definition, run literally: an odometer walks every combination
//! of the letters' values (in the order they first appear, here `i, k, j`) and adds
//! each product into the output element its output letters pick.

use tensor::{Result, TensorError};

use crate::matrix::Matrix;

/// The result of [`einsum`]: its dims (one per output letter) and row-major values.
#[derive(Clone, Debug, PartialEq)]
pub struct EinsumOut {
    pub dims: Vec<usize>,
    pub data: Vec<f32>,
}

fn err(msg: String) -> TensorError {
    TensorError::invalid("einsum", msg)
}

/// Evaluate `spec` ("ab,cd->out", one letter per axis) on two matrices.
pub fn einsum(spec: &str, a: &Matrix, b: &Matrix) -> Result<EinsumOut> {
    let (inputs, output) = spec
        .split_once("->")
        .ok_or_else(|| err(format!("{spec:?} has no '->'")))?;
    let (la, lb) = inputs
        .split_once(',')
        .ok_or_else(|| err(format!("{spec:?} needs two inputs separated by ','")))?;
    let (la, lb, lo): (Vec<char>, Vec<char>, Vec<char>) = (
        la.trim().chars().collect(),
        lb.trim().chars().collect(),
        output.trim().chars().collect(),
    );
    if la.len() != 2 || lb.len() != 2 {
        return Err(err(format!(
            "{spec:?}: each input is a matrix, so needs 2 letters"
        )));
    }
    // Every letter once, in order of first appearance, with its size; `slot[n]` is
    // the letter of input axis n (a's two axes, then b's).
    let mut letters: Vec<(char, usize)> = Vec::new();
    let mut slot = [0usize; 4];
    let sizes = [a.n_rows(), a.n_cols(), b.n_rows(), b.n_cols()];
    for (n, (&c, &size)) in la.iter().chain(&lb).zip(&sizes).enumerate() {
        match letters.iter().position(|(l, _)| *l == c) {
            Some(p) if letters[p].1 != size => {
                return Err(err(format!(
                    "{spec:?}: letter '{c}' has size {} and {size} (shapes {:?} and {:?})",
                    letters[p].1,
                    a.shape(),
                    b.shape()
                )))
            }
            Some(p) => slot[n] = p,
            None => {
                slot[n] = letters.len();
                letters.push((c, size));
            }
        }
    }
    let pos = |c: char| letters.iter().position(|(l, _)| *l == c);
    let out_pos: Vec<usize> = lo
        .iter()
        .map(|&c| {
            pos(c).ok_or_else(|| err(format!("{spec:?}: output letter '{c}' is in no input")))
        })
        .collect::<Result<_>>()?;
    if (1..out_pos.len()).any(|i| out_pos[..i].contains(&out_pos[i])) {
        return Err(err(format!("{spec:?}: an output letter repeats")));
    }
    let [a0, a1, b0, b1] = slot;

    let dims: Vec<usize> = out_pos.iter().map(|&p| letters[p].1).collect();
    let mut data = vec![0.0f32; dims.iter().product()];
    let total: usize = letters.iter().map(|(_, s)| s).product();
    let mut idx = vec![0usize; letters.len()];
    for _ in 0..total {
        let v = a[(idx[a0], idx[a1])] * b[(idx[b0], idx[b1])];
        let o = out_pos
            .iter()
            .fold(0, |acc, &p| acc * letters[p].1 + idx[p]);
        data[o] += v;
        // Odometer: the last letter turns fastest.
        for d in (0..idx.len()).rev() {
            idx[d] += 1;
            if idx[d] < letters[d].1 {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(EinsumOut { dims, data })
}
