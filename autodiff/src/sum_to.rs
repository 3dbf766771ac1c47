//! `sum_to`: the backward of broadcasting.
//!
//! When `a: (3, 1)` and `b: (4,)` meet in `a + b: (3, 4)`, each element of `a` was
//! used 4 times and each element of `b` 3 times, so the gradient of `a` is the
//! output gradient summed over the dim it was broadcast along, and `b`'s is summed
//! over the dim that was added in front. `sum_to(grad, dims)` does this for any
//! NumPy broadcast: it sums (keepdim) over the leading dims `dims` lacks and over
//! the dims where `dims` has 1 and `grad` does not, then reshapes to `dims`.
//!
//! ```
//! use autodiff::sum_to;
//! use tensor::Tensor;
//! let g = Tensor::arange(0.0, 6.0, 1.0).unwrap().reshape([2, 3]).unwrap();
//! assert_eq!(sum_to(&g, &[3]).unwrap().to_vec().unwrap(), vec![3.0, 5.0, 7.0]);
//! assert_eq!(sum_to(&g, &[2, 1]).unwrap().to_vec().unwrap(), vec![3.0, 12.0]);
//! assert_eq!(sum_to(&g, &[]).unwrap().to_scalar().unwrap(), 15.0);
//! ```

use tensor::{Result, Tensor, TensorError};

/// Sum `grad` down to `dims`, the shape of an operand that broadcast to `grad`'s
/// shape; errors if `dims` does not broadcast to it.
pub fn sum_to(grad: &Tensor, dims: &[usize]) -> Result<Tensor> {
    let gd = grad.dims();
    if gd == dims {
        return Ok(grad.clone());
    }
    let bad = || TensorError::Broadcast {
        op: "sum_to",
        lhs: dims.to_vec(),
        rhs: gd.to_vec(),
    };
    if dims.len() > gd.len() {
        return Err(bad());
    }
    let lead = gd.len() - dims.len();
    let mut axes: Vec<isize> = (0..lead as isize).collect();
    for (i, &d) in dims.iter().enumerate() {
        let g = gd[lead + i];
        if d == g {
            continue;
        }
        if d != 1 {
            return Err(bad());
        }
        axes.push((lead + i) as isize);
    }
    let summed = if axes.is_empty() {
        grad.clone()
    } else {
        grad.sum(&axes, true)?
    };
    summed.reshape(dims.to_vec())
}
