//! [`Linear`]: `y = x·Wᵀ + b` (book ch. 4 "fully connected layer"), with `W` either an f32
//! tensor (trainable) or, for inference, a quantized matrix multiplied without materialising it
//! (seed 004 "quantization": decoding streams the weight bytes once per token, so fewer bytes
//! per weight is proportionally faster).

use crate::{Init, InputGram};
use kiln_core::module::{join, Module};
use kiln_core::quant::QuantMatrix;
use kiln_core::{DType, Device, Error, Result, Tensor};
use std::sync::Arc;

/// A fully connected layer with PyTorch's weight layout.
///
/// # Shapes
/// `weight`: (out, in); `bias`: (out); input (…, in) → output (…, out).
#[derive(Clone, Debug)]
pub struct Linear {
    /// (out, in); an empty placeholder when `quant` holds the weight.
    pub weight: Tensor,
    /// (out), when present.
    pub bias: Option<Tensor>,
    /// The weight kept quantized (inference only; no gradient flows to it).
    pub quant: Option<Arc<dyn QuantMatrix>>,
    /// When set, every forward adds its input's `xᵀ·x` here (GPTQ calibration).
    pub calibration: Option<Arc<InputGram>>,
}

impl Linear {
    /// A new layer with `N(0, std²)` weights and zero bias.
    pub fn new(d_in: usize, d_out: usize, bias: bool, std: f64, seed: u64, device: &Device) -> Result<Linear> {
        Ok(Linear {
            weight: Init::Normal { std }.make(&[d_out, d_in], seed, device)?,
            bias: if bias { Some(Init::Zeros.make(&[d_out], seed, device)?) } else { None },
            quant: None,
            calibration: None,
        })
    }

    /// Replaces the f32 weight by the quantized `q` (same (out, in) shape), freeing the f32 copy.
    pub fn quantize(&mut self, q: Arc<dyn QuantMatrix>) -> Result<()> {
        self.quant = Some(replace_by_quantized("Linear::quantize", &mut self.weight, q)?);
        Ok(())
    }

    /// `x·Wᵀ + b`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(c) = &self.calibration {
            c.observe(x)?;
        }
        match &self.quant {
            None => x.linear(&self.weight, self.bias.as_ref()),
            Some(q) => quantized_linear(x, q, self.bias.as_ref()),
        }
    }
}

/// Checks that `q` has `weight`'s (rows, cols) shape and swaps `weight` for an empty
/// placeholder (freeing the f32 copy); returns `q` to store. Shared by the layers that can hold
/// a quantized matrix ([`Linear`], [`crate::Embedding`]).
pub(crate) fn replace_by_quantized(
    op: &'static str,
    weight: &mut Tensor,
    q: Arc<dyn QuantMatrix>,
) -> Result<Arc<dyn QuantMatrix>> {
    let (rows, cols) = q.shape();
    if weight.dims() != [rows, cols] {
        return Err(Error::ShapeMismatch { op, lhs: weight.dims().to_vec(), rhs: vec![rows, cols] });
    }
    *weight = Tensor::zeros(&[0], DType::F32, weight.device())?;
    Ok(q)
}

/// `x (…, in) · Wᵀ + b` with a quantized `W` (rows, cols) = (out, in), inference only (no
/// gradient), never materialising `W` ([`QuantMatrix::matmul_t`]).
pub fn quantized_linear(x: &Tensor, q: &Arc<dyn QuantMatrix>, bias: Option<&Tensor>) -> Result<Tensor> {
    let y = x.quantized_matmul(q)?;
    match bias {
        Some(b) => y.add(b),
        None => Ok(y),
    }
}

impl Module for Linear {
    /// `weight` (unless quantized: a quantized weight is not a trainable parameter), `bias`.
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        if self.quant.is_none() {
            f(&join(prefix, "weight"), &self.weight);
        }
        if let Some(b) = &self.bias {
            f(&join(prefix, "bias"), b);
        }
    }
}
