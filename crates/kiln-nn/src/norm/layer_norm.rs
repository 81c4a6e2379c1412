//! [`LayerNorm`] (Ba et al. 2016): `y = (x − μ)/√(σ² + ε)·γ + β` over the last dim.

use crate::Init;
use kiln_core::module::{join, Module};
use kiln_core::{Device, Result, Tensor};

/// LayerNorm with learned gain γ and (optional) bias β, on the fused kernel.
///
/// # Shapes
/// `weight`, `bias`: (C); input (…, C) → output (…, C).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// γ, initialised to 1.
    pub weight: Tensor,
    /// β, initialised to 0.
    pub bias: Option<Tensor>,
    /// Added to the variance (GPT-2: 1e-5, BERT: 1e-12).
    pub eps: f64,
}

impl LayerNorm {
    /// γ = 1, β = 0.
    pub fn new(dim: usize, bias: bool, eps: f64, device: &Device) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: Init::Ones.make(&[dim], 0, device)?,
            bias: if bias { Some(Init::Zeros.make(&[dim], 0, device)?) } else { None },
            eps,
        })
    }

    /// Normalises the last dim.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.layer_norm(Some(&self.weight), self.bias.as_ref(), self.eps)
    }
}

impl Module for LayerNorm {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
}
