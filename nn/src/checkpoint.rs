//! Training checkpoints: model weights, optimizer state, EMA shadows and the loop's
//! position in one safetensors file, written atomically (temp file + rename), so a
//! crash mid-write leaves the previous checkpoint intact.
//!
//! Layout (all tensors f32, so a resumed run continues bit for bit):
//!
//! | key | what |
//! |---|---|
//! | `model.<param>` | every parameter, e.g. `model.conv_in.weight` |
//! | `optim.<param>.<buffer>` | `exp_avg`, `exp_avg_sq` (AdamW), `momentum_buffer` (SGD) |
//! | `ema.<param>` | EMA shadows, when training keeps an EMA |
//! | metadata `train.*` | `epoch`, `batch` (done in that epoch), `step`, the epoch's running sums |
//! | metadata `optim.*` | `kind`, `lr`, betas, ..., `<param>.step` (exact decimal strings) |
//! | metadata `ema.updates` | the EMA's update count |
//!
//! Generators are not saved: a resume is exact when the data order and any dropout
//! masks are drawn from generators derived from the epoch (or step), as the
//! learner's data factory `epoch -> batches` invites.
//!
//! Loading is strict: a missing, unexpected or misshapen model key fails with an
//! error naming it (checked before anything is changed), as does optimizer or EMA
//! state for a parameter the model lacks.
//!
//! ```
//! use nn::{load_checkpoint, save_checkpoint, ParamStore, Sgd, SgdConfig, TrainState};
//! use tensor::Tensor;
//! let dir = std::env::temp_dir().join(format!("nn-ckpt-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("ckpt.safetensors");
//! let store = ParamStore::new();
//! store.insert("w", Tensor::full([3], 2.0)).unwrap();
//! let opt = Sgd::new(&store, SgdConfig::default());
//! let state = TrainState { epoch: 1, batch: 4, step: 14, ..Default::default() };
//! save_checkpoint(&path, &store, &opt, None, &state).unwrap();
//!
//! let fresh = ParamStore::new();
//! fresh.insert("w", Tensor::zeros([3])).unwrap();
//! let mut opt2 = Sgd::new(&fresh, SgdConfig::default());
//! let back = load_checkpoint(&path, &fresh, &mut opt2, None).unwrap();
//! assert_eq!((back.epoch, back.batch, back.step), (1, 4, 14));
//! assert_eq!(fresh.get("w").unwrap().value().to_vec().unwrap(), vec![2.0; 3]);
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use tensor::io::SafeTensorsFile;
use tensor::Tensor;

use crate::ema::Ema;
use crate::error::{NnError, Result};
use crate::optim::{OptimState, Optimizer};
use crate::param::ParamStore;
use crate::state_dict::write_safetensors;

const FORMAT: &str = "nn-checkpoint-1";

/// Where a training run is: enough to continue it exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TrainState {
    /// The epoch in progress (0-based).
    pub epoch: usize,
    /// Batches finished in that epoch.
    pub batch: usize,
    /// Optimizer steps finished in the whole run (what schedules are indexed by).
    pub step: usize,
    /// The epoch so far: sum of (batch loss x batch samples), samples, correct predictions.
    pub epoch_loss_sum: f64,
    pub epoch_samples: usize,
    pub epoch_correct: usize,
}

/// Write a checkpoint to `path` atomically.
pub fn save_checkpoint(
    path: impl AsRef<Path>,
    store: &ParamStore,
    optimizer: &dyn Optimizer,
    ema: Option<&Ema>,
    state: &TrainState,
) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = store
        .tensors()
        .into_iter()
        .map(|(n, t)| (format!("model.{n}"), t))
        .collect();
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    for (k, v) in [
        ("epoch", state.epoch.to_string()),
        ("batch", state.batch.to_string()),
        ("step", state.step.to_string()),
        ("epoch_loss_sum", state.epoch_loss_sum.to_string()),
        ("epoch_samples", state.epoch_samples.to_string()),
        ("epoch_correct", state.epoch_correct.to_string()),
    ] {
        meta.insert(format!("train.{k}"), v);
    }
    let opt = optimizer.state()?;
    tensors.extend(
        opt.tensors
            .into_iter()
            .map(|(k, t)| (format!("optim.{k}"), t)),
    );
    meta.extend(opt.meta.into_iter().map(|(k, v)| (format!("optim.{k}"), v)));
    if let Some(ema) = ema {
        let (shadows, updates) = ema.state()?;
        tensors.extend(shadows.into_iter().map(|(k, t)| (format!("ema.{k}"), t)));
        meta.insert("ema.updates".into(), updates.to_string());
    }
    write_safetensors(path, &tensors, &meta)
}

/// Restore a checkpoint into a model, its optimizer and (if training keeps one) its
/// EMA; returns where the run was.
pub fn load_checkpoint(
    path: impl AsRef<Path>,
    store: &ParamStore,
    optimizer: &mut dyn Optimizer,
    ema: Option<&mut Ema>,
) -> Result<TrainState> {
    let path = path.as_ref();
    let file = SafeTensorsFile::open(path)?;
    let meta: BTreeMap<String, String> = file
        .metadata()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    match meta.get("format") {
        Some(f) if f == FORMAT => {}
        other => {
            return Err(NnError::checkpoint(
                path,
                format!("not a training checkpoint (format {other:?}, expected '{FORMAT}')"),
            ))
        }
    }
    let mut model = Vec::new();
    let mut opt = OptimState::default();
    let mut shadows = BTreeMap::new();
    for info in file.infos() {
        let name = info.name.as_str();
        if let Some(k) = name.strip_prefix("model.") {
            model.push((k.to_string(), info.shape.clone()));
        } else if let Some(k) = name.strip_prefix("optim.") {
            opt.tensors.push((k.to_string(), file.get(name)?));
        } else if let Some(k) = name.strip_prefix("ema.") {
            shadows.insert(k.to_string(), file.get(name)?);
        } else {
            return Err(NnError::checkpoint(
                path,
                format!("unexpected key '{name}' (keys start with model., optim. or ema.)"),
            ));
        }
    }
    opt.meta = meta
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("optim.").map(|k| (k.to_string(), v.clone())))
        .collect();
    let num = |key: &str| -> Result<String> {
        meta.get(key)
            .cloned()
            .ok_or_else(|| NnError::checkpoint(path, format!("metadata has no '{key}'")))
    };
    let parse_usize = |key: &str| -> Result<usize> {
        let s = num(key)?;
        s.parse().map_err(|_| {
            NnError::checkpoint(path, format!("metadata '{key}' = '{s}' is not a count"))
        })
    };
    let loss_sum_s = num("train.epoch_loss_sum")?;
    let state = TrainState {
        epoch: parse_usize("train.epoch")?,
        batch: parse_usize("train.batch")?,
        step: parse_usize("train.step")?,
        epoch_loss_sum: loss_sum_s.parse().map_err(|_| {
            NnError::checkpoint(
                path,
                format!("metadata 'train.epoch_loss_sum' = '{loss_sum_s}' is not a number"),
            )
        })?,
        epoch_samples: parse_usize("train.epoch_samples")?,
        epoch_correct: parse_usize("train.epoch_correct")?,
    };
    let source = format!("{} (model.*)", path.display());
    store.check_keys(&source, &model)?;
    optimizer
        .load_state(&opt)
        .map_err(|e| NnError::checkpoint(path, e.to_string()))?;
    match ema {
        Some(ema) => {
            let updates = parse_usize("ema.updates")? as u64;
            ema.load_state(&shadows, updates)
                .map_err(|e| NnError::checkpoint(path, e.to_string()))?;
        }
        None if !shadows.is_empty() => {
            return Err(NnError::checkpoint(
                path,
                "the checkpoint holds EMA shadows (ema.*) but this run keeps no EMA",
            ))
        }
        None => {}
    }
    store.load_checked(&source, &model, |k| Ok(file.get(&format!("model.{k}"))?))?;
    Ok(state)
}
