//! Learning-rate schedules (book ch. 11 "learning-rate schedules").

use serde::{Deserialize, Serialize};

/// A learning rate as a function of the (1-based) optimizer step.
pub trait LrSchedule {
    /// The learning rate for step `step` (the first update is step 1).
    fn lr(&self, step: u64) -> f64;
}

/// A fixed learning rate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConstantSchedule(pub f64);

impl LrSchedule for ConstantSchedule {
    fn lr(&self, _step: u64) -> f64 {
        self.0
    }
}

/// Linear warmup from 0 to `max_lr` over `warmup` steps, then half-cosine decay to `min_lr` at
/// `total` steps, constant `min_lr` after:
/// `lr(t) = max_lr·t/warmup` for `t ≤ warmup`, else
/// `min_lr + ½(max_lr − min_lr)(1 + cos(π·(t − warmup)/(total − warmup)))`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WarmupCosine {
    /// Peak learning rate.
    pub max_lr: f64,
    /// Floor reached at `total`.
    pub min_lr: f64,
    /// Warmup steps.
    pub warmup: u64,
    /// Step at which the decay reaches `min_lr`.
    pub total: u64,
}

impl LrSchedule for WarmupCosine {
    fn lr(&self, step: u64) -> f64 {
        if step <= self.warmup {
            return self.max_lr * step as f64 / self.warmup.max(1) as f64;
        }
        if step >= self.total {
            return self.min_lr;
        }
        let frac = (step - self.warmup) as f64 / (self.total - self.warmup).max(1) as f64;
        self.min_lr + 0.5 * (self.max_lr - self.min_lr) * (1.0 + (std::f64::consts::PI * frac).cos())
    }
}

/// The original Transformer's schedule (Vaswani et al. 2017, book ch. 11):
/// `lr(t) = factor · d_model^(−½) · min(t^(−½), t · warmup^(−3/2))`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoamSchedule {
    /// Model width.
    pub d_model: usize,
    /// Warmup steps (the peak is at `t = warmup`).
    pub warmup: u64,
    /// Overall multiplier (1 in the paper).
    pub factor: f64,
}

impl LrSchedule for NoamSchedule {
    fn lr(&self, step: u64) -> f64 {
        let t = step.max(1) as f64;
        let w = self.warmup.max(1) as f64;
        self.factor * (self.d_model as f64).powf(-0.5) * t.powf(-0.5).min(t * w.powf(-1.5))
    }
}
