//! [`Embedding`]: a lookup table of token vectors (book ch. 10 "embeddings"; seed 002), in f32
//! (trainable) or, for inference, kept quantized with rows dequantized on lookup; with tied
//! weights it is also the output head ([`Embedding::attend`]: logits = `x·Eᵀ`).

use crate::linear::{quantized_linear, replace_by_quantized};
use crate::Init;
use kiln_core::module::{join, Module};
use kiln_core::quant::QuantMatrix;
use kiln_core::{DType, Device, Error, Result, Tensor};
use std::sync::Arc;

/// Token (or position) embeddings.
///
/// # Shapes
/// `weight`: (V, C); ids (B, T) → (B, T, C).
#[derive(Clone, Debug)]
pub struct Embedding {
    /// (V, C); an empty placeholder when `quant` holds the table.
    pub weight: Tensor,
    /// The table kept quantized (inference only).
    pub quant: Option<Arc<dyn QuantMatrix>>,
}

impl Embedding {
    /// `N(0, std²)` vectors for `vocab` ids of width `dim`.
    pub fn new(vocab: usize, dim: usize, std: f64, seed: u64, device: &Device) -> Result<Embedding> {
        Ok(Embedding::from_weight(Init::Normal { std }.make(&[vocab, dim], seed, device)?))
    }

    /// The table `weight` (V, C).
    pub fn from_weight(weight: Tensor) -> Embedding {
        Embedding { weight, quant: None }
    }

    /// Replaces the f32 table by the quantized `q` (same (V, C) shape), freeing the f32 copy.
    pub fn quantize(&mut self, q: Arc<dyn QuantMatrix>) -> Result<()> {
        self.quant = Some(replace_by_quantized("Embedding::quantize", &mut self.weight, q)?);
        Ok(())
    }

    /// Rows `ids` of the table.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let Some(q) = &self.quant else {
            return Tensor::embedding(&self.weight, ids);
        };
        let (rows, cols) = q.shape();
        let idx = ids.to_dtype(DType::I64)?.contiguous()?.to_vec::<i64>()?;
        let mut out = vec![0f32; idx.len() * cols];
        for (&i, o) in idx.iter().zip(out.chunks_exact_mut(cols)) {
            let r = usize::try_from(i).ok().filter(|&r| r < rows).ok_or_else(|| Error::Invalid {
                op: "Embedding::forward",
                msg: format!("id {i} outside the table of {rows} rows"),
            })?;
            q.dequantize_row(r, o)?;
        }
        let mut shape = ids.dims().to_vec();
        shape.push(cols);
        Tensor::from_vec(out, &shape, ids.device())
    }

    /// `x (…, C) · Eᵀ` → (…, V): the output head tied to this table.
    pub fn attend(&self, x: &Tensor) -> Result<Tensor> {
        match &self.quant {
            None => x.linear(&self.weight, None),
            Some(q) => quantized_linear(x, q, None),
        }
    }
}

impl Module for Embedding {
    /// `weight` (unless quantized: a quantized table is not a trainable parameter).
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        if self.quant.is_none() {
            f(&join(prefix, "weight"), &self.weight);
        }
    }
}
