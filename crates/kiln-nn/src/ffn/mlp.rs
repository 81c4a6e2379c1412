//! [`Mlp`]: `FFN(x) = W₂·act(W₁x + b₁) + b₂` (the Transformer's and GPT-2's feed-forward block).

use crate::Linear;
use kiln_core::module::{join, Module};
use kiln_core::{Device, Result, Tensor};
use serde::{Deserialize, Serialize};

/// The non-linearity between the two projections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(0, x)` (the original Transformer).
    Relu,
    /// Exact GELU (BERT).
    Gelu,
    /// GELU, tanh approximation (GPT-2's `gelu_new`).
    GeluTanh,
    /// SiLU / Swish.
    Silu,
}

impl Activation {
    /// Applies the activation.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu(),
            Activation::GeluTanh => x.gelu_tanh(),
            Activation::Silu => x.silu(),
        }
    }
}

/// Two-layer MLP with HF/GPT-2 names `c_fc`, `c_proj`.
///
/// # Shapes
/// (…, C) → (…, hidden) → (…, C).
#[derive(Clone, Debug)]
pub struct Mlp {
    /// C → hidden.
    pub fc: Linear,
    /// hidden → C.
    pub proj: Linear,
    /// Between them.
    pub act: Activation,
}

impl Mlp {
    /// C → `hidden` → C with `act` between; `(std, proj_std)` are the init scales of the two
    /// projections (GPT-2 scales the residual projection by 1/√(2L)).
    pub fn new(
        dim: usize,
        hidden: usize,
        act: Activation,
        bias: bool,
        (std, proj_std): (f64, f64),
        seed: u64,
        device: &Device,
    ) -> Result<Mlp> {
        Ok(Mlp {
            fc: Linear::new(dim, hidden, bias, std, seed, device)?,
            proj: Linear::new(hidden, dim, bias, proj_std, seed.wrapping_add(1), device)?,
            act,
        })
    }

    /// `proj(act(fc(x)))`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.proj.forward(&self.act.apply(&self.fc.forward(x)?)?)
    }
}

impl Module for Mlp {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.fc.visit_params(&join(prefix, "c_fc"), f);
        self.proj.visit_params(&join(prefix, "c_proj"), f);
    }
}
