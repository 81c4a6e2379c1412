//! Quantization-aware training (seed ch. 22 "quantization-aware training"): the forward and
//! backward passes see the weights as they will be after quantization (`ŵ = dequant(quant(w))`,
//! "fake quantization" to ggml blocks), while the optimizer updates the full-precision master
//! weights `w` with the gradient taken at `ŵ` — the straight-through estimator
//! `∂L/∂w ≈ ∂L/∂ŵ` (Bengio et al. 2013; Jacob et al. 2018), since rounding has zero derivative
//! almost everywhere. The model learns weights whose quantized versions work, so post-training
//! rounding to the same format (`kiln quantize --type …`) loses less.
//!
//! Implemented by swapping storage, not by a new op: [`FakeQuant::swap_in`] writes `ŵ` into each
//! parameter (keeping `w` aside) before the micro-batches, [`FakeQuant::restore`] puts `w` back
//! after the backward passes and before the optimizer step. The gradients accumulated in between
//! are exactly the straight-through ones, and the models need no change.

use kiln_core::{Error, Result, Tensor};
use kiln_formats::quant::{dequantize, quantize};
use kiln_formats::GgmlType;

/// Fake quantization to one of ggml's 32-weight block types.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FakeQuant {
    /// Q8_0, Q4_0 or Q4_1.
    pub ty: GgmlType,
}

impl FakeQuant {
    /// `q8_0`, `q4_0` or `q4_1`.
    pub fn parse(name: &str) -> Result<FakeQuant> {
        GgmlType::from_name(name)
            .filter(|t| matches!(t, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1))
            .map(|ty| FakeQuant { ty })
            .ok_or_else(|| Error::Invalid { op: "FakeQuant", msg: format!("{name:?}: expected q8_0, q4_0 or q4_1") })
    }

    /// `dequant(quant(w))` of `w` (rows, cols), cols a whole number of blocks.
    pub fn fake(&self, w: &Tensor) -> Result<Tensor> {
        let bad =
            |e: kiln_formats::FormatError| Error::Invalid { op: "FakeQuant", msg: format!("{:?}: {e}", w.dims()) };
        let v = w.contiguous()?.to_vec::<f32>()?;
        let q = dequantize(self.ty, &quantize(self.ty, &v).map_err(bad)?, v.len()).map_err(bad)?;
        Tensor::from_vec(q, w.dims(), w.device())
    }

    /// Writes the fake-quantized weights into `params`; returns the master copies.
    pub fn swap_in(&self, params: &[Tensor]) -> Result<Vec<Tensor>> {
        params
            .iter()
            .map(|p| {
                let master = p.copy()?;
                p.assign_(&self.fake(&master)?)?;
                Ok(master)
            })
            .collect()
    }

    /// Puts the master weights back (their gradients stay).
    pub fn restore(params: &[Tensor], masters: &[Tensor]) -> Result<()> {
        params.iter().zip(masters).try_for_each(|(p, m)| p.assign_(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The straight-through gradient of `L = Σ (x·ŵᵀ)²` is the gradient at `ŵ`, and the master
    /// weights come back unchanged.
    #[test]
    fn gradients_are_taken_at_the_quantized_weights() -> Result<()> {
        let dev = kiln_cpu::cpu();
        let w = Tensor::from_vec((0..64).map(|i| (i as f32 * 0.37).sin()).collect(), &[2, 32], &dev)?.requires_grad_();
        let x = Tensor::from_vec((0..96).map(|i| (i as f32 * 0.11).cos()).collect(), &[3, 32], &dev)?;
        let fq = FakeQuant::parse("q4_0")?;
        let before = w.to_vec::<f32>()?;
        let masters = fq.swap_in(std::slice::from_ref(&w))?;
        let w_hat = w.to_vec::<f32>()?;
        assert_ne!(w_hat, before);
        assert_eq!(w_hat, fq.fake(&masters[0])?.to_vec::<f32>()?);
        let y = x.matmul(&w.t()?)?;
        y.mul(&y)?.sum_all()?.backward()?;
        FakeQuant::restore(std::slice::from_ref(&w), &masters)?;
        assert_eq!(w.to_vec::<f32>()?, before);
        let g = w.grad().map(|g| g.to_vec::<f32>()).transpose()?.unwrap_or_default();
        // ∂/∂ŵ_kc Σ_i (Σ_c' x_ic' ŵ_kc')² = 2 Σ_i y_ik x_ic with y at ŵ
        let (xv, yv) = (x.to_vec::<f32>()?, y.to_vec::<f32>()?);
        for k in 0..2 {
            for c in 0..32 {
                let want: f32 = (0..3).map(|i| 2.0 * yv[i * 2 + k] * xv[i * 32 + c]).sum();
                assert!((g[k * 32 + c] - want).abs() < 1e-4 * want.abs().max(1.0), "({k},{c})");
            }
        }
        assert!(FakeQuant::parse("q6_k").is_err());
        Ok(())
    }
}
