//! Parameter initialisation.

use kiln_core::{DType, Device, Result, Tensor};
use std::cell::Cell;

thread_local! {
    static SKIP: Cell<bool> = const { Cell::new(false) };
}

/// While alive, [`Init::make`] on this thread fills every parameter with zeros instead of
/// drawing random numbers: for models about to be overwritten by a checkpoint (like
/// transformers' `no_init_weights`), where drawing ~10⁸ normal samples would only waste time.
#[derive(Debug)]
pub struct SkipInitGuard {
    prev: bool,
}

impl SkipInitGuard {
    /// Starts skipping; the previous state returns when the guard drops.
    pub fn new() -> SkipInitGuard {
        SkipInitGuard { prev: SKIP.with(|s| s.replace(true)) }
    }
}

impl Default for SkipInitGuard {
    fn default() -> Self {
        SkipInitGuard::new()
    }
}

impl Drop for SkipInitGuard {
    fn drop(&mut self) {
        SKIP.with(|s| s.set(self.prev));
    }
}

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
            // zeros from the allocator (calloc): large tables stay untouched zero pages, so a
            // loader that replaces or quantizes them never pays for the f32 copy
            Init::Normal { .. } if SKIP.with(Cell::get) => {
                Tensor::from_vec(vec![0f32; shape.iter().product()], shape, device)?
            }
            Init::Normal { std } => Tensor::randn(shape, 0.0, std, DType::F32, seed, device)?,
            Init::Zeros => Tensor::zeros(shape, DType::F32, device)?,
            Init::Ones => Tensor::ones(shape, DType::F32, device)?,
        };
        Ok(t.requires_grad_())
    }
}
