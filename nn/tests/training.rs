//! The training loop end to end: a tiny model learns, a run stopped halfway and
//! resumed from a checkpoint ends bit for bit where a straight run ends, checkpoints
//! with wrong keys fail naming them, and the callbacks and metrics behave.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use autodiff::Var;
use nn::{
    Activation, AdamW, AdamWConfig, BatchOutput, Checkpointer, EarlyStopping, Ema, Learner, Linear,
    Module, NnError, OneCycle, ParamStore, ProgressBar, Recorder, Sequential, Sgd, SgdConfig,
    StopAfter, StopFlag, VarBuilder,
};
use tensor::data::IndexBatches;
use tensor::random::WichmannHill;
use tensor::Tensor;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nn-train-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `n` points `x: (n, 3)` with targets `y = x . (1.5, -2, 0.5) + 0.3 (+ noise)`.
fn regression_data(n: usize, noise: f32) -> (Tensor, Tensor) {
    let mut rng = WichmannHill::seed(2024);
    let x = Tensor::randn([n, 3], &mut rng).unwrap();
    let w = Tensor::from_vec(vec![1.5, -2.0, 0.5], [3, 1]).unwrap();
    let e = Tensor::randn([n, 1], &mut rng)
        .unwrap()
        .mul_scalar(noise)
        .unwrap();
    let y = x
        .matmul(&w)
        .unwrap()
        .add_scalar(0.3)
        .unwrap()
        .add(&e)
        .unwrap();
    (x, y)
}

type Batch = (Tensor, Tensor);

/// Epoch `e`'s batches: a permutation drawn from a generator seeded by `e`.
fn batches(
    x: &Tensor,
    y: &Tensor,
    bs: usize,
    epoch: usize,
) -> impl Iterator<Item = Result<Batch, NnError>> {
    let (x, y) = (x.clone(), y.clone());
    let n = x.dims()[0];
    IndexBatches::shuffled(n, bs, false, &mut WichmannHill::seed(100 + epoch as u64))
        .unwrap()
        .map(move |idx| Ok((x.index_select(0, &idx)?, y.index_select(0, &idx)?)))
}

fn mlp(vb: &VarBuilder) -> Sequential {
    Sequential::new()
        .with(Linear::new(vb.pp("layers").pp(0), 3, 16, true).unwrap())
        .with(Activation::SiLU)
        .with(Linear::new(vb.pp("layers").pp(2), 16, 1, true).unwrap())
}

fn mse_step(model: &impl Module) -> impl FnMut(&Batch) -> nn::Result<BatchOutput> + '_ {
    move |(x, y): &Batch| {
        let pred = model.forward(&Var::constant(x.clone()))?;
        Ok(BatchOutput::new(
            nn::mse_loss(&pred, &Var::constant(y.clone()))?,
            x.dims()[0],
        ))
    }
}

#[test]
fn linear_regression_loss_drops_a_hundredfold() {
    let (x, y) = regression_data(256, 0.0);
    let store = ParamStore::new();
    let model = Linear::new(
        VarBuilder::from_init(&store, WichmannHill::seed(1)),
        3,
        1,
        true,
    )
    .unwrap();
    let opt = AdamW::new(
        &store,
        AdamWConfig {
            weight_decay: 0.0,
            ..Default::default()
        },
    );
    let recorder = Recorder::new();
    let epochs = 16;
    let mut learner = Learner::new(&store, opt, mse_step(&model), |e| {
        Ok(batches(&x, &y, 32, e))
    })
    .schedule(OneCycle::new(0.1, epochs * 8))
    .callback(ProgressBar::new())
    .callback(recorder.clone());
    let report = learner.fit(epochs).unwrap();
    assert!(!report.stopped);
    assert_eq!(report.steps, epochs * 8);
    assert_eq!(report.epochs.len(), epochs);
    let first = report.epochs[0].train_loss;
    let last = report.epochs[epochs - 1].train_loss;
    assert!(last < first / 100.0, "loss {first} -> {last}");
    // The recorder saw every step with the schedule's lr.
    let records = recorder.records();
    assert_eq!(records.len(), epochs * 8);
    let sched = OneCycle::new(0.1, epochs * 8);
    for r in &records {
        assert_eq!(r.lr, nn::LrSchedule::lr(&sched, r.step));
    }
    // The learned weights are the true ones.
    let w = model.weight.value().to_vec().unwrap();
    for (got, want) in w.iter().zip([1.5, -2.0, 0.5]) {
        assert!((got - want).abs() < 0.05, "{w:?}");
    }
    assert!(report
        .epochs
        .iter()
        .all(|e| e.samples == 256 && e.samples_per_sec > 0.0));
}

/// Everything a run is made of, built fresh from seeds.
struct Run {
    store: ParamStore,
    model: Sequential,
}

fn fresh_run(init_seed: u64) -> Run {
    let store = ParamStore::new();
    let model = mlp(&VarBuilder::from_init(
        &store,
        WichmannHill::seed(init_seed),
    ));
    Run { store, model }
}

const EPOCHS: usize = 3;
const BATCHES: usize = 5; // 80 samples in batches of 16
const TOTAL: usize = EPOCHS * BATCHES;

fn learner<'a>(run: &'a Run, x: &'a Tensor, y: &'a Tensor) -> Learner<'a, Batch> {
    let opt = AdamW::new(
        &run.store,
        AdamWConfig {
            weight_decay: 0.05,
            ..Default::default()
        },
    );
    Learner::new(&run.store, opt, mse_step(&run.model), move |e| {
        Ok(batches(x, y, 16, e))
    })
    .schedule(OneCycle::new(0.05, TOTAL))
    .ema(Ema::new(&run.store, 0.9).unwrap())
    .clip_grad_norm(1.0)
}

fn weights(store: &ParamStore) -> Vec<(String, Vec<f32>)> {
    store
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.to_vec().unwrap()))
        .collect()
}

#[test]
fn stopped_and_resumed_run_matches_a_straight_run_bit_for_bit() {
    let (x, y) = regression_data(80, 0.1);
    let dir = temp_dir("resume");
    let ckpt = dir.join("run.safetensors");

    // Straight through.
    let a = fresh_run(5);
    let mut la = learner(&a, &x, &y);
    let straight = la.fit(EPOCHS).unwrap();
    assert_eq!(straight.steps, TOTAL);

    // Stopped after 7 batches (inside epoch 1), checkpointed every step.
    let half = TOTAL / 2;
    let b = fresh_run(5);
    let mut lb = learner(&b, &x, &y)
        .callback(StopAfter::new(half))
        .callback(Checkpointer::new(&ckpt, 1));
    let stopped = lb.fit(EPOCHS).unwrap();
    assert!(stopped.stopped);
    assert_eq!(stopped.steps, half);
    assert_eq!((lb.state.epoch, lb.state.batch, lb.state.step), (1, 2, 7));
    drop(lb);
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "only the checkpoint, no temp files: {leftovers:?}"
    );

    // Fresh objects (another init seed, so the weights must come from the file).
    let c = fresh_run(99);
    let mut lc = learner(&c, &x, &y);
    lc.resume(&ckpt).unwrap();
    assert_eq!((lc.state.epoch, lc.state.batch, lc.state.step), (1, 2, 7));
    let resumed = lc.fit(EPOCHS).unwrap();
    assert_eq!(resumed.steps, TOTAL - half);

    assert_eq!(weights(&a.store), weights(&c.store));
    let ema = |l: &Learner<Batch>| {
        let e = l.ema_ref().unwrap();
        (
            e.updates(),
            a.store
                .names()
                .iter()
                .map(|n| e.shadow(n).unwrap().to_vec().unwrap())
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(ema(&la), ema(&lc));
    assert_eq!(ema(&la).0, TOTAL as u64);
    let (sa, sc) = (
        la.optimizer().state().unwrap(),
        lc.optimizer().state().unwrap(),
    );
    assert_eq!(sa.meta, sc.meta);
    for ((ka, ta), (kc, tc)) in sa.tensors.iter().zip(&sc.tensors) {
        assert_eq!((ka, ta.to_vec().unwrap()), (kc, tc.to_vec().unwrap()));
    }
    // The resumed epoch's mean loss includes the batches trained before the stop.
    assert_eq!(straight.epochs[1].train_loss, resumed.epochs[0].train_loss);
    assert_eq!(
        straight.epochs[2],
        EpochLossOnly(resumed.epochs[1]).with_time_of(straight.epochs[2])
    );
    // And training did change the weights from the second run's initialisation.
    assert_ne!(weights(&c.store), weights(&fresh_run(99).store));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Compare epoch stats ignoring wall-clock fields.
struct EpochLossOnly(nn::EpochStats);
impl EpochLossOnly {
    fn with_time_of(self, other: nn::EpochStats) -> nn::EpochStats {
        nn::EpochStats {
            seconds: other.seconds,
            samples_per_sec: other.samples_per_sec,
            ..self.0
        }
    }
}

#[test]
fn a_checkpoint_with_wrong_or_missing_keys_fails_naming_the_key() {
    let (x, y) = regression_data(32, 0.0);
    let dir = temp_dir("badkeys");
    let ckpt = dir.join("run.safetensors");
    let run = fresh_run(1);
    let mut l = learner(&run, &x, &y);
    l.fit(1).unwrap();
    l.save_checkpoint(&ckpt).unwrap();

    // A model with a renamed layer: its keys are missing and the file's unexpected.
    let store = ParamStore::new();
    let vb = VarBuilder::from_init(&store, WichmannHill::seed(1));
    let other = Sequential::new()
        .with(Linear::new(vb.pp("layers").pp(0), 3, 16, true).unwrap())
        .with(Linear::new(vb.pp("head"), 16, 1, true).unwrap());
    let opt = AdamW::new(&store, AdamWConfig::default());
    let mut wrong = Learner::new(&store, opt, mse_step(&other), |e| {
        Ok(batches(&x, &y, 16, e))
    })
    .ema(Ema::new(&store, 0.9).unwrap());
    let before = weights(&store);
    let err = wrong.resume(&ckpt).unwrap_err().to_string();
    assert!(
        err.contains("missing keys: 'head.weight', 'head.bias'"),
        "{err}"
    );
    assert!(
        err.contains("unexpected keys: 'layers.2.bias', 'layers.2.weight'"),
        "{err}"
    );
    assert_eq!(weights(&store), before, "a failed resume changes nothing");
    assert_eq!(wrong.state.step, 0);

    // The right model with another optimizer: the kind is named.
    let r = fresh_run(1);
    let opt = Sgd::new(&r.store, SgdConfig::default());
    let mut sgd = Learner::new(&r.store, opt, mse_step(&r.model), |e| {
        Ok(batches(&x, &y, 16, e))
    })
    .ema(Ema::new(&r.store, 0.9).unwrap());
    let err = sgd.resume(&ckpt).unwrap_err().to_string();
    assert!(
        err.contains("state is for optimizer 'adamw', loading into 'sgd'"),
        "{err}"
    );

    // Same names, a misshapen layer: the key and both shapes are named.
    let store = ParamStore::new();
    let vb = VarBuilder::from_init(&store, WichmannHill::seed(1));
    let wide = Sequential::new()
        .with(Linear::new(vb.pp("layers").pp(0), 3, 16, true).unwrap())
        .with(Linear::new(vb.pp("layers").pp(2), 16, 2, true).unwrap());
    let mut fresh = Learner::new(
        &store,
        AdamW::new(&store, AdamWConfig::default()),
        mse_step(&wide),
        |e| Ok(batches(&x, &y, 16, e)),
    )
    .ema(Ema::new(&store, 0.9).unwrap());
    let err = fresh.resume(&ckpt).unwrap_err().to_string();
    assert!(
        err.contains("layers.2.weight") && err.contains("[2, 16]") && err.contains("[1, 16]"),
        "{err}"
    );

    // A plain weights file is not a training checkpoint.
    let plain = dir.join("weights.safetensors");
    run.store.save(&plain).unwrap();
    let err = learner(&fresh_run(1), &x, &y)
        .resume(&plain)
        .unwrap_err()
        .to_string();
    assert!(err.contains("not a training checkpoint"), "{err}");
    // The run without an EMA refuses a checkpoint with EMA shadows.
    let r2 = fresh_run(1);
    let opt = AdamW::new(&r2.store, AdamWConfig::default());
    let mut no_ema = Learner::new(&r2.store, opt, mse_step(&r2.model), |e| {
        Ok(batches(&x, &y, 16, e))
    });
    let err = no_ema.resume(&ckpt).unwrap_err().to_string();
    assert!(err.contains("EMA"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn ema_follows_the_decay_formula_and_copies_back() {
    let store = ParamStore::new();
    let w = store
        .insert("w", Tensor::from_vec(vec![0.0, 10.0], [2]).unwrap())
        .unwrap();
    let mut ema = Ema::new(&store, 0.5).unwrap();
    let mut shadow = [0.0f32, 10.0];
    for v in [1.0f32, 2.0, 4.0] {
        w.set(Tensor::from_vec(vec![v, -v], [2]).unwrap()).unwrap();
        ema.update().unwrap();
        shadow = [
            shadow[0] - 0.5 * (shadow[0] - v),
            shadow[1] - 0.5 * (shadow[1] + v),
        ];
    }
    assert_eq!(ema.shadow("w").unwrap().to_vec().unwrap(), shadow.to_vec());
    assert_eq!(shadow, [2.625, -1.375]);
    ema.copy_to(&store).unwrap();
    assert_eq!(w.value().to_vec().unwrap(), shadow.to_vec());
    // Warmup: decay min(0.999, (1 + n) / (10 + n)) = 2/11 for the first update.
    let mut warm = Ema::new(&store, 0.999).unwrap();
    warm.warmup = true;
    assert!((warm.current_decay() - 2.0 / 11.0).abs() < 1e-12);
    warm.update().unwrap();
    assert!((warm.current_decay() - 3.0 / 12.0).abs() < 1e-12);
    assert!(Ema::new(&store, 1.5).is_err());
}

#[test]
fn a_non_finite_loss_stops_training_naming_the_step() {
    let store = ParamStore::new();
    let w = store
        .insert("w", Tensor::from_vec(vec![1.0], [1]).unwrap())
        .unwrap();
    let opt = Sgd::new(
        &store,
        SgdConfig {
            lr: 1.0,
            ..Default::default()
        },
    );
    // loss = log(w); after the first step w = 0 and the loss is -inf.
    let loss = |_: &()| Ok(BatchOutput::new(w.var().log()?.sum_all()?, 1));
    let mut l = Learner::new(&store, opt, loss, |_| {
        Ok((0..3).map(|_| Ok::<(), NnError>(())))
    });
    let err = l.fit(1).unwrap_err();
    assert!(
        matches!(err, NnError::NonFiniteLoss { step: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("step 1"), "{err}");
}

/// Two Gaussian blobs in 2-d, classes 0 and 1.
fn blobs(n: usize, seed: u64) -> (Tensor, Vec<usize>) {
    let mut rng = WichmannHill::seed(seed);
    let noise = Tensor::randn([n, 2], &mut rng).unwrap().to_vec().unwrap();
    let labels: Vec<usize> = (0..n).map(|i| i % 2).collect();
    let xs: Vec<f32> = noise
        .chunks(2)
        .zip(&labels)
        .flat_map(|(p, &c)| {
            let s = if c == 0 { -2.0 } else { 2.0 };
            [p[0] * 0.5 + s, p[1] * 0.5 - s]
        })
        .collect();
    (Tensor::from_vec(xs, [n, 2]).unwrap(), labels)
}

#[test]
fn classification_reports_accuracy_and_validation_and_stops_early() {
    let (xt, yt) = blobs(64, 1);
    let (xv, yv) = blobs(32, 2);
    let store = ParamStore::new();
    let model = Linear::new(
        VarBuilder::from_init(&store, WichmannHill::seed(3)),
        2,
        2,
        true,
    )
    .unwrap();
    let opt = Sgd::new(
        &store,
        SgdConfig {
            lr: 0.5,
            momentum: 0.9,
            ..Default::default()
        },
    );
    let step = |(x, t): &(Tensor, Vec<usize>)| {
        let logits = model.forward(&Var::constant(x.clone()))?;
        let loss = nn::cross_entropy(&logits, t)?;
        Ok(BatchOutput::new(loss, t.len()).with_classes(logits.value().clone(), t.clone()))
    };
    let split =
        |x: &Tensor, y: &[usize], bs: usize| -> Vec<Result<(Tensor, Vec<usize>), NnError>> {
            (0..y.len())
                .step_by(bs)
                .map(|s| Ok((x.narrow(0, s, bs)?, y[s..s + bs].to_vec())))
                .collect()
        };
    let mut l = Learner::new(&store, opt, step, |_| Ok(split(&xt, &yt, 16)))
        .valid(|_| Ok(split(&xv, &yv, 16)))
        .callback(EarlyStopping::new(2, 1e-3));
    let report = l.fit(50).unwrap();
    let last = report.epochs.last().unwrap();
    assert!(last.train_accuracy.unwrap() > 0.95, "{last:?}");
    assert!(last.valid_accuracy.unwrap() > 0.95, "{last:?}");
    assert!(last.valid_loss.unwrap() < 0.1, "{last:?}");
    // Separable data: the loss keeps falling slowly, so early stopping with a
    // min_delta ends the run well before 50 epochs.
    assert!(
        report.stopped && report.epochs.len() < 50,
        "{} epochs",
        report.epochs.len()
    );
    assert_eq!(l.history.len(), report.epochs.len());
    // The summary line shows both losses and accuracies.
    let line = nn::epoch_line(last, 50);
    assert!(
        line.contains("train loss") && line.contains("valid loss") && line.contains("samples/s"),
        "{line}"
    );
    // Validation ran in eval mode and left the store in train mode.
    assert!(store.is_training());
    // accuracy() agrees with the reported metric on the training set.
    let logits = model.forward(&Var::constant(xt.clone())).unwrap();
    let acc = nn::accuracy(logits.value(), &yt).unwrap();
    assert!(acc > 0.95);
}

#[test]
fn a_raised_stop_flag_stops_after_the_current_batch() {
    let (x, y) = regression_data(64, 0.0);
    let run = fresh_run(1);
    let flag = StopFlag::new();
    flag.raise();
    let mut l = learner(&run, &x, &y).callback(flag.clone());
    let report = l.fit(2).unwrap();
    assert!(report.stopped);
    assert_eq!(report.steps, 1);
    assert!(report.epochs.is_empty());
    assert_eq!((l.state.epoch, l.state.batch), (0, 1));
}
