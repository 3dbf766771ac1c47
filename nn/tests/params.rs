//! Named parameters: names from nested builders, safetensors save/load by name, the
//! errors that name missing, unexpected and misshapen keys, and freezing by prefix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use autodiff::Var;
use nn::{
    AdamW, AdamWConfig, Conv2d, Conv2dConfig, GroupNorm, Linear, Module, NnError, Optimizer,
    ParamStore, Sgd, SgdConfig, VarBuilder,
};
use tensor::io::DType;
use tensor::random::WichmannHill;
use tensor::Tensor;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nn-params-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A tiny UNet-shaped model: `conv_in`, `down_blocks.{0,1}.resnets.0.{norm1,conv1}`,
/// `conv_out`, built from any builder.
struct Tiny {
    conv_in: Conv2d,
    blocks: Vec<(GroupNorm, Conv2d)>,
    conv_out: Conv2d,
}

impl Tiny {
    fn new(vb: &VarBuilder, channels: usize) -> nn::Result<Tiny> {
        let same = Conv2dConfig::padding(1);
        let conv_in = Conv2d::new(vb.pp("conv_in"), 3, channels, 3, same, true)?;
        let mut blocks = Vec::new();
        for i in 0..2 {
            let r = vb.pp("down_blocks").pp(i).pp("resnets").pp(0);
            blocks.push((
                GroupNorm::new(r.pp("norm1"), 2, channels, 1e-5)?,
                Conv2d::new(r.pp("conv1"), channels, channels, 3, same, true)?,
            ));
        }
        let conv_out = Conv2d::new(
            vb.pp("conv_out"),
            channels,
            3,
            1,
            Conv2dConfig::default(),
            true,
        )?;
        Ok(Tiny {
            conv_in,
            blocks,
            conv_out,
        })
    }
}

impl Module for Tiny {
    fn forward(&self, x: &Var) -> nn::Result<Var> {
        let mut h = self.conv_in.forward(x)?;
        for (norm, conv) in &self.blocks {
            h = h.add(&conv.forward(&norm.forward(&h)?.silu()?)?)?;
        }
        self.conv_out.forward(&h)
    }
}

fn tiny(seed: u64, channels: usize) -> (ParamStore, Tiny) {
    let store = ParamStore::new();
    let model = Tiny::new(
        &VarBuilder::from_init(&store, WichmannHill::seed(seed)),
        channels,
    )
    .unwrap();
    (store, model)
}

#[test]
fn nested_builders_give_diffusers_keys_in_order() {
    let (store, _) = tiny(1, 4);
    assert_eq!(
        store.names(),
        [
            "conv_in.weight",
            "conv_in.bias",
            "down_blocks.0.resnets.0.norm1.weight",
            "down_blocks.0.resnets.0.norm1.bias",
            "down_blocks.0.resnets.0.conv1.weight",
            "down_blocks.0.resnets.0.conv1.bias",
            "down_blocks.1.resnets.0.norm1.weight",
            "down_blocks.1.resnets.0.norm1.bias",
            "down_blocks.1.resnets.0.conv1.weight",
            "down_blocks.1.resnets.0.conv1.bias",
            "conv_out.weight",
            "conv_out.bias",
        ]
    );
    assert_eq!(
        store
            .get("down_blocks.1.resnets.0.conv1.weight")
            .unwrap()
            .dims(),
        [4, 4, 3, 3]
    );
    assert_eq!(
        store.num_elements(),
        (108 + 4) + 2 * (8 + 144 + 4) + (12 + 3)
    );
    let vb = VarBuilder::from_init(&store, WichmannHill::seed(1));
    assert_eq!(vb.pp("a").pp(3).path("b"), "a.3.b");
    assert_eq!(vb.prefix(), "");
}

#[test]
fn a_name_registered_twice_is_an_error_naming_it() {
    let store = ParamStore::new();
    let vb = VarBuilder::from_init(&store, WichmannHill::seed(1));
    Linear::new(vb.pp("proj"), 2, 2, true).unwrap();
    let err = Linear::new(vb.pp("proj"), 2, 2, true).unwrap_err();
    assert!(
        matches!(&err, NnError::DuplicateKey { key } if key == "proj.weight"),
        "{err}"
    );
}

#[test]
fn same_seed_same_weights_and_save_load_round_trip_exactly() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("model.safetensors");
    let (a, model_a) = tiny(7, 4);
    let (a2, _) = tiny(7, 4);
    assert_eq!(
        a.tensors()
            .iter()
            .map(|(_, t)| t.to_vec().unwrap())
            .collect::<Vec<_>>(),
        a2.tensors()
            .iter()
            .map(|(_, t)| t.to_vec().unwrap())
            .collect::<Vec<_>>()
    );
    a.save(&path).unwrap();

    // A differently initialised model loads the file and then computes the same.
    let (b, model_b) = tiny(8, 4);
    assert_ne!(
        a.tensors()[0].1.to_vec().unwrap(),
        b.tensors()[0].1.to_vec().unwrap()
    );
    b.load(&path).unwrap();
    for ((na, ta), (nb, tb)) in a.tensors().iter().zip(b.tensors()) {
        assert_eq!(na, &nb);
        assert_eq!(ta.to_vec().unwrap(), tb.to_vec().unwrap(), "{na}");
    }
    let x = Var::constant(Tensor::randn([1, 3, 5, 5], &mut WichmannHill::seed(3)).unwrap());
    assert_eq!(
        model_a.forward(&x).unwrap().to_vec().unwrap(),
        model_b.forward(&x).unwrap().to_vec().unwrap()
    );

    // The same file builds a model directly through a loading builder.
    let c = ParamStore::new();
    let vb = VarBuilder::from_safetensors(&c, &path).unwrap();
    let model_c = Tiny::new(&vb, 4).unwrap();
    vb.finish().unwrap();
    assert!(vb.is_loading() && vb.unused_keys().is_empty());
    assert_eq!(c.names(), a.names());
    assert_eq!(
        model_c.forward(&x).unwrap().to_vec().unwrap(),
        model_a.forward(&x).unwrap().to_vec().unwrap()
    );

    // f16 saves round through f16 and load back widened.
    let half = dir.join("half.safetensors");
    a.save_as(&half, DType::F16).unwrap();
    b.load(&half).unwrap();
    let w = a.get("conv_in.weight").unwrap().value().to_vec().unwrap();
    let wh = b.get("conv_in.weight").unwrap().value().to_vec().unwrap();
    assert_eq!(wh, tensor::io::round_through(&w, DType::F16).unwrap());
    assert_ne!(wh, w);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_names_every_missing_unexpected_and_misshapen_key_and_changes_nothing() {
    let dir = temp_dir("errors");
    let path = dir.join("bad.safetensors");
    let (store, _) = tiny(1, 4);
    let mut tensors: BTreeMap<String, Tensor> = store.tensors().into_iter().collect();
    tensors.remove("down_blocks.1.resnets.0.norm1.bias");
    tensors.insert("conv_in.weight".into(), Tensor::zeros([4, 3, 1, 1]));
    tensors.insert("conv_in.weigth".into(), Tensor::zeros([4, 3, 3, 3]));
    tensor::io::save(&path, tensors.iter(), DType::F32).unwrap();

    let (target, _) = tiny(2, 4);
    let before = target
        .get("conv_out.bias")
        .unwrap()
        .value()
        .to_vec()
        .unwrap();
    let err = target.load(&path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(
        msg.contains("missing keys: 'down_blocks.1.resnets.0.norm1.bias'"),
        "{msg}"
    );
    assert!(msg.contains("unexpected keys: 'conv_in.weigth'"), "{msg}");
    assert!(
        msg.contains("'conv_in.weight' (model [4, 3, 3, 3], file [4, 3, 1, 1])"),
        "{msg}"
    );
    match err {
        NnError::StateDict {
            missing,
            unexpected,
            misshapen,
            ..
        } => {
            assert_eq!(missing, ["down_blocks.1.resnets.0.norm1.bias"]);
            assert_eq!(unexpected, ["conv_in.weigth"]);
            assert_eq!(misshapen.len(), 1);
            assert_eq!(misshapen[0].found, [4, 3, 1, 1]);
        }
        other => panic!("wrong error {other:?}"),
    }
    // All or nothing: the valid keys were not loaded either.
    assert_eq!(
        target
            .get("conv_out.bias")
            .unwrap()
            .value()
            .to_vec()
            .unwrap(),
        before
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn loading_builder_names_missing_and_misshapen_keys_and_unused_ones() {
    let (store, _) = tiny(1, 4);
    let mut tensors: BTreeMap<String, Tensor> = store.tensors().into_iter().collect();
    // Missing: the error names the key and the nearest existing ones.
    let mut missing = tensors.clone();
    missing.remove("down_blocks.0.resnets.0.conv1.bias");
    let err = Tiny::new(
        &VarBuilder::from_tensors(&ParamStore::new(), missing, "ckpt"),
        4,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("missing key 'down_blocks.0.resnets.0.conv1.bias' in ckpt"),
        "{err}"
    );
    assert!(
        err.contains("nearest keys: 'down_blocks.0.resnets.0.conv1.weight'"),
        "{err}"
    );
    // Misshapen: a model with 6 channels asks for shapes the 4-channel file lacks.
    let err = Tiny::new(
        &VarBuilder::from_tensors(&ParamStore::new(), tensors.clone(), "ckpt"),
        6,
    )
    .err()
    .unwrap();
    assert!(
        matches!(&err, NnError::ShapeMismatch { key, expected, found, .. }
            if key == "conv_in.weight" && expected == &[6, 3, 3, 3] && found == &[4, 3, 3, 3]),
        "{err}"
    );
    // Unused: finish() names keys no module asked for.
    tensors.insert(
        "time_embedding.linear_1.weight".into(),
        Tensor::zeros([2, 2]),
    );
    let vb = VarBuilder::from_tensors(&ParamStore::new(), tensors, "ckpt");
    Tiny::new(&vb, 4).unwrap();
    assert_eq!(vb.unused_keys(), ["time_embedding.linear_1.weight"]);
    let err = vb.finish().unwrap_err().to_string();
    assert!(
        err.contains("unexpected keys: 'time_embedding.linear_1.weight'"),
        "{err}"
    );
}

#[test]
fn loading_builder_from_a_file_names_missing_keys_with_the_path() {
    let dir = temp_dir("vbfile");
    let path = dir.join("partial.safetensors");
    let w = Tensor::zeros([2, 3]);
    tensor::io::save(&path, [("proj.weight", &w)], DType::F16).unwrap();
    let vb = VarBuilder::from_safetensors(&ParamStore::new(), &path).unwrap();
    let err = Linear::new(vb.pp("proj"), 3, 2, true)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("missing key 'proj.bias'") && err.contains("partial.safetensors"),
        "{err}"
    );
    // A file that does not exist names its path.
    let err = VarBuilder::from_safetensors(&ParamStore::new(), dir.join("nope.safetensors"))
        .err()
        .unwrap();
    assert!(err.to_string().contains("nope.safetensors"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn freeze_by_prefix_respects_dot_boundaries() {
    let store = ParamStore::new();
    for name in [
        "down_blocks.1.conv.weight",
        "down_blocks.10.conv.weight",
        "down_blocks.1.norm.bias",
        "up.weight",
    ] {
        store.insert(name, Tensor::zeros([1])).unwrap();
    }
    assert_eq!(store.freeze("down_blocks.1").unwrap(), 2);
    let frozen: Vec<String> = store
        .params()
        .iter()
        .filter(|p| !p.is_trainable())
        .map(|p| p.name().to_string())
        .collect();
    assert_eq!(
        frozen,
        ["down_blocks.1.conv.weight", "down_blocks.1.norm.bias"]
    );
    assert_eq!(store.unfreeze("down_blocks.1.conv.weight").unwrap(), 1);
    assert_eq!(store.freeze("down_blocks.").unwrap(), 3);
    assert_eq!(store.unfreeze("").unwrap(), 4);
    assert_eq!(store.trainable().len(), 4);
    let err = store.freeze("down_block").unwrap_err().to_string();
    assert!(
        err.contains("'down_block'") && err.contains("no parameter has this prefix"),
        "{err}"
    );
    assert!(nn::under_prefix("a.b.c", "a.b") && !nn::under_prefix("a.bc", "a.b"));
}

#[test]
fn frozen_parameters_get_no_gradient_and_no_update() {
    for adam in [false, true] {
        let (store, model) = tiny(3, 4);
        store.freeze("down_blocks.0").unwrap();
        store.freeze("conv_in").unwrap();
        let before = store.tensors();
        let mut opt: Box<dyn Optimizer> = if adam {
            // weight decay would move a frozen parameter if it were not skipped
            Box::new(AdamW::new(
                &store,
                AdamWConfig {
                    lr: 0.01,
                    weight_decay: 0.5,
                    ..Default::default()
                },
            ))
        } else {
            Box::new(Sgd::new(
                &store,
                SgdConfig {
                    lr: 0.1,
                    momentum: 0.9,
                    weight_decay: 0.5,
                    ..Default::default()
                },
            ))
        };
        let x = Var::constant(Tensor::randn([2, 3, 4, 4], &mut WichmannHill::seed(4)).unwrap());
        for _ in 0..3 {
            let loss = model
                .forward(&x)
                .unwrap()
                .sqr()
                .unwrap()
                .mean_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            for p in store.params() {
                assert_eq!(
                    grads.get_id(p.id()).is_some(),
                    p.is_trainable(),
                    "{}",
                    p.name()
                );
            }
            opt.step(&grads).unwrap();
        }
        for ((name, old), p) in before.iter().zip(store.params()) {
            let same = old.to_vec().unwrap() == p.value().to_vec().unwrap();
            let frozen = name.starts_with("down_blocks.0.") || name.starts_with("conv_in.");
            assert_eq!(same, frozen, "{name} (adam {adam})");
        }
        // Unfrozen again, they train.
        store.unfreeze("conv_in").unwrap();
        let loss = model
            .forward(&x)
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let w = store
            .get("conv_in.weight")
            .unwrap()
            .value()
            .to_vec()
            .unwrap();
        assert_ne!(w, before[0].1.to_vec().unwrap());
    }
}

#[test]
fn set_keeps_the_id_and_rejects_a_wrong_shape() {
    let store = ParamStore::new();
    let p = store.insert("w", Tensor::zeros([2, 2])).unwrap();
    let id = p.id();
    p.set(Tensor::ones([2, 2])).unwrap();
    assert_eq!(p.id(), id);
    assert_eq!(p.value().to_vec().unwrap(), vec![1.0; 4]);
    let err = p.set(Tensor::ones([4])).unwrap_err().to_string();
    assert!(
        err.contains("'w'") && err.contains("[4]") && err.contains("[2, 2]"),
        "{err}"
    );
    // A frozen param reads as a constant: no graph reaches it.
    p.set_trainable(false);
    assert!(!p.var().requires_grad());
    assert!(format!("{p:?}").contains("frozen"));
}
