//! [`RmsNorm`] (Zhang & Sennrich 2019; LLaMA): `y = x/√(mean x² + ε)·γ`.

use crate::Init;
use kiln_core::module::{join, Module};
use kiln_core::{Device, Result, Tensor};

/// RMSNorm with a learned gain, on the fused kernel.
///
/// # Shapes
/// `weight`: (C); input (…, C) → output (…, C).
#[derive(Clone, Debug)]
pub struct RmsNorm {
    /// γ, initialised to 1.
    pub weight: Tensor,
    /// Added to the mean square (LLaMA: 1e-5 or 1e-6).
    pub eps: f64,
}

impl RmsNorm {
    /// γ = 1.
    pub fn new(dim: usize, eps: f64, device: &Device) -> Result<RmsNorm> {
        Ok(RmsNorm { weight: Init::Ones.make(&[dim], 0, device)?, eps })
    }

    /// Normalises the last dim.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.rms_norm(Some(&self.weight), self.eps)
    }
}

impl Module for RmsNorm {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
    }
}
