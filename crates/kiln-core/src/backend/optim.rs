//! Fused, in-place optimizer updates (one pass over parameter, gradient and state).

use super::{not_impl, Arg, Storage};
use crate::{Layout, Result};

/// Hyper-parameters of one AdamW step (Loshchilov & Hutter; book ch. 11 "AdamW").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// Learning rate at this step.
    pub lr: f64,
    /// First-moment decay β₁.
    pub beta1: f64,
    /// Second-moment decay β₂.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay λ (0 for norms and biases).
    pub weight_decay: f64,
    /// 1-based step number, for bias correction.
    pub step: u64,
}

/// Optimizer kernels.
pub trait OptimOps {
    /// In place, elementwise over contiguous `param`, `m`, `v` and `grad` of one shape:
    /// `m = β₁m + (1−β₁)g`, `v = β₂v + (1−β₂)g²`, `m̂ = m/(1−β₁ᵗ)`, `v̂ = v/(1−β₂ᵗ)`,
    /// `p = p − lr·(m̂/(√v̂ + ε) + λp)`.
    fn adamw_step(
        &self,
        param: (&mut dyn Storage, &Layout),
        m: &mut dyn Storage,
        v: &mut dyn Storage,
        grad: Arg,
        hp: &AdamWStep,
    ) -> Result<()> {
        let _ = (param, m, v, grad, hp);
        not_impl("adamw_step", "?")
    }
}
