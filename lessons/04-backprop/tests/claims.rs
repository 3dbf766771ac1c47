//! One test per numbered claim of lessons/04-backprop/README.md.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use autodiff::Var;
use lesson_04_backprop::layers::{Layer, Lin, Model, Mse, Relu};
use lesson_04_backprop::scalar::{micrograd_example, mlp_loss, Value};
use lesson_04_backprop::{
    central_differences_f32, hand, library_forward_and_backward, max_abs_diff, to_f64, Flat, Grads,
    Problem, NAMES,
};
use tensor::random::TorchGenerator;
use tensor::Tensor;

fn problem() -> Problem {
    Problem::synthetic(64, 5, 8, 42).unwrap()
}

fn f64s(g: &Grads) -> Vec<Vec<f64>> {
    g.tensors().iter().map(|t| to_f64(t).unwrap()).collect()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec().unwrap().iter().map(|v| v.to_bits()).collect()
}

/// The largest |hand - central difference (f64, eps 1e-6)| over the five tensors.
fn worst_fd64_error(p: &Problem, grads: &Grads) -> f64 {
    let flat = Flat::from_problem(p).unwrap();
    let g = f64s(grads);
    (0..5)
        .map(|part| max_abs_diff(&g[part], &flat.central_differences(part, 1e-6)))
        .fold(0.0, f64::max)
}

#[test]
fn claim_1_hand_gradients_equal_finite_differences() {
    let p = problem();
    let (loss, grads) = hand::forward_and_backward(&p).unwrap();
    // PyTorch with the same seed and code: loss 2.2672793865, w2.grad[:4] below.
    assert!((loss - 2.267_279_4).abs() < 1e-5, "{loss}");
    let torch_w2g = [-0.534_951_45, -1.575_807_8, -0.075_420_655, -1.105_102_4];
    let w2g = grads.w2.to_vec().unwrap();
    for (a, b) in w2g.iter().zip(torch_w2g) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    // Every gradient within 1e-6 of central differences in f64 (measured <= 2.2e-7:
    // the f32 rounding of gradients up to 2.9 in size).
    let flat = Flat::from_problem(&p).unwrap();
    assert!((flat.loss() - f64::from(loss)).abs() < 1e-5);
    let hand = f64s(&grads);
    let mut worst32: f64 = 0.0;
    for part in 0..5 {
        let fd64 = flat.central_differences(part, 1e-6);
        let err = max_abs_diff(&hand[part], &fd64);
        assert!(err < 1e-6, "{}: {err:e}", NAMES[part]);
        let fd32 = central_differences_f32(&p, part, 1e-2).unwrap();
        worst32 = worst32.max(max_abs_diff(&hand[part], &fd32));
    }
    // The same check in f32 (eps 1e-2) agrees only to about 1e-4..1e-3.
    assert!(worst32 > 1e-5 && worst32 < 1e-3, "{worst32:e}");
    assert!(worst32 > 100.0 * worst_fd64_error(&p, &grads));
}

#[test]
fn hand_gradients_match_on_odd_sizes() {
    // Supporting claim 1: sizes 1 and primes, other seeds.
    for (n, m, nh, seed) in [(1, 1, 1, 1), (7, 3, 13, 2), (2, 11, 5, 3), (31, 2, 3, 4)] {
        let p = Problem::synthetic(n, m, nh, seed).unwrap();
        let (_, grads) = hand::forward_and_backward(&p).unwrap();
        let err = worst_fd64_error(&p, &grads);
        assert!(err < 1e-5, "({n}, {m}, {nh}): {err:e}");
        for (g, t) in grads.tensors().iter().zip(p.tensors()) {
            assert_eq!(g.dims(), t.dims());
        }
    }
}

#[test]
fn claim_2_weight_gradient_is_a_matmul() {
    let p = problem();
    let (_, grads) = hand::forward_and_backward(&p).unwrap();
    let l1 = hand::lin(&p.x, &p.mlp.w1, &p.mlp.b1).unwrap();
    let l2 = hand::relu(&l1).unwrap();
    let out = hand::lin(&l2, &p.mlp.w2, &p.mlp.b2).unwrap();
    let out_g = hand::mse_grad(&out, &p.y).unwrap();
    let g2 = hand::lin_grad(&l2, &p.mlp.w2, &out_g).unwrap();
    let l1_g = hand::relu_grad(&l1, &g2.inp).unwrap();
    let outer = hand::lin_grad_w_outer(&p.x, &l1_g).unwrap();
    assert_eq!(outer.dims(), &[5, 8]);
    let diff = max_abs_diff(&to_f64(&outer).unwrap(), &to_f64(&grads.w1).unwrap());
    assert!(diff < 1e-6, "{diff:e}");
    // Other shapes, including an empty batch (both give zeros) and single rows.
    let mut g = TorchGenerator::manual_seed(7);
    for (n, m, k) in [(0, 2, 3), (1, 1, 1), (7, 3, 5), (13, 4, 2)] {
        let inp = g.randn([n, m]).unwrap();
        let og = g.randn([n, k]).unwrap();
        let a = to_f64(&hand::lin_grad_w_outer(&inp, &og).unwrap()).unwrap();
        let w = Tensor::zeros([m, k]);
        let b = to_f64(&hand::lin_grad(&inp, &w, &og).unwrap().w).unwrap();
        assert_eq!(a.len(), m * k);
        assert!(max_abs_diff(&a, &b) < 1e-5, "({n}, {m}, {k})");
        if n == 0 {
            assert!(a.iter().chain(&b).all(|&v| v == 0.0));
        }
    }
}

#[test]
fn claim_3_scalar_autodiff_reproduces_micrograd() {
    let (g, a, b) = micrograd_example(-4.0, 2.0);
    g.backward();
    assert!((g.data() - 24.7041).abs() < 5e-5, "{}", g.data());
    assert!((a.grad() - 138.8338).abs() < 5e-5, "{}", a.grad());
    assert!((b.grad() - 645.5773).abs() < 5e-5, "{}", b.grad());
    // The same derivatives by central differences of the expression.
    let eps = 1e-6;
    let at = |a: f64, b: f64| micrograd_example(a, b).0.data();
    let da = (at(-4.0 + eps, 2.0) - at(-4.0 - eps, 2.0)) / (2.0 * eps);
    let db = (at(-4.0, 2.0 + eps) - at(-4.0, 2.0 - eps)) / (2.0 * eps);
    assert!((a.grad() - da).abs() < 1e-4 && (b.grad() - db).abs() < 1e-4);
    // micrograd's tanh neuron: o = 0.7071, x1.grad = -1.5, w1.grad = 1, x2.grad = 0.5.
    let [x1, x2, w1, w2] = [2.0, 0.0, -3.0, 1.0].map(Value::new);
    let o = (&x1 * &w1 + &x2 * &w2 + 6.881_373_587_019_543).tanh();
    o.backward();
    assert!((o.data() - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-12);
    let got = [x1.grad(), w1.grad(), x2.grad(), w2.grad()];
    for (g, want) in got.iter().zip([-1.5, 1.0, 0.5, 0.0]) {
        assert!((g - want).abs() < 1e-12, "{got:?}");
    }
    // backward() starts afresh: a second call gives the same grads, not double.
    o.backward();
    assert!((x1.grad() + 1.5).abs() < 1e-12);
}

#[test]
fn claim_4_scalar_engine_matches_finite_differences_and_hand() {
    let p = problem();
    let flat = Flat::from_problem(&p).unwrap();
    let (loss, leaves) = mlp_loss(&flat);
    loss.backward();
    // 377 leaves; per sample and hidden unit 5 muls + 5 adds + relu + mul + add;
    // per sample (out - y)^2 added to the total: 6 nodes; 0, n and the division: 4.
    assert_eq!(loss.topo().len(), 377 + 64 * (8 * 13 + 6) + 4);
    assert!((loss.data() - flat.loss()).abs() < 1e-12);
    let (_, grads) = hand::forward_and_backward(&p).unwrap();
    let hand = f64s(&grads);
    for part in 0..5 {
        let s: Vec<f64> = leaves[part].iter().map(Value::grad).collect();
        let fd = max_abs_diff(&s, &flat.central_differences(part, 1e-6));
        assert!(fd < 1e-8, "{}: {fd:e}", NAMES[part]); // measured <= 8.9e-10
        let h = max_abs_diff(&s, &hand[part]);
        assert!(h < 1e-6, "{}: {h:e}", NAMES[part]); // measured <= 2.2e-7
    }
}

#[test]
fn claim_5_layers_give_bit_identical_gradients() {
    let p = problem();
    let (loss, grads) = hand::forward_and_backward(&p).unwrap();
    let mut model = Model::new(&p);
    let mloss = model.forward(&p.x, &p.y).unwrap();
    assert_eq!(mloss.to_bits(), loss.to_bits());
    let mgrads = model.backward().unwrap();
    for (a, b) in mgrads.tensors().iter().zip(grads.tensors()) {
        assert_eq!(bits(a), bits(b));
    }
    // A layer cannot run backward before forward.
    let g = Tensor::ones([2, 1]);
    assert!(Relu::default().backward(&g).is_err());
    assert!(Lin::new(Tensor::ones([1, 1]), Tensor::zeros([1]))
        .backward(&g)
        .is_err());
    assert!(Mse::default().backward().is_err());
}

#[test]
fn claim_6_library_autodiff_equals_hand_bit_for_bit() {
    let p = problem();
    let (loss, grads) = hand::forward_and_backward(&p).unwrap();
    let (lloss, lgrads) = library_forward_and_backward(&p).unwrap();
    assert_eq!(lloss.to_bits(), loss.to_bits());
    for (a, b) in lgrads.tensors().iter().zip(grads.tensors()) {
        assert_eq!(a.dims(), b.dims());
        assert_eq!(bits(a), bits(b));
    }
    assert!(worst_fd64_error(&p, &lgrads) < 1e-6);
}

#[test]
fn claim_7_broadcast_gradients_are_summed_back() {
    let a = Var::leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0], [3, 1]).unwrap());
    let b = Var::leaf(Tensor::from_vec(vec![10.0, 20.0, 30.0, 40.0], [4]).unwrap());
    let c = Var::constant(
        Tensor::arange(0.0, 12.0, 1.0)
            .unwrap()
            .reshape([3, 4])
            .unwrap(),
    );
    let g = a.add(&b).unwrap().mul(&c).unwrap().sum_all().unwrap();
    let g = g.backward().unwrap();
    let ga = g.get(&a).unwrap();
    let gb = g.get(&b).unwrap();
    assert_eq!(ga.dims(), &[3, 1]);
    assert_eq!(ga.to_vec().unwrap(), vec![6.0, 22.0, 38.0]); // row sums of c
    assert_eq!(gb.dims(), &[4]);
    assert_eq!(gb.to_vec().unwrap(), vec![12.0, 15.0, 18.0, 21.0]); // column sums
                                                                    // In the MLP, b1: (8) met 64 rows; its gradient is l1.g summed over them.
    let p = problem();
    let (_, lgrads) = library_forward_and_backward(&p).unwrap();
    let l1 = hand::lin(&p.x, &p.mlp.w1, &p.mlp.b1).unwrap();
    let out = hand::lin(&hand::relu(&l1).unwrap(), &p.mlp.w2, &p.mlp.b2).unwrap();
    let l2_g = hand::lin_grad(
        &hand::relu(&l1).unwrap(),
        &p.mlp.w2,
        &hand::mse_grad(&out, &p.y).unwrap(),
    )
    .unwrap()
    .inp;
    let l1_g = hand::relu_grad(&l1, &l2_g).unwrap();
    assert_eq!(lgrads.b1.dims(), &[8]);
    assert_eq!(bits(&lgrads.b1), bits(&l1_g.sum(&[0], false).unwrap()));
    assert_eq!(lgrads.b2.dims(), &[1]);
}

#[test]
fn claim_8_a_deep_graph_backpropagates_iteratively() {
    let depth = 100_000;
    let x = Var::leaf(Tensor::from_vec(vec![1.0], [1]).unwrap());
    let mut y = x.clone();
    for _ in 0..depth {
        y = y.mul_scalar(1.00001).unwrap();
    }
    let grads = y.sum_all().unwrap().backward().unwrap();
    let want = f64::from(1.00001_f32).powi(depth);
    assert!((want - 2.72196).abs() < 1e-5);
    let got = f64::from(grads.get(&x).unwrap().to_vec().unwrap()[0]);
    // 100k f32 roundings: measured relative error 1.9e-5.
    assert!((got / want - 1.0).abs() < 1e-4, "{got} vs {want}");
    assert_eq!(grads.stats().nodes, depth as usize + 2); // x, the muls, the sum
    assert_eq!(grads.stats().peak_live_grads, 1);
}

#[test]
fn claim_9_a_step_against_the_gradient_lowers_the_loss() {
    let p = problem();
    let (loss, grads) = hand::forward_and_backward(&p).unwrap();
    let norm = grads.param_norm_sq().unwrap();
    assert!((norm - 25.9538).abs() < 1e-3, "{norm}");
    let mut errors = Vec::new();
    for lr in [1e-2_f32, 1e-3, 1e-4] {
        let after = hand::loss(&p.sgd_step(&grads, lr).unwrap()).unwrap();
        assert!(after < loss);
        let fell = f64::from(loss) - f64::from(after);
        errors.push((fell / (f64::from(lr) * norm) - 1.0).abs());
    }
    // The first-order prediction is off by O(lr): about 8%, 0.8%, 0.08%.
    assert!(errors[0] < 0.15 && errors[2] < 2e-3, "{errors:?}");
    for w in errors.windows(2) {
        assert!(w[1] < w[0] / 5.0 && w[1] > w[0] / 20.0, "{errors:?}");
    }
}
