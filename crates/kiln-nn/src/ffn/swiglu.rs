//! [`SwiGlu`] (Shazeer 2020; LLaMA): `FFN(x) = W_down·(SiLU(W_gate·x) ⊙ W_up·x)`.

use crate::Linear;
use kiln_core::module::{join, Module};
use kiln_core::{Device, Result, Tensor};

/// Gated feed-forward with SiLU gate, HF LLaMA names `gate_proj`, `up_proj`, `down_proj`.
///
/// # Shapes
/// (…, C) → (…, hidden) → (…, C).
#[derive(Clone, Debug)]
pub struct SwiGlu {
    /// C → hidden, through SiLU.
    pub gate: Linear,
    /// C → hidden.
    pub up: Linear,
    /// hidden → C.
    pub down: Linear,
}

impl SwiGlu {
    /// No biases, `N(0, std²)` weights.
    pub fn new(dim: usize, hidden: usize, std: f64, seed: u64, device: &Device) -> Result<SwiGlu> {
        Ok(SwiGlu {
            gate: Linear::new(dim, hidden, false, std, seed, device)?,
            up: Linear::new(dim, hidden, false, std, seed.wrapping_add(1), device)?,
            down: Linear::new(hidden, dim, false, std, seed.wrapping_add(2), device)?,
        })
    }

    /// `down(silu(gate(x)) ⊙ up(x))`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.down.forward(&self.gate.forward(x)?.silu()?.mul(&self.up.forward(x)?)?)
    }
}

impl Module for SwiGlu {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.gate.visit_params(&join(prefix, "gate_proj"), f);
        self.up.visit_params(&join(prefix, "up_proj"), f);
        self.down.visit_params(&join(prefix, "down_proj"), f);
    }
}
