//! [`Embedding`]: a lookup table of token vectors (book ch. 10 "embeddings"; seed 002).

use crate::Init;
use kiln_core::module::{join, Module};
use kiln_core::{Device, Result, Tensor};

/// Token (or position) embeddings.
///
/// # Shapes
/// `weight`: (V, C); ids (B, T) → (B, T, C).
#[derive(Clone, Debug)]
pub struct Embedding {
    /// (V, C).
    pub weight: Tensor,
}

impl Embedding {
    /// `N(0, std²)` vectors for `vocab` ids of width `dim`.
    pub fn new(vocab: usize, dim: usize, std: f64, seed: u64, device: &Device) -> Result<Embedding> {
        Ok(Embedding { weight: Init::Normal { std }.make(&[vocab, dim], seed, device)? })
    }

    /// Rows `ids` of the table.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        Tensor::embedding(&self.weight, ids)
    }
}

impl Module for Embedding {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        f(&join(prefix, "weight"), &self.weight);
    }
}
