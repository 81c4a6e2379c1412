//! Parameter initialisation.

use kiln_core::{DType, Device, Result, Tensor};

/// How a parameter starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// `N(0, std²)` (GPT-2 uses std 0.02).
    Normal { std: f64 },
    /// All zeros (biases).
    Zeros,
    /// All ones (norm gains).
    Ones,
}

impl Init {
    /// A trainable (requires-grad) tensor of `shape`; `seed` makes normal inits reproducible.
    pub fn make(self, shape: &[usize], seed: u64, device: &Device) -> Result<Tensor> {
        let t = match self {
            Init::Normal { std } => Tensor::randn(shape, 0.0, std, DType::F32, seed, device)?,
            Init::Zeros => Tensor::zeros(shape, DType::F32, device)?,
            Init::Ones => Tensor::ones(shape, DType::F32, device)?,
        };
        Ok(t.requires_grad_())
    }
}
