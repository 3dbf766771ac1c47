//! `cargo run -p lesson-04-backprop`: prints what each claim of the README shows.

use autodiff::Var;
use lesson_04_backprop::layers::Model;
use lesson_04_backprop::scalar::{micrograd_example, mlp_loss, Value};
use lesson_04_backprop::{
    central_differences_f32, hand, library_forward_and_backward, max_abs, max_abs_diff, to_f64,
    Flat, Problem, NAMES,
};
use tensor::Tensor;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn bits(t: &Tensor) -> Result<Vec<u32>, tensor::TensorError> {
    Ok(t.to_vec()?.iter().map(|v| v.to_bits()).collect())
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let p = Problem::synthetic(64, 5, 8, 42)?;
    let flat = Flat::from_problem(&p)?;
    let (n, m, nh) = p.dims();
    let (loss, grads) = hand::forward_and_backward(&p)?;
    let hand_grads: Vec<Vec<f64>> = grads
        .tensors()
        .iter()
        .map(|t| to_f64(t))
        .collect::<Result<_, _>>()?;

    println!("1. The chain rule by hand (n = {n}, m = {m}, nh = {nh}, seed 42)");
    println!(
        "   loss = {loss:.6} (f32 tensors), {:.6} (f64 loops)",
        flat.loss()
    );
    println!("   tensor  max|grad|  max|hand - fd64|  max|hand - fd32|   (fd: central, eps 1e-6 in f64, 1e-2 in f32)");
    for (part, name) in NAMES.iter().enumerate() {
        let fd64 = flat.central_differences(part, 1e-6);
        let fd32 = central_differences_f32(&p, part, 1e-2)?;
        let h = &hand_grads[part];
        println!(
            "   {name:<6}  {:9.4}  {:16.2e}  {:16.2e}",
            max_abs(h),
            max_abs_diff(h, &fd64),
            max_abs_diff(h, &fd32)
        );
    }

    println!("2. The weight gradient is a matmul");
    let l1 = hand::lin(&p.x, &p.mlp.w1, &p.mlp.b1)?;
    let l2 = hand::relu(&l1)?;
    let out = hand::lin(&l2, &p.mlp.w2, &p.mlp.b2)?;
    let g2 = hand::lin_grad(&l2, &p.mlp.w2, &hand::mse_grad(&out, &p.y)?)?;
    let l1_g = hand::relu_grad(&l1, &g2.inp)?;
    let outer = hand::lin_grad_w_outer(&p.x, &l1_g)?;
    println!(
        "   w1.g as a sum of {n} outer products ((n, m, nh) = {} floats) vs x.T @ l1.g: max diff {:.2e}",
        n * m * nh,
        max_abs_diff(&to_f64(&outer)?, &hand_grads[0])
    );

    println!("3. A scalar autodiff from scratch (micrograd's example)");
    let (g, a, b) = micrograd_example(-4.0, 2.0);
    g.backward();
    println!(
        "   g = {:.4}, dg/da = {:.4}, dg/db = {:.4}  ({} nodes)",
        g.data(),
        a.grad(),
        b.grad(),
        g.topo().len()
    );
    let [x1, x2, w1, w2] = [2.0, 0.0, -3.0, 1.0].map(Value::new);
    let o = (&x1 * &w1 + &x2 * &w2 + 6.881_373_587_019_543).tanh();
    o.backward();
    println!(
        "   neuron tanh(x1 w1 + x2 w2 + b) = {:.4}; grads x1 {:.4}, w1 {:.4}, x2 {:.4}, w2 {:.4}",
        o.data(),
        x1.grad(),
        w1.grad(),
        x2.grad(),
        w2.grad()
    );

    println!("4. The scalar engine on the same MLP");
    let (sloss, leaves) = mlp_loss(&flat);
    sloss.backward();
    println!(
        "   {} Value nodes, loss {:.6}",
        sloss.topo().len(),
        sloss.data()
    );
    for (part, name) in NAMES.iter().enumerate() {
        let s: Vec<f64> = leaves[part].iter().map(Value::grad).collect();
        println!(
            "   {name:<6} max|scalar - fd64| {:.2e}   max|scalar - hand| {:.2e}",
            max_abs_diff(&s, &flat.central_differences(part, 1e-6)),
            max_abs_diff(&s, &hand_grads[part])
        );
    }

    println!("5. Layers with forward and backward");
    let mut model = Model::new(&p);
    let mloss = model.forward(&p.x, &p.y)?;
    let mgrads = model.backward()?;
    let mut same = mloss.to_bits() == loss.to_bits();
    for (a, b) in mgrads.tensors().iter().zip(grads.tensors()) {
        same &= bits(a)? == bits(b)?;
    }
    println!("   loss {mloss:.6}; all five gradients bit-identical to claim 1: {same}");

    println!("6. The library's autodiff::Var on the same MLP");
    let (lloss, lgrads) = library_forward_and_backward(&p)?;
    let mut worst: f64 = 0.0;
    let mut identical = 0;
    for (a, b) in lgrads.tensors().iter().zip(grads.tensors()) {
        worst = worst.max(max_abs_diff(&to_f64(a)?, &to_f64(b)?));
        identical += usize::from(bits(a)? == bits(b)?);
    }
    println!(
        "   loss {lloss:.6}; max|library - hand| = {worst:.2e}; {identical} of 5 gradients bit-identical"
    );

    println!("7. Broadcasting: a bias's gradient is summed back to its shape");
    let a = Var::leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0], [3, 1])?);
    let bb = Var::leaf(Tensor::from_vec(vec![10.0, 20.0, 30.0, 40.0], [4])?);
    let c = Var::constant(Tensor::arange(0.0, 12.0, 1.0)?.reshape([3, 4])?);
    let gr = a.add(&bb)?.mul(&c)?.sum_all()?.backward()?;
    if let (Some(ga), Some(gb)) = (gr.get(&a), gr.get(&bb)) {
        println!(
            "   sum((a (3,1) + b (4,)) * arange(12).view(3,4)): a.g {:?} (row sums), b.g {:?} (column sums)",
            ga.to_vec()?,
            gb.to_vec()?
        );
    }
    println!(
        "   MLP: b1 (8,) was broadcast over {n} rows; b1.g = l1.g.sum(0): max diff {:.2e}",
        max_abs_diff(&to_f64(&lgrads.b1)?, &to_f64(&l1_g.sum(&[0], false)?)?)
    );

    println!("8. A deep graph: backward is iterative");
    let depth = 100_000;
    let x = Var::leaf(Tensor::from_vec(vec![1.0], [1])?);
    let mut y = x.clone();
    for _ in 0..depth {
        y = y.mul_scalar(1.00001)?;
    }
    let dg = y.sum_all()?.backward()?;
    let want = f64::from(1.00001_f32).powi(depth);
    if let Some(gx) = dg.get(&x) {
        println!(
            "   {depth} chained x * 1.00001: dy/dx = {:.6} (exact {want:.6}); {} nodes, at most {} gradient(s) held at once",
            gx.to_vec()?[0],
            dg.stats().nodes,
            dg.stats().peak_live_grads
        );
    }

    println!("9. A step against the gradient lowers the loss by about lr * |g|^2");
    let norm = grads.param_norm_sq()?;
    for lr in [1e-2_f32, 1e-3, 1e-4] {
        let after = hand::loss(&p.sgd_step(&grads, lr)?)?;
        println!(
            "   lr {lr:.0e}: loss {loss:.6} -> {after:.6}, fell {:.6}, predicted {:.6}",
            loss - after,
            f64::from(lr) * norm
        );
    }
    Ok(())
}
