//! Learning-rate schedules as pure functions of the optimizer step (0 for the first
//! step), so resuming from a checkpoint needs only the step count.
//!
//! - [`OneCycle`]: `torch.optim.lr_scheduler.OneCycleLR`, same formula and defaults.
//!   With `initial = max_lr / div_factor` and `min = initial / final_div_factor`, two
//!   phases by default: warm up from `initial` to `max_lr` until step
//!   `pct_start * total_steps - 1`, then anneal to `min` at step `total_steps - 1`;
//!   within a phase `pct = (step - start) / (end - start)` and the cosine anneal is
//!   `end + (start - end) / 2 * (cos(pi pct) + 1)`. Momentum (or Adam's beta1) moves
//!   the opposite way, `max_momentum -> base_momentum -> max_momentum`.
//!   `three_phase` adds torch's symmetric warm-down phase.
//! - [`CosineAnnealing`]: `CosineAnnealingLR`'s closed form,
//!   `eta_min + (base_lr - eta_min) (1 + cos(pi step / t_max)) / 2`.
//!
//! Introduced with the course's "1cycle" training (the Learner's `OneCycleLR`).
//!
//! ```
//! use nn::{LrSchedule, OneCycle};
//! let s = OneCycle::new(0.1, 100);                // torch: OneCycleLR(opt, 0.1, total_steps=100)
//! assert!((s.lr(0) - 0.004).abs() < 1e-12);       // max_lr / 25
//! assert!((s.lr(29) - 0.1).abs() < 1e-12);        // the peak at 0.3 * 100 - 1
//! assert!((s.lr(99) - 4e-7).abs() < 1e-15);       // initial / 1e4
//! assert!((s.momentum(29).unwrap() - 0.85).abs() < 1e-12); // beta1 at its lowest
//! ```

use std::f64::consts::PI;

/// A learning rate (and optionally a momentum) for each optimizer step.
pub trait LrSchedule {
    /// The learning rate for step `step` (0-based).
    fn lr(&self, step: usize) -> f64;
    /// The momentum (SGD) or beta1 (Adam) for step `step`, if the schedule sets one.
    fn momentum(&self, _step: usize) -> Option<f64> {
        None
    }
}

/// Any `Fn(step) -> lr` is a schedule.
impl<F: Fn(usize) -> f64> LrSchedule for F {
    fn lr(&self, step: usize) -> f64 {
        self(step)
    }
}

/// How a phase moves between its end points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anneal {
    Cos,
    Linear,
}

impl Anneal {
    fn apply(self, start: f64, end: f64, pct: f64) -> f64 {
        match self {
            Anneal::Cos => end + (start - end) / 2.0 * ((PI * pct).cos() + 1.0),
            Anneal::Linear => (end - start) * pct + start,
        }
    }
}

/// `torch.optim.lr_scheduler.OneCycleLR`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OneCycle {
    pub max_lr: f64,
    pub total_steps: usize,
    pub pct_start: f64,
    pub anneal: Anneal,
    pub cycle_momentum: bool,
    pub base_momentum: f64,
    pub max_momentum: f64,
    pub div_factor: f64,
    pub final_div_factor: f64,
    pub three_phase: bool,
}

impl OneCycle {
    /// torch's defaults: `pct_start = 0.3`, cosine, momentum 0.95 -> 0.85 -> 0.95,
    /// `div_factor = 25`, `final_div_factor = 1e4`, two phases.
    pub fn new(max_lr: f64, total_steps: usize) -> OneCycle {
        OneCycle {
            max_lr,
            total_steps,
            pct_start: 0.3,
            anneal: Anneal::Cos,
            cycle_momentum: true,
            base_momentum: 0.85,
            max_momentum: 0.95,
            div_factor: 25.0,
            final_div_factor: 1e4,
            three_phase: false,
        }
    }

    /// (lr, momentum) at `step`; steps past `total_steps` use `total_steps` (torch
    /// raises there).
    pub fn at(&self, step: usize) -> (f64, f64) {
        let initial = self.max_lr / self.div_factor;
        let min = initial / self.final_div_factor;
        let total = self.total_steps as f64;
        let p = self.pct_start;
        let (max_m, base_m) = (self.max_momentum, self.base_momentum);
        // (end_step, lr from, lr to, momentum from, momentum to)
        let phases: Vec<(f64, f64, f64, f64, f64)> = if self.three_phase {
            vec![
                (p * total - 1.0, initial, self.max_lr, max_m, base_m),
                (2.0 * p * total - 2.0, self.max_lr, initial, base_m, max_m),
                (total - 1.0, initial, min, max_m, max_m),
            ]
        } else {
            vec![
                (p * total - 1.0, initial, self.max_lr, max_m, base_m),
                (total - 1.0, self.max_lr, min, base_m, max_m),
            ]
        };
        let step = step.min(self.total_steps) as f64;
        let mut start = 0.0;
        for (i, &(end, lr0, lr1, m0, m1)) in phases.iter().enumerate() {
            if step <= end || i == phases.len() - 1 {
                // torch divides by zero here when a phase is empty; take its end.
                let pct = if end == start {
                    1.0
                } else {
                    (step - start) / (end - start)
                };
                return (
                    self.anneal.apply(lr0, lr1, pct),
                    self.anneal.apply(m0, m1, pct),
                );
            }
            start = end;
        }
        (min, max_m)
    }
}

impl LrSchedule for OneCycle {
    fn lr(&self, step: usize) -> f64 {
        self.at(step).0
    }
    fn momentum(&self, step: usize) -> Option<f64> {
        self.cycle_momentum.then(|| self.at(step).1)
    }
}

/// `torch.optim.lr_scheduler.CosineAnnealingLR` (closed form; periodic past `t_max`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineAnnealing {
    pub base_lr: f64,
    pub t_max: usize,
    pub eta_min: f64,
}

impl CosineAnnealing {
    pub fn new(base_lr: f64, t_max: usize) -> CosineAnnealing {
        CosineAnnealing {
            base_lr,
            t_max,
            eta_min: 0.0,
        }
    }
}

impl LrSchedule for CosineAnnealing {
    fn lr(&self, step: usize) -> f64 {
        if self.t_max == 0 {
            return self.eta_min;
        }
        let c = (step as f64 * PI / self.t_max as f64).cos();
        self.eta_min + (self.base_lr - self.eta_min) * (1.0 + c) / 2.0
    }
}
