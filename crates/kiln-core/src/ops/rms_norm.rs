//! Fused RMSNorm over the last dim (Zhang & Sennrich 2019; seed 001 "RMSNorm", LLaMA's norm).
//!
//! `y = x / √(mean x² + ε) · w` per row: LayerNorm without centring or bias. Saved for the
//! backward: the input and per-row `rstd`.
//!
//! # Shapes
//! `x`: (…, C); `w`: (C); `y`: like `x`.

use super::layer_norm::check_channel_param;
use crate::tensor::check_compute;
use crate::{Error, Result, Tensor};

impl Tensor {
    /// RMSNorm over the last dim C with an optional weight, fused: `y = x·rstd·w` per row,
    /// `rstd = 1/√(mean x² + ε)`.
    ///
    /// Backward: with `ĝ = w·dy`, `dx = rstd·(ĝ − x·rstd²·mean(ĝ·x))`, `dw = Σ_rows dy·x·rstd`.
    ///
    /// # Shapes
    /// `self`: (…, C) (N = numel/C rows); `weight`: (C); output: like `self`.
    ///
    /// # Numerics
    /// `mean x²` is accumulated in f64; saved for the backward: the input and per-row `rstd` (N).
    ///
    /// # Errors
    /// `UnsupportedDType` for non-float input, `BadShape` for a rank-0 input, `ShapeMismatch` /
    /// `DTypeMismatch` for a weight that is not (C) of the input's dtype.
    pub fn rms_norm(&self, weight: Option<&Tensor>, eps: f64) -> Result<Tensor> {
        check_compute("rms_norm", self)?;
        if self.rank() == 0 {
            return Err(Error::BadShape { op: "rms_norm", shape: vec![], msg: "needs at least one dim".into() });
        }
        let w = check_channel_param("rms_norm", self, weight)?;
        let x = self.contiguous()?;
        let ws = w.as_ref().map(|t| t.storage());
        let wl = w.as_ref().map(|t| t.layout().clone());
        let (y, rstd) = x.device().backend().rms_norm(
            (&**x.storage(), x.layout()),
            ws.as_ref().zip(wl.as_ref()).map(|(s, l)| (&***s, l)),
            eps,
        )?;
        drop(ws);
        let rstd = Tensor::from_storage(rstd, &x.dims()[..x.rank() - 1], x.device())?;
        let y = Tensor::from_storage(y, x.dims(), x.device())?;
        let mut inputs = vec![&x];
        inputs.extend(w.iter());
        let (xs, wsv) = (x.clone(), w.clone());
        y.record("rms_norm", &inputs, move |g| {
            let g = g.contiguous()?;
            let ws = wsv.as_ref().map(|t| t.storage());
            let wl = wsv.as_ref().map(|t| t.layout().clone());
            let (dx, dw) = xs.device().backend().rms_norm_bwd(
                (&**xs.storage(), xs.layout()),
                ws.as_ref().zip(wl.as_ref()).map(|(s, l)| (&***s, l)),
                (&**rstd.storage(), rstd.layout()),
                (&**g.storage(), g.layout()),
            )?;
            let dx = if xs.requires_grad() { Some(Tensor::from_storage(dx, xs.dims(), xs.device())?) } else { None };
            let mut grads = vec![dx];
            if let Some(w) = &wsv {
                let c = [xs.dims()[xs.rank() - 1]];
                let dw = if w.requires_grad() { dw } else { None };
                grads.push(dw.map(|s| Tensor::from_storage(s, &c, xs.device())).transpose()?);
            }
            Ok(grads)
        })
    }

    /// RMSNorm composed from primitive ops (sqr, mean, add, sqrt, div, mul): the reference the
    /// fused [`Tensor::rms_norm`] is tested against; same formula, shapes and `eps`.
    pub fn rms_norm_reference(&self, weight: Option<&Tensor>, eps: f64) -> Result<Tensor> {
        let ms = self.sqr()?.mean(&[-1], true)?;
        let y = self.div(&ms.add_scalar(eps)?.sqrt()?)?;
        match weight {
            Some(w) => y.mul(w),
            None => Ok(y),
        }
    }
}
