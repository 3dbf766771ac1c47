//! Each module's forward against the tensor-level computation it stands for, its
//! parameter names and shapes, and that gradients reach every parameter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use autodiff::Var;
use nn::{
    Activation, AttentionConfig, Conv2d, Conv2dConfig, Dropout, Embedding, GroupNorm, Init,
    LayerNorm, Linear, Module, MultiHeadAttention, ParamStore, Sequential, VarBuilder,
};
use tensor::random::WichmannHill;
use tensor::Tensor;

fn builder(seed: u64) -> (ParamStore, VarBuilder) {
    let store = ParamStore::new();
    let vb = VarBuilder::from_init(&store, WichmannHill::seed(seed));
    (store, vb)
}

fn randn(dims: &[usize], seed: u64) -> Tensor {
    Tensor::randn(dims.to_vec(), &mut WichmannHill::seed(seed)).unwrap()
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.dims(), want.dims(), "{what}: shape");
    let (g, w) = (got.to_vec().unwrap(), want.to_vec().unwrap());
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - b).abs() <= tol * (1.0 + b.abs()),
            "{what}[{i}]: {a} vs {b}"
        );
    }
}

/// Every parameter of `store` gets a nonzero gradient from `sum(out * r)`.
fn grads_reach_all(store: &ParamStore, out: &Var) {
    let r = Var::constant(randn(out.dims(), 99));
    let grads = out.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
    for p in store.params() {
        let g = grads
            .get_id(p.id())
            .unwrap_or_else(|| panic!("no gradient for {}", p.name()));
        assert_eq!(g.dims(), p.dims().as_slice(), "{}", p.name());
        assert!(
            g.to_vec().unwrap().iter().any(|v| *v != 0.0),
            "zero gradient for {}",
            p.name()
        );
    }
}

#[test]
fn linear_is_x_wt_plus_b_on_batched_inputs() {
    let (store, vb) = builder(1);
    let lin = Linear::new(vb.pp("proj_in"), 5, 3, true).unwrap();
    assert_eq!(store.names(), ["proj_in.weight", "proj_in.bias"]);
    assert_eq!(lin.weight.dims(), [3, 5]);
    for dims in [vec![4, 5], vec![2, 7, 5], vec![1, 5], vec![5]] {
        let x = randn(&dims, 2);
        let y = lin.forward(&Var::constant(x.clone())).unwrap();
        let want = x
            .matmul(&lin.weight.value().t().unwrap())
            .unwrap()
            .add(&lin.bias.as_ref().unwrap().value())
            .unwrap();
        assert_close("linear", y.value(), &want, 1e-6);
    }
    let y = lin.forward(&Var::constant(randn(&[3, 5], 3))).unwrap();
    grads_reach_all(&store, &y);
    // torch's init: weight and bias within 1/sqrt(in)
    let bound = 1.0 / 5f32.sqrt();
    for p in store.params() {
        assert!(
            p.value().to_vec().unwrap().iter().all(|v| v.abs() <= bound),
            "{}",
            p.name()
        );
    }
    // No bias: one parameter.
    let (store2, vb2) = builder(1);
    let nob = Linear::new(vb2, 5, 3, false).unwrap();
    assert!(nob.bias.is_none() && store2.len() == 1);
}

#[test]
fn linear_rejects_wrong_feature_count() {
    let (_, vb) = builder(1);
    let lin = Linear::new(vb, 4, 2, true).unwrap();
    assert!(lin.forward(&Var::constant(Tensor::ones([3, 5]))).is_err());
}

#[test]
fn conv2d_matches_tensor_conv_with_its_config() {
    let cfg = Conv2dConfig {
        stride: 2,
        padding: 1,
        dilation: 1,
        groups: 2,
    };
    let (store, vb) = builder(4);
    let conv = Conv2d::new(vb.pp("conv_in"), 4, 6, 3, cfg, true).unwrap();
    assert_eq!(store.names(), ["conv_in.weight", "conv_in.bias"]);
    assert_eq!(conv.weight.dims(), [6, 2, 3, 3]);
    let x = randn(&[2, 4, 7, 9], 5);
    let y = conv.forward(&Var::constant(x.clone())).unwrap();
    let b = conv.bias.as_ref().unwrap().value();
    let want = x
        .conv2d(&conv.weight.value(), Some(&b), (2, 2), (1, 1), (1, 1), 2)
        .unwrap();
    assert_eq!(y.dims(), &[2, 6, 4, 5]);
    assert_close("conv2d", y.value(), &want, 1e-5);
    grads_reach_all(&store, &y);
    // A 3-d input is a batch of one.
    let y3 = conv
        .forward(&Var::constant(
            x.narrow(0, 0, 1).unwrap().squeeze(0).unwrap(),
        ))
        .unwrap();
    assert_close(
        "conv2d 3-d",
        y3.value(),
        &want.narrow(0, 0, 1).unwrap().squeeze(0).unwrap(),
        1e-5,
    );
}

#[test]
fn conv2d_rejects_groups_that_do_not_divide() {
    let (_, vb) = builder(1);
    let cfg = Conv2dConfig {
        groups: 3,
        ..Default::default()
    };
    let err = Conv2d::new(vb.pp("conv"), 4, 6, 3, cfg, true)
        .unwrap_err()
        .to_string();
    assert!(err.contains("conv") && err.contains("groups 3"), "{err}");
}

#[test]
fn group_norm_matches_tensor_group_norm_and_starts_as_identity_affine() {
    let (store, vb) = builder(6);
    let gn = GroupNorm::new(vb.pp("norm1"), 3, 6, 1e-6).unwrap();
    assert_eq!(store.names(), ["norm1.weight", "norm1.bias"]);
    assert_eq!(
        gn.weight.as_ref().unwrap().value().to_vec().unwrap(),
        vec![1.0; 6]
    );
    assert_eq!(
        gn.bias.as_ref().unwrap().value().to_vec().unwrap(),
        vec![0.0; 6]
    );
    // Give the affine parameters values so they matter.
    gn.weight.as_ref().unwrap().set(randn(&[6], 7)).unwrap();
    gn.bias.as_ref().unwrap().set(randn(&[6], 8)).unwrap();
    let x = randn(&[2, 6, 5, 3], 9).affine(3.0, 1.0).unwrap();
    let y = gn.forward(&Var::constant(x.clone())).unwrap();
    let (w, b) = (
        gn.weight.as_ref().unwrap().value(),
        gn.bias.as_ref().unwrap().value(),
    );
    let want = x.group_norm(3, Some(&w), Some(&b), 1e-6).unwrap();
    assert_close("group_norm", y.value(), &want, 1e-6);
    grads_reach_all(&store, &y);
    // Without affine there are no parameters; a bad group count is an error.
    let (store2, vb2) = builder(6);
    GroupNorm::with_affine(vb2.clone(), 2, 6, 1e-5, false).unwrap();
    assert!(store2.is_empty());
    assert!(GroupNorm::new(vb2, 4, 6, 1e-5).is_err());
}

#[test]
fn layer_norm_matches_tensor_layer_norm() {
    let (store, vb) = builder(10);
    let ln = LayerNorm::new(vb.pp("final_layer_norm"), &[8], 1e-5).unwrap();
    ln.weight.as_ref().unwrap().set(randn(&[8], 11)).unwrap();
    ln.bias.as_ref().unwrap().set(randn(&[8], 12)).unwrap();
    let x = randn(&[2, 3, 8], 13);
    let y = ln.forward(&Var::constant(x.clone())).unwrap();
    let (w, b) = (
        ln.weight.as_ref().unwrap().value(),
        ln.bias.as_ref().unwrap().value(),
    );
    let want = x.layer_norm(&[8], Some(&w), Some(&b), 1e-5).unwrap();
    assert_close("layer_norm", y.value(), &want, 1e-6);
    grads_reach_all(&store, &y);
}

#[test]
fn embedding_picks_rows_in_the_ids_shape() {
    let (store, vb) = builder(14);
    let emb = Embedding::new(vb.pp("token_embedding"), 10, 4).unwrap();
    assert_eq!(store.names(), ["token_embedding.weight"]);
    let w = emb.weight.value().to_vec().unwrap();
    let ids = Var::constant(Tensor::from_vec(vec![3.0, 0.0, 9.0, 3.0, 1.0, 2.0], [2, 3]).unwrap());
    let y = emb.forward(&ids).unwrap();
    assert_eq!(y.dims(), &[2, 3, 4]);
    let got = y.to_vec().unwrap();
    for (i, id) in [3usize, 0, 9, 3, 1, 2].into_iter().enumerate() {
        assert_eq!(&got[i * 4..i * 4 + 4], &w[id * 4..id * 4 + 4], "row {i}");
    }
    // normal(0, 1) init: not all equal, mean near 0 over 40 draws.
    let mean = w.iter().sum::<f32>() / w.len() as f32;
    assert!(mean.abs() < 0.6, "{mean}");
    // Non-integer or out-of-range ids are errors.
    assert!(emb
        .forward(&Var::constant(Tensor::from_vec(vec![1.5], [1]).unwrap()))
        .is_err());
    assert!(emb.lookup(&[10], &[1]).is_err());
    // The gradient of a row read twice is summed.
    let g = y.sum_all().unwrap().backward().unwrap();
    let gw = g.get_id(emb.weight.id()).unwrap().to_vec().unwrap();
    assert_eq!(gw[3 * 4], 2.0);
    assert_eq!(gw[4 * 4], 0.0);
}

#[test]
fn activations_match_tensor_ops() {
    let x = randn(&[3, 7], 15).mul_scalar(2.0).unwrap();
    let v = Var::constant(x.clone());
    let cases: [(Activation, Tensor); 7] = [
        (Activation::ReLU, x.relu().unwrap()),
        (Activation::SiLU, x.silu().unwrap()),
        (Activation::GELU, x.gelu().unwrap()),
        (Activation::QuickGELU, x.quick_gelu().unwrap()),
        (Activation::Sigmoid, x.sigmoid().unwrap()),
        (Activation::Tanh, x.tanh().unwrap()),
        (Activation::Identity, x.clone()),
    ];
    for (act, want) in cases {
        assert_close(
            &format!("{act:?}"),
            act.forward(&v).unwrap().value(),
            &want,
            0.0,
        );
    }
    // Spot values: silu(1) = 1 / (1 + e^-1), quick_gelu(1) = sigmoid(1.702)
    let one = Var::constant(Tensor::ones([1]));
    let silu = Activation::SiLU.forward(&one).unwrap().to_scalar().unwrap();
    assert!((silu - 0.731_058_6).abs() < 1e-6);
    let qg = Activation::QuickGELU
        .forward(&one)
        .unwrap()
        .to_scalar()
        .unwrap();
    assert!((qg - 1.0 / (1.0 + (-1.702f32).exp())).abs() < 1e-6);
}

#[test]
fn sequential_applies_in_order_with_torch_names() {
    let (store, vb) = builder(16);
    let net = Sequential::new()
        .with(Linear::new(vb.pp(0), 4, 8, true).unwrap())
        .with(Activation::ReLU)
        .with(Linear::new(vb.pp(2), 8, 2, true).unwrap());
    assert_eq!(net.len(), 3);
    assert_eq!(store.names(), ["0.weight", "0.bias", "2.weight", "2.bias"]);
    let x = randn(&[5, 4], 17);
    let p = |n: &str| store.get(n).unwrap().value();
    let h = x
        .matmul(&p("0.weight").t().unwrap())
        .unwrap()
        .add(&p("0.bias"))
        .unwrap()
        .relu()
        .unwrap();
    let want = h
        .matmul(&p("2.weight").t().unwrap())
        .unwrap()
        .add(&p("2.bias"))
        .unwrap();
    let y = net.forward(&Var::constant(x)).unwrap();
    assert_close("sequential", y.value(), &want, 1e-5);
    grads_reach_all(&store, &y);
    assert!(Sequential::new().is_empty());
}

#[test]
fn dropout_masks_in_training_and_is_identity_in_eval() {
    let store = ParamStore::new();
    let drop = Dropout::new(0.25, &store, WichmannHill::seed(18)).unwrap();
    let x = Var::constant(Tensor::ones([100, 100]));
    let y = drop.forward(&x).unwrap().to_vec().unwrap();
    let zeros = y.iter().filter(|v| **v == 0.0).count();
    // Each element is kept with probability 0.75 and scaled by 1/0.75.
    assert!(y
        .iter()
        .all(|v| *v == 0.0 || (*v - 1.0 / 0.75).abs() < 1e-6));
    assert!((2300..2700).contains(&zeros), "{zeros} zeros of 10000");
    // The mask follows the generator: the same seed drops the same elements.
    let again = Dropout::new(0.25, &store, WichmannHill::seed(18)).unwrap();
    assert_eq!(again.forward(&x).unwrap().to_vec().unwrap(), y);
    // Eval mode (the store's switch) is the identity; train mode masks again.
    store.eval();
    assert_eq!(
        drop.forward(&x).unwrap().to_vec().unwrap(),
        vec![1.0; 10_000]
    );
    store.train();
    assert!(drop.forward(&x).unwrap().to_vec().unwrap().contains(&0.0));
    // p = 0 keeps everything, p = 1 drops everything, p outside [0, 1] is an error.
    let keep = Dropout::new(0.0, &store, WichmannHill::seed(1)).unwrap();
    assert_eq!(
        keep.forward(&x).unwrap().to_vec().unwrap(),
        vec![1.0; 10_000]
    );
    let all = Dropout::new(1.0, &store, WichmannHill::seed(1)).unwrap();
    assert_eq!(
        all.forward(&x).unwrap().to_vec().unwrap(),
        vec![0.0; 10_000]
    );
    assert!(Dropout::new(1.5, &store, WichmannHill::seed(1)).is_err());
}

#[test]
fn attention_names_shapes_and_gradients() {
    let (store, vb) = builder(19);
    let cfg = AttentionConfig::diffusers(12, 3, 4).with_context(6);
    let attn = MultiHeadAttention::new(vb.pp("attn2"), cfg).unwrap();
    assert_eq!(
        store.names(),
        [
            "attn2.to_q.weight",
            "attn2.to_k.weight",
            "attn2.to_v.weight",
            "attn2.to_out.0.weight",
            "attn2.to_out.0.bias"
        ]
    );
    assert_eq!(store.get("attn2.to_k.weight").unwrap().dims(), [12, 6]);
    let x = Var::constant(randn(&[2, 5, 12], 20));
    let ctx = Var::constant(randn(&[2, 3, 6], 21));
    let y = attn.forward_with(&x, Some(&ctx), None).unwrap();
    assert_eq!(y.dims(), &[2, 5, 12]);
    grads_reach_all(&store, &y);
    // Wrong ranks and zero heads are errors.
    assert!(attn.forward(&Var::constant(randn(&[5, 12], 1))).is_err());
    let (_, vb2) = builder(1);
    assert!(MultiHeadAttention::new(vb2, AttentionConfig::diffusers(12, 0, 4)).is_err());
}

#[test]
fn attention_with_one_key_returns_the_projected_value() {
    // With a single context token, softmax is 1 and out = to_out(to_v(ctx)).
    let (_, vb) = builder(22);
    let attn = MultiHeadAttention::new(vb, AttentionConfig::clip(8, 2).with_context(8)).unwrap();
    let x = Var::constant(randn(&[1, 4, 8], 23));
    let ctx = Var::constant(randn(&[1, 1, 8], 24));
    let y = attn.forward_with(&x, Some(&ctx), None).unwrap();
    let v = attn
        .to_out
        .forward(&attn.to_v.forward(&ctx).unwrap())
        .unwrap();
    let v = v
        .value()
        .broadcast_as([1, 4, 8])
        .unwrap()
        .contiguous()
        .unwrap();
    assert_close("single key", y.value(), &v, 1e-5);
}

#[test]
fn initialisers_have_torch_scales() {
    let mut rng = WichmannHill::seed(25);
    // kaiming normal (fan in, relu gain): std = sqrt(2 / fan_in), fan_in = 50 * 3 * 3
    let w = Init::kaiming_normal_relu()
        .tensor(&[64, 50, 3, 3], &mut rng)
        .unwrap();
    let v = w.to_vec().unwrap();
    let std = (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
    let want = (2.0f32 / 450.0).sqrt();
    assert!((std / want - 1.0).abs() < 0.03, "{std} vs {want}");
    // xavier uniform: bound = gain * sqrt(6 / (fan_in + fan_out)) = sqrt(6 / 30)
    let init = Init::XavierUniform { gain: 1.0 };
    assert!((init.bound(&[10, 20]).unwrap() - 0.2f32.sqrt()).abs() < 1e-7);
    let v = init.tensor(&[10, 20], &mut rng).unwrap().to_vec().unwrap();
    assert!(v.iter().all(|x| x.abs() <= 0.2f32.sqrt()));
    assert!(
        v.iter().any(|x| x.abs() > 0.35),
        "uniform draws should reach near the bound"
    );
    // xavier normal std and kaiming uniform fan-out
    let v = Init::XavierNormal { gain: 2.0 }
        .tensor(&[100, 300], &mut rng)
        .unwrap()
        .to_vec()
        .unwrap();
    let std = (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt();
    assert!(
        (std / (2.0 * (2.0f32 / 400.0).sqrt()) - 1.0).abs() < 0.03,
        "{std}"
    );
    let ku = Init::KaimingUniform {
        gain: 1.0,
        fan: nn::Fan::Out,
    };
    assert!((ku.bound(&[4, 100]).unwrap() - (3.0f32 / 4.0).sqrt()).abs() < 1e-7);
    // The same seed gives the same tensor; fans need rank >= 2.
    let a = Init::torch_default()
        .tensor(&[3, 4], &mut WichmannHill::seed(1))
        .unwrap();
    let b = Init::torch_default()
        .tensor(&[3, 4], &mut WichmannHill::seed(1))
        .unwrap();
    assert_eq!(a.to_vec().unwrap(), b.to_vec().unwrap());
    assert!(Init::torch_default().tensor(&[7], &mut rng).is_err());
    assert_eq!(nn::fans(&[8, 4, 3, 3]).unwrap(), (36, 72));
    assert_eq!(
        Init::Const(0.5)
            .tensor(&[2], &mut rng)
            .unwrap()
            .to_vec()
            .unwrap(),
        vec![0.5, 0.5]
    );
}
