//! AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019; book ch. 11).
//!
//! Per parameter: `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//! `p ← p − lr·(m̂/(√v̂ + ε) + λ·p)` with bias-corrected `m̂ = m/(1−β₁ᵗ)`, `v̂ = v/(1−β₂ᵗ)`.
//! Weight decay applies only to parameters with 2 or more dims (matrices, embeddings), never to
//! norms and biases — the GPT-2/nanoGPT convention. The update is one fused in-place kernel.

use kiln_core::backend::AdamWStep;
use kiln_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// AdamW hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// β₁.
    pub beta1: f64,
    /// β₂.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay λ for matrices.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    /// PyTorch's defaults except weight decay 0.1 and β₂ 0.95 (the GPT-3/nanoGPT setting).
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: 0.1 }
    }
}

struct Slot {
    name: String,
    param: Tensor,
    m: Tensor,
    v: Tensor,
    decay: bool,
}

/// The optimizer: one `(m, v)` pair per named parameter.
pub struct AdamW {
    cfg: AdamWConfig,
    slots: Vec<Slot>,
    step: u64,
}

impl AdamW {
    /// An optimizer over `params` (name → tensor), state zeroed.
    pub fn new(params: Vec<(String, Tensor)>, cfg: AdamWConfig) -> Result<AdamW> {
        let slots = params
            .into_iter()
            .map(|(name, param)| {
                Ok(Slot { m: param.zeros_like()?, v: param.zeros_like()?, decay: param.rank() >= 2, name, param })
            })
            .collect::<Result<_>>()?;
        Ok(AdamW { cfg, slots, step: 0 })
    }

    /// Number of updates taken.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Applies one update with learning rate `lr` to every parameter that has a gradient.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        self.step += 1;
        for s in &self.slots {
            let Some(g) = s.param.grad() else { continue };
            let hp = AdamWStep {
                lr,
                beta1: self.cfg.beta1,
                beta2: self.cfg.beta2,
                eps: self.cfg.eps,
                weight_decay: if s.decay { self.cfg.weight_decay } else { 0.0 },
                step: self.step,
            };
            s.param.adamw_step_(&s.m, &s.v, &g, &hp)?;
        }
        Ok(())
    }

    /// Clears every parameter's gradient.
    pub fn zero_grad(&self) {
        self.slots.iter().for_each(|s| s.param.zero_grad());
    }

    /// The parameters, in order.
    pub fn params(&self) -> Vec<Tensor> {
        self.slots.iter().map(|s| s.param.clone()).collect()
    }

    /// Optimizer state as named tensors (`<param>.exp_avg`, `<param>.exp_avg_sq`) for
    /// checkpoints; the step count is returned alongside.
    pub fn state(&self) -> (Vec<(String, Tensor)>, u64) {
        let mut out = Vec::with_capacity(2 * self.slots.len());
        for s in &self.slots {
            out.push((format!("{}.exp_avg", s.name), s.m.clone()));
            out.push((format!("{}.exp_avg_sq", s.name), s.v.clone()));
        }
        (out, self.step)
    }

    /// Restores state saved by [`AdamW::state`]; every moment must be present with the right shape.
    pub fn load_state(&mut self, state: &[(String, Tensor)], step: u64) -> Result<()> {
        let find = |n: String| {
            state.iter().find(|(k, _)| *k == n).map(|(_, t)| t.clone()).ok_or(kiln_core::Error::Invalid {
                op: "AdamW::load_state",
                msg: format!("optimizer state has no tensor {n}"),
            })
        };
        for s in &self.slots {
            s.m.assign_(&find(format!("{}.exp_avg", s.name))?)?;
            s.v.assign_(&find(format!("{}.exp_avg_sq", s.name))?)?;
        }
        self.step = step;
        Ok(())
    }
}
