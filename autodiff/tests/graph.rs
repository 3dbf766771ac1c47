//! The graph machinery: deep graphs without recursion, no_grad, accumulation of a
//! value used twice, freeing of consumed gradients, seeds, errors, detach, update.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use autodiff::{no_grad, AutodiffError, NoGradGuard, Var};
use tensor::Tensor;

fn vec1(v: &[f32]) -> Tensor {
    Tensor::from_slice(v, [v.len()]).unwrap()
}

/// 100k chained ops: a recursive topological sort or a recursive drop would
/// overflow the test thread's 2 MiB stack long before this.
#[test]
fn deep_chain_of_100k_ops() {
    let x = Var::leaf(Tensor::scalar(0.5));
    let mut y = x.clone();
    for i in 0..100_000 {
        // every 10_000th op doubles, the rest add 1: d/dx = 2^10 exactly in f32
        y = if i % 10_000 == 0 {
            y.mul_scalar(2.0).unwrap()
        } else {
            y.add_scalar(1.0).unwrap()
        };
    }
    let g = y.backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_scalar().unwrap(), 1024.0);
    assert_eq!(g.stats().nodes, 100_001);
    assert_eq!(g.stats().peak_live_grads, 1);
    drop(y); // frees 100k nodes iteratively
}

/// Under no_grad nothing is recorded: outputs are constants with no inputs, and
/// backward from them is an error. Recording comes back after the scope (and after
/// a guard drops), nested scopes restore the outer state.
#[test]
fn no_grad_records_nothing() {
    let w = Var::leaf(vec1(&[1.0, 2.0]));
    let y = no_grad(|| w.mul(&w).unwrap().exp().unwrap().sum_all().unwrap());
    assert!(!y.requires_grad());
    assert!(y.is_leaf() && y.op_name().is_none() && y.inputs().is_empty());
    assert!(matches!(y.backward(), Err(AutodiffError::NoGraph { .. })));
    assert!(autodiff::is_grad_enabled());
    {
        let _g = NoGradGuard::new();
        assert!(!autodiff::is_grad_enabled());
        no_grad(|| assert!(!autodiff::is_grad_enabled()));
        assert!(!autodiff::is_grad_enabled());
        assert!(!w.add(&w).unwrap().requires_grad());
    }
    assert!(autodiff::is_grad_enabled());
    let z = w.mul(&w).unwrap();
    assert_eq!(z.op_name(), Some("mul"));
    assert_eq!(z.inputs().len(), 2);
}

/// The grad mode is per thread.
#[test]
fn no_grad_is_thread_local() {
    let _g = NoGradGuard::new();
    let other = std::thread::spawn(autodiff::is_grad_enabled)
        .join()
        .unwrap();
    assert!(other);
    assert!(!autodiff::is_grad_enabled());
}

/// A value used by several ops gets the sum of their gradients.
#[test]
fn a_value_used_twice_accumulates() {
    let x = Var::leaf(vec1(&[3.0, -1.0]));
    // x * x: both inputs of one op are x -> 2x
    let g = x.mul(&x).unwrap().sum_all().unwrap().backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![6.0, -2.0]);
    // y = 2x used by two branches: L = sum(y) + sum(y * y) -> dL/dx = 2 + 8x
    let y = x.mul_scalar(2.0).unwrap();
    let l = y
        .sum_all()
        .unwrap()
        .add(&y.mul(&y).unwrap().sum_all().unwrap())
        .unwrap();
    let g = l.backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![26.0, -6.0]);
}

/// Gradients are freed once passed on: a wide fan-in holds one pending gradient per
/// live branch, and only leaves end up in Grads.
#[test]
fn intermediate_gradients_are_freed() {
    let x = Var::leaf(vec1(&[1.0, 2.0, 3.0]));
    // Ten branches, each a chain of 50 ops, summed. The search visits one branch
    // to its end before the next, so in reverse order each branch is finished
    // before the next starts: at most the sum's inputs plus one chain are live.
    let mut total: Option<Var> = None;
    for b in 0..10 {
        let mut y = x.clone();
        for _ in 0..50 {
            y = y.add_scalar(b as f32).unwrap();
        }
        total = Some(match total {
            Some(t) => t.add(&y).unwrap(),
            None => y,
        });
    }
    let loss = total.unwrap().sum_all().unwrap();
    let g = loss.backward().unwrap();
    assert_eq!(g.len(), 1, "only the leaf keeps a gradient");
    assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![10.0; 3]);
    assert_eq!(g.stats().nodes, 1 + 1 + 9 + 10 * 50);
    assert!(g.stats().peak_live_grads <= 12, "{:?}", g.stats());
}

/// The graph is not consumed: backward twice gives the same gradients.
#[test]
fn backward_twice_gives_the_same() {
    let x = Var::leaf(vec1(&[0.5, 1.5]));
    let l = x.exp().unwrap().sum_all().unwrap();
    let a = l.backward().unwrap().get(&x).unwrap().to_vec().unwrap();
    let b = l.backward().unwrap().get(&x).unwrap().to_vec().unwrap();
    assert_eq!(a, b);
}

/// A non-scalar output needs a seed; the seed gives a vector-Jacobian product.
#[test]
fn seeds_and_their_errors() {
    let x = Var::leaf(vec1(&[1.0, 2.0]));
    let y = x.mul_scalar(3.0).unwrap();
    assert!(matches!(
        y.backward(),
        Err(AutodiffError::NonScalarBackward { ref shape }) if shape == &[2]
    ));
    let err = y.backward_with_grad(&vec1(&[1.0])).unwrap_err();
    assert!(matches!(err, AutodiffError::SeedShape { .. }), "{err}");
    let g = y.backward_with_grad(&vec1(&[1.0, -2.0])).unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![3.0, -6.0]);
    assert!(Var::constant(Tensor::scalar(1.0)).backward().is_err());
}

/// Op errors from the tensor crate come through with the op named.
#[test]
fn tensor_errors_are_wrapped() {
    let a = Var::leaf(vec1(&[1.0, 2.0]));
    let b = Var::leaf(vec1(&[1.0, 2.0, 3.0]));
    let err = a.add(&b).unwrap_err();
    assert!(matches!(err, AutodiffError::Tensor(_)));
    assert!(err.to_string().contains("add"), "{err}");
}

/// detach stops gradients; constants get none; a leaf that is not used gets none.
#[test]
fn detach_and_constants() {
    let x = Var::leaf(vec1(&[2.0]));
    let unused = Var::leaf(vec1(&[5.0]));
    let c = Var::constant(vec1(&[4.0]));
    let l = x
        .mul(&x.detach())
        .unwrap()
        .mul(&c)
        .unwrap()
        .sum_all()
        .unwrap();
    let g = l.backward().unwrap();
    assert_eq!(g.get(&x).unwrap().to_vec().unwrap(), vec![8.0]); // c * detached x
    assert!(g.get(&c).is_none());
    assert!(g.get(&unused).is_none());
}

/// update: a new leaf with the same id (an optimizer step), shape checked.
#[test]
fn update_keeps_the_id() {
    let w = Var::leaf(vec1(&[1.0, 2.0]));
    let w2 = w.update(vec1(&[0.5, 1.5])).unwrap();
    assert_eq!(w.id(), w2.id());
    assert!(w2.requires_grad() && w2.is_leaf());
    let g = w2.sum_all().unwrap().backward().unwrap();
    assert!(g.get(&w).is_some(), "grads are found by id");
    assert!(w.update(vec1(&[1.0])).is_err());
    assert!(w
        .mul_scalar(2.0)
        .unwrap()
        .update(vec1(&[1.0, 2.0]))
        .is_err());
}

/// Leaves' gradients are contiguous even when the last op gave a view (a broadcast).
#[test]
fn leaf_gradients_are_contiguous() {
    let x = Var::leaf(vec1(&[1.0, 2.0, 3.0]));
    let g = x.sum_all().unwrap().backward().unwrap();
    let gx = g.get(&x).unwrap();
    assert!(gx.is_contiguous());
    assert_eq!(gx.to_vec().unwrap(), vec![1.0; 3]);
}

/// A Var can be sent to and shared with other threads (data loaders, optimizers).
#[test]
fn var_and_grads_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Var>();
    assert_send_sync::<autodiff::Grads>();
}
