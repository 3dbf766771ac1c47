//! 2-d convolution and its backward.
//!
//! `x: (N, C, H, W)` (or unbatched `(C, H, W)`), `weight: (O, C/groups, kh, kw)`,
//! `bias: (O,)` -> `(N, O, H', W')`. With `dy` the output gradient:
//!
//! - `dx` is the transposed convolution of `dy` with the same weight
//!   ([`tensor::Tensor::conv2d_backward_input`]: `W^T dy`, then col2im);
//! - `dW` correlates the input with `dy` ([`tensor::Tensor::conv2d_backward_weight`]:
//!   `dy col^T` summed over images);
//! - `db` is `dy` summed over images and pixels.
//!
//! ```
//! use autodiff::Var;
//! use tensor::Tensor;
//! let x = Var::leaf(Tensor::arange(0.0, 9.0, 1.0).unwrap().reshape([1, 1, 3, 3]).unwrap());
//! let w = Var::leaf(Tensor::ones([1, 1, 2, 2]));
//! let b = Var::leaf(Tensor::zeros([1]));
//! let y = x.conv2d(&w, Some(&b), (1, 1), (0, 0), (1, 1), 1).unwrap(); // (1, 1, 2, 2)
//! let g = y.sum_all().unwrap().backward().unwrap();
//! assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0]);
//! assert_eq!(g.get(&w).unwrap().to_vec().unwrap(), vec![8.0, 12.0, 20.0, 24.0]);
//! assert_eq!(g.get(&b).unwrap().to_vec().unwrap(), vec![4.0]);
//! ```

use crate::error::Result;
use crate::var::{grad_if, record, Var};

impl Var {
    /// 2-d convolution (`torch.nn.functional.conv2d`).
    #[allow(clippy::too_many_arguments)]
    pub fn conv2d(
        &self,
        weight: &Var,
        bias: Option<&Var>,
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Var> {
        if self.rank() == 3 {
            return self
                .unsqueeze(0)?
                .conv2d(weight, bias, stride, padding, dilation, groups)?
                .squeeze(0);
        }
        let (x, w) = (self.value().clone(), weight.value().clone());
        let y = x.conv2d(&w, bias.map(Var::value), stride, padding, dilation, groups)?;
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        Ok(record("conv2d", y, &inputs, move |g, need| {
            let (h, wd) = (x.dims()[2], x.dims()[3]);
            let kernel = (w.dims()[2], w.dims()[3]);
            let mut grads = vec![
                grad_if(need[0], || {
                    g.conv2d_backward_input(&w, (h, wd), stride, padding, dilation, groups)
                })?,
                grad_if(need[1], || {
                    x.conv2d_backward_weight(g, kernel, stride, padding, dilation, groups)
                })?,
            ];
            if need.len() > 2 {
                grads.push(grad_if(need[2], || g.sum(&[0, 2, 3], false))?);
            }
            Ok(grads)
        }))
    }
}
