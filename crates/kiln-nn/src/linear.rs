//! [`Linear`]: `y = x·Wᵀ + b` (book ch. 4 "fully connected layer").

use crate::Init;
use kiln_core::module::{join, Module};
use kiln_core::{Device, Result, Tensor};

/// A fully connected layer with PyTorch's weight layout.
///
/// # Shapes
/// `weight`: (out, in); `bias`: (out); input (…, in) → output (…, out).
#[derive(Clone, Debug)]
pub struct Linear {
    /// (out, in).
    pub weight: Tensor,
    /// (out), when present.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A new layer with `N(0, std²)` weights and zero bias.
    pub fn new(d_in: usize, d_out: usize, bias: bool, std: f64, seed: u64, device: &Device) -> Result<Linear> {
        Ok(Linear {
            weight: Init::Normal { std }.make(&[d_out, d_in], seed, device)?,
            bias: if bias { Some(Init::Zeros.make(&[d_out], seed, device)?) } else { None },
        })
    }

    /// `x·Wᵀ + b`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

impl Module for Linear {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
        if let Some(b) = &self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
}
