//! Optimizers, schedules, gradient clipping, losses and attention against PyTorch
//! golden values in `fixtures/nn_optim.safetensors` (made by
//! `scripts/gen_fixtures.py --only nn_optim`; the hyper-parameters below repeat the
//! script's, keep them in step).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use autodiff::{Grads, Var};
use nn::{
    AdamW, AdamWConfig, AttentionConfig, CosineAnnealing, LrSchedule, Module, MultiHeadAttention,
    OneCycle, Optimizer, ParamStore, Sgd, SgdConfig, VarBuilder,
};
use tensor::io::{DType, SafeTensorsFile};
use tensor::Tensor;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../fixtures/nn_optim.safetensors"
);
const STEPS: usize = 6;

fn fixture() -> SafeTensorsFile {
    SafeTensorsFile::open(FIXTURE).unwrap()
}

fn get(f: &SafeTensorsFile, key: &str) -> Tensor {
    f.get(key).unwrap_or_else(|e| panic!("{key}: {e}"))
}

/// An F64 tensor read exactly (the generic reader widens to f32).
fn get_f64(f: &SafeTensorsFile, key: &str) -> Vec<f64> {
    let (info, bytes) = f.raw(key).unwrap();
    assert_eq!(info.dtype, DType::F64, "{key}");
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn assert_close(what: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= atol + rtol * w.abs(),
            "{what}[{i}]: got {g}, torch {w} (diff {})",
            (g - w).abs()
        );
    }
}

/// Feed the fixture's gradients to `opt` over params a, b; compare after each step.
/// `schedule` sets lr and momentum before each step, as OneCycleLR does in the script.
fn replay(
    case: &str,
    make: impl FnOnce(&ParamStore) -> Box<dyn Optimizer>,
    schedule: Option<OneCycle>,
) {
    let f = fixture();
    let store = ParamStore::new();
    let a = store.insert("a", get(&f, &format!("{case}.a.p0"))).unwrap();
    let b = store.insert("b", get(&f, &format!("{case}.b.p0"))).unwrap();
    let mut opt = make(&store);
    for k in 1..=STEPS {
        if let Some(s) = schedule {
            opt.set_lr(s.lr(k - 1));
            opt.set_momentum(s.momentum(k - 1).unwrap());
            let want_lr = get_f64(&f, &format!("{case}.lr"))[k - 1];
            let want_m = get_f64(&f, &format!("{case}.momentum"))[k - 1];
            assert!(
                (opt.lr() - want_lr).abs() <= 1e-15 + 1e-12 * want_lr,
                "{case} lr {k}"
            );
            assert!(
                (opt.momentum() - want_m).abs() <= 1e-12,
                "{case} momentum {k}"
            );
        }
        // A fresh Grads holding exactly the fixture's gradients.
        let mut grads = Grads::default();
        grads.insert(a.id(), get(&f, &format!("{case}.a.g{k}")));
        grads.insert(b.id(), get(&f, &format!("{case}.b.g{k}")));
        opt.step(&grads).unwrap();
        for (p, n) in [(&a, "a"), (&b, "b")] {
            let want = get(&f, &format!("{case}.{n}.p{k}")).to_vec().unwrap();
            assert_close(
                &format!("{case}.{n} step {k}"),
                &p.value().to_vec().unwrap(),
                &want,
                2e-6,
                2e-7,
            );
        }
    }
}

#[test]
fn sgd_matches_torch() {
    let sgd = |c: SgdConfig| move |s: &ParamStore| Box::new(Sgd::new(s, c)) as Box<dyn Optimizer>;
    let base = SgdConfig::default();
    replay("sgd_plain", sgd(SgdConfig { lr: 0.1, ..base }), None);
    replay(
        "sgd_momentum",
        sgd(SgdConfig {
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 0.01,
            ..base
        }),
        None,
    );
    replay(
        "sgd_nesterov",
        sgd(SgdConfig {
            lr: 0.05,
            momentum: 0.8,
            nesterov: true,
            ..base
        }),
        None,
    );
    replay(
        "sgd_dampening",
        sgd(SgdConfig {
            lr: 0.1,
            momentum: 0.5,
            dampening: 0.3,
            ..base
        }),
        None,
    );
}

#[test]
fn adamw_matches_torch() {
    let adamw =
        |c: AdamWConfig| move |s: &ParamStore| Box::new(AdamW::new(s, c)) as Box<dyn Optimizer>;
    replay("adamw_default", adamw(AdamWConfig::default()), None);
    let custom = AdamWConfig {
        lr: 0.02,
        beta1: 0.8,
        beta2: 0.99,
        eps: 1e-6,
        weight_decay: 0.1,
    };
    replay("adamw_custom", adamw(custom), None);
}

#[test]
fn optimizers_driven_by_one_cycle_match_torch() {
    let adamw = AdamWConfig {
        lr: 1.0,
        weight_decay: 0.01,
        ..Default::default()
    };
    replay(
        "adamw_onecycle",
        move |s| Box::new(AdamW::new(s, adamw)),
        Some(OneCycle::new(0.05, STEPS)),
    );
    let sgd = SgdConfig {
        lr: 1.0,
        momentum: 0.9,
        ..Default::default()
    };
    replay(
        "sgd_onecycle",
        move |s| Box::new(Sgd::new(s, sgd)),
        Some(OneCycle::new(0.2, STEPS)),
    );
}

#[test]
fn sgd_nesterov_without_momentum_is_an_error() {
    let store = ParamStore::new();
    let w = store.insert("w", Tensor::ones([2])).unwrap();
    let mut opt = Sgd::new(
        &store,
        SgdConfig {
            nesterov: true,
            ..Default::default()
        },
    );
    let grads = w.var().sum_all().unwrap().backward().unwrap();
    let err = opt.step(&grads).unwrap_err().to_string();
    assert!(err.contains("Nesterov"), "{err}");
}

fn check_schedule(name: &str, s: &dyn LrSchedule, with_momentum: bool) {
    let f = fixture();
    let lrs = get_f64(&f, &format!("sched.{name}.lr"));
    let moms = get_f64(&f, &format!("sched.{name}.momentum"));
    assert!(lrs.len() > 5);
    for (i, (&lr, &m)) in lrs.iter().zip(&moms).enumerate() {
        let got = s.lr(i);
        assert!(
            (got - lr).abs() <= 1e-15 + 1e-12 * lr.abs(),
            "{name} lr[{i}]: got {got}, torch {lr}"
        );
        match s.momentum(i) {
            Some(gm) => assert!(
                (gm - m).abs() <= 1e-12,
                "{name} momentum[{i}]: got {gm}, torch {m}"
            ),
            None => assert!(!with_momentum, "{name}: no momentum"),
        }
    }
}

#[test]
fn one_cycle_matches_torch() {
    check_schedule("oc_default", &OneCycle::new(0.1, 100), true);
    let linear = OneCycle {
        pct_start: 0.25,
        anneal: nn::Anneal::Linear,
        div_factor: 10.0,
        final_div_factor: 100.0,
        base_momentum: 0.8,
        max_momentum: 0.9,
        ..OneCycle::new(1.0, 37)
    };
    check_schedule("oc_sgd_linear", &linear, true);
    check_schedule(
        "oc_three",
        &OneCycle {
            three_phase: true,
            ..OneCycle::new(0.3, 50)
        },
        true,
    );
    check_schedule("oc_tiny", &OneCycle::new(0.01, 7), true);
}

#[test]
fn cosine_annealing_matches_torch() {
    let cos = CosineAnnealing {
        base_lr: 0.1,
        t_max: 10,
        eta_min: 0.001,
    };
    check_schedule("cosine", &cos, false);
    check_schedule("cosine_zero", &CosineAnnealing::new(0.3, 7), false);
}

#[test]
fn clip_grad_norm_matches_torch() {
    let f = fixture();
    for (name, max_norm) in [("max1", 1.0), ("max100", 100.0)] {
        let store = ParamStore::new();
        let mut grads = Grads::default();
        for i in 0..3 {
            let g = get(&f, &format!("clip.{name}.g{i}"));
            let p = store
                .insert(format!("p{i}"), Tensor::zeros(g.dims().to_vec()))
                .unwrap();
            grads.insert(p.id(), g);
        }
        let norm = nn::clip_grad_norm(&mut grads, &store.params(), max_norm).unwrap();
        let want = get(&f, &format!("clip.{name}.norm")).to_vec().unwrap()[0];
        assert!(
            (norm - want).abs() <= 1e-6 * want,
            "{name}: norm {norm} vs {want}"
        );
        for (i, p) in store.params().iter().enumerate() {
            let want = get(&f, &format!("clip.{name}.clipped{i}"))
                .to_vec()
                .unwrap();
            let got = grads.get_id(p.id()).unwrap().to_vec().unwrap();
            assert_close(&format!("clip {name} {i}"), &got, &want, 1e-6, 1e-7);
        }
    }
    // Only max1 clips: the fixture's gradients have a norm between 1 and 100.
    let n1 = get(&f, "clip.max1.norm").to_vec().unwrap()[0];
    assert!(n1 > 1.0 && n1 < 100.0);
}

#[test]
fn cross_entropy_matches_torch() {
    let f = fixture();
    let logits = Var::leaf(get(&f, "cross_entropy.logits"));
    let targets: Vec<usize> = get(&f, "cross_entropy.targets")
        .to_vec()
        .unwrap()
        .iter()
        .map(|&t| t as usize)
        .collect();
    let loss = nn::cross_entropy(&logits, &targets).unwrap();
    let want = get(&f, "cross_entropy.loss").to_vec().unwrap();
    assert_close(
        "cross_entropy",
        &[loss.to_scalar().unwrap()],
        &want,
        1e-6,
        1e-7,
    );
    let g = loss.backward().unwrap();
    let want = get(&f, "cross_entropy.grad").to_vec().unwrap();
    assert_close(
        "cross_entropy grad",
        &g.get(&logits).unwrap().to_vec().unwrap(),
        &want,
        1e-5,
        1e-7,
    );
    // An out-of-range target names its position.
    let err = nn::cross_entropy(&logits, &[0, 1, 2, 3, 9, 0])
        .unwrap_err()
        .to_string();
    assert!(err.contains("target 9 at position 4"), "{err}");
}

#[test]
fn kl_diag_gaussian_matches_torch() {
    let f = fixture();
    let mean = Var::leaf(get(&f, "kl.mean"));
    let logvar = Var::leaf(get(&f, "kl.logvar"));
    let kl = nn::kl_diag_gaussian(&mean, &logvar).unwrap();
    let want = get(&f, "kl.loss").to_vec().unwrap();
    assert_close("kl", &[kl.to_scalar().unwrap()], &want, 1e-5, 1e-6);
    let g = kl.backward().unwrap();
    for (v, key) in [(&mean, "kl.grad_mean"), (&logvar, "kl.grad_logvar")] {
        let want = get(&f, key).to_vec().unwrap();
        assert_close(key, &g.get(v).unwrap().to_vec().unwrap(), &want, 1e-5, 1e-7);
    }
}

/// The fixture's `attention.<prefix>.*` weights, keyed without `attention.`.
fn attention_weights(f: &SafeTensorsFile, prefix: &str) -> BTreeMap<String, Tensor> {
    f.names()
        .into_iter()
        .filter_map(|k| k.strip_prefix("attention."))
        .filter(|k| {
            k.starts_with(&format!("{prefix}.")) && (k.ends_with(".weight") || k.ends_with(".bias"))
        })
        .map(|k| (k.to_string(), get(f, &format!("attention.{k}"))))
        .collect()
}

#[test]
fn diffusers_cross_attention_matches_torch() {
    let f = fixture();
    let store = ParamStore::new();
    let vb = VarBuilder::from_tensors(&store, attention_weights(&f, "xattn"), "fixture");
    let cfg = AttentionConfig::diffusers(12, 3, 4).with_context(10);
    let attn = MultiHeadAttention::new(vb.pp("xattn"), cfg).unwrap();
    vb.finish().unwrap(); // every fixture weight was used
    let x = Var::constant(get(&f, "attention.xattn.x"));
    let ctx = Var::constant(get(&f, "attention.xattn.context"));
    let y = attn.forward_with(&x, Some(&ctx), None).unwrap();
    assert_eq!(y.dims(), &[2, 5, 12]);
    let want = get(&f, "attention.xattn.y").to_vec().unwrap();
    assert_close("xattn", &y.to_vec().unwrap(), &want, 1e-5, 1e-6);
}

#[test]
fn clip_causal_self_attention_matches_torch() {
    let f = fixture();
    let store = ParamStore::new();
    let vb = VarBuilder::from_tensors(&store, attention_weights(&f, "clip"), "fixture");
    let attn = MultiHeadAttention::new(vb.pp("clip"), AttentionConfig::clip(8, 2)).unwrap();
    vb.finish().unwrap();
    let x = Var::constant(get(&f, "attention.clip.x"));
    let mask = get(&f, "attention.clip.mask");
    let y = attn.forward_with(&x, None, Some(&mask)).unwrap();
    let want = get(&f, "attention.clip.y").to_vec().unwrap();
    assert_close("clip attention", &y.to_vec().unwrap(), &want, 1e-5, 1e-6);
    // Without the mask the first token sees the future: the output differs.
    let unmasked = attn.forward(&x).unwrap().to_vec().unwrap();
    assert!((unmasked[0] - want[0]).abs() > 1e-4);
}
