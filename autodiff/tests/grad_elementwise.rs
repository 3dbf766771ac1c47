//! Gradient checks (central differences, see `common`) for the elementwise ops:
//! broadcasting binary ops, ops with a scalar, and every activation, over random
//! shapes and leaf layouts (permuted, sliced, broadcast). The same derivative
//! kernels on wgpu: `wgpu_grad.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use autodiff::Var;
use common::*;
use proptest::prelude::*;
use tensor::Tensor;

type Binary = fn(&Var, &Var) -> autodiff::Result<Var>;
type Unary = fn(&Var) -> autodiff::Result<Var>;

fn check_binary(name: &str, op: Binary, a: Tensor, b: Tensor) {
    check_gradients(name, &[a, b], |v| op(&v[0], &v[1]));
}

fn check_unary(name: &str, op: Unary, x: Tensor) {
    check_gradients(name, &[x], |v| op(&v[0]));
}

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn add_sub_mul_broadcast((a, b) in broadcast_pair(4, 4)) {
        check_binary("add", Var::add, a.clone(), b.clone());
        check_binary("sub", Var::sub, a.clone(), b.clone());
        check_binary("mul", Var::mul, a, b);
    }

    #[test]
    fn div_broadcast((a, b) in broadcast_pair(4, 4)) {
        check_binary("div", Var::div, a, map_storage(&b, positive));
    }

    #[test]
    fn pow_broadcast((a, b) in broadcast_pair(3, 4)) {
        check_binary("pow", Var::pow, map_storage(&a, positive), b);
    }

    #[test]
    fn smooth_activations(x in any_leaf0(0, 4, 4)) {
        let ops: [(&str, Unary); 10] = [
            ("neg", Var::neg),
            ("exp", Var::exp),
            ("tanh", Var::tanh),
            ("sigmoid", Var::sigmoid),
            ("silu", Var::silu),
            ("gelu", Var::gelu),
            ("quick_gelu", Var::quick_gelu),
            ("sqr", Var::sqr),
            ("sin", Var::sin),
            ("cos", Var::cos),
        ];
        for (name, op) in ops {
            check_unary(name, op, map_storage(&x, |v| 3.0 * v));
        }
    }

    #[test]
    fn positive_domain(x in any_leaf(0, 4, 4)) {
        let x = map_storage(&x, positive);
        check_unary("log", Var::log, x.clone());
        check_unary("sqrt", Var::sqrt, x.clone());
        check_unary("recip", Var::recip, x);
    }

    #[test]
    fn kinks_away_from_zero(x in any_leaf(0, 4, 4)) {
        let x = map_storage(&x, away_from_zero);
        check_unary("relu", Var::relu, x.clone());
        check_unary("abs", Var::abs, x.clone());
        // One kink, at 0 (the values stay below 5): both sides of it.
        check_gradients("clamp", &[x], |v| v[0].clamp(0.0, 5.0));
    }

    #[test]
    fn scalar_ops(x in any_leaf(0, 4, 4), c in -2.0f32..2.0, e in prop_oneof![Just(2.0f32), Just(3.0), Just(0.5), Just(-0.5), Just(-1.0), Just(-2.0), Just(1.7), Just(0.0)]) {
        check_gradients("add_scalar", std::slice::from_ref(&x), |v| v[0].add_scalar(c));
        check_gradients("mul_scalar", std::slice::from_ref(&x), |v| v[0].mul_scalar(c));
        check_gradients("affine", std::slice::from_ref(&x), |v| v[0].affine(c, 0.5));
        check_gradients("powf", &[map_storage(&x, positive)], |v| v[0].powf(e));
    }
}

/// GELU's derivative at known points: Phi(x) + x phi(x).
#[test]
fn gelu_derivative_values() {
    let x = Var::leaf(Tensor::from_vec(vec![0.0, 1.0, -1.0], [3]).unwrap());
    let g = x.gelu().unwrap().sum_all().unwrap().backward().unwrap();
    let got = g.get(&x).unwrap().to_vec().unwrap();
    // Phi(1) + phi(1) = 0.8413447 + 0.2419707; Phi(-1) - phi(-1) = 0.1586553 - 0.2419707.
    let want = [0.5, 1.083_315_4, -0.083_315_4];
    for (a, b) in got.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "got {got:?}");
    }
}

/// relu and abs have gradient 0 at exactly 0, as PyTorch.
#[test]
fn kinks_at_zero_give_zero() {
    let x = Var::leaf(Tensor::from_vec(vec![0.0, 2.0, -2.0], [3]).unwrap());
    let y = x.relu().unwrap().add(&x.abs().unwrap()).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![0.0, 2.0, -1.0]);
}

/// clamp passes the gradient inside its bounds and at them (as PyTorch), and
/// blocks it outside.
#[test]
fn clamp_gradient_at_and_beyond_its_bounds() {
    let x = Var::leaf(Tensor::from_vec(vec![-1.0, -0.5, 0.2, 0.5, 3.0], [5]).unwrap());
    let y = x.clamp(-0.5, 0.5).unwrap();
    assert_eq!(y.value().to_vec().unwrap(), vec![-0.5, -0.5, 0.2, 0.5, 0.5]);
    let g = y
        .mul_scalar(3.0)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert_eq!(
        g.get(&x).unwrap().to_vec().unwrap(),
        vec![0.0, 3.0, 3.0, 3.0, 0.0]
    );
}

/// A scalar (rank 0) operand broadcast against a matrix gets the sum of the
/// gradient; an operand broadcast along one dim gets that dim summed.
#[test]
fn broadcast_gradients_are_summed_back() {
    let m = Var::leaf(
        Tensor::arange(0.0, 6.0, 1.0)
            .unwrap()
            .reshape([2, 3])
            .unwrap(),
    );
    let s = Var::leaf(Tensor::scalar(2.0));
    let col = Var::leaf(Tensor::from_vec(vec![1.0, 10.0], [2, 1]).unwrap());
    let y = m.mul(&s).unwrap().add(&col).unwrap().sum_all().unwrap();
    let g = y.backward().unwrap();
    assert_eq!(g.get(&s).unwrap().to_vec().unwrap(), vec![15.0]);
    assert_eq!(g.get(&s).unwrap().dims(), &[] as &[usize]);
    assert_eq!(g.get(&col).unwrap().to_vec().unwrap(), vec![3.0, 3.0]);
    assert_eq!(g.get(&m).unwrap().to_vec().unwrap(), vec![2.0; 6]);
}
