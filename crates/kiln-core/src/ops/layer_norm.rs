//! Fused LayerNorm over the last dim (Ba, Kiros & Hinton 2016; book ch. 10, seed 001 "pre/post-LN").
//!
//! `y = (x − μ)/√(σ² + ε) · w + b` per row, `σ²` the biased variance. Saved for the backward: the
//! input, and per-row `μ` and `rstd = 1/√(σ² + ε)` (llm.c's choice: recomputing `x̂` is cheaper
//! than storing it).
//!
//! # Shapes
//! `x`: (…, C); `w`, `b`: (C); `y`: like `x`.

use crate::tensor::{check_compute, check_same_dtype};
use crate::{Error, Result, Tensor};

/// Checks that an optional per-channel parameter has shape (C) and `x`'s dtype.
pub(crate) fn check_channel_param(op: &'static str, x: &Tensor, p: Option<&Tensor>) -> Result<Option<Tensor>> {
    let Some(p) = p else { return Ok(None) };
    let c = x.dims().last().copied().unwrap_or(0);
    if p.dims() != [c] {
        return Err(Error::ShapeMismatch { op, lhs: x.dims().to_vec(), rhs: p.dims().to_vec() });
    }
    check_same_dtype(op, x, p)?;
    Ok(Some(p.contiguous()?))
}

impl Tensor {
    /// LayerNorm over the last dim C with optional affine weight and bias, fused:
    /// `y = (x − μ)·rstd·w + b` per row, `μ = mean x`, `σ² = mean (x − μ)²` (biased),
    /// `rstd = 1/√(σ² + ε)`.
    ///
    /// Backward (llm.c): with `x̂ = (x − μ)·rstd` and `ĝ = w·dy`,
    /// `dx = rstd·(ĝ − mean ĝ − x̂·mean(ĝ·x̂))`, `dw = Σ_rows dy·x̂`, `db = Σ_rows dy`.
    ///
    /// # Shapes
    /// `self`: (…, C) (N = numel/C rows); `weight`, `bias`: (C); output: like `self`.
    ///
    /// # Numerics
    /// Row statistics use two passes with f64 sums; saved for the backward: the input and per-row
    /// `μ` and `rstd` (N each). `eps` is added to the variance (1e-5 is PyTorch's default).
    ///
    /// # Errors
    /// `UnsupportedDType` for non-float input, `BadShape` for a rank-0 input, `ShapeMismatch` /
    /// `DTypeMismatch` for a weight or bias that is not (C) of the input's dtype.
    pub fn layer_norm(&self, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
        check_compute("layer_norm", self)?;
        if self.rank() == 0 {
            return Err(Error::BadShape { op: "layer_norm", shape: vec![], msg: "needs at least one dim".into() });
        }
        let w = check_channel_param("layer_norm", self, weight)?;
        let b = check_channel_param("layer_norm", self, bias)?;
        let x = self.contiguous()?;
        let backend = x.device().backend();
        let (ws, bs) = (w.as_ref().map(|t| t.storage()), b.as_ref().map(|t| t.storage()));
        let (wl, bl) = (w.as_ref().map(|t| t.layout().clone()), b.as_ref().map(|t| t.layout().clone()));
        let (y, mean, rstd) = backend.layer_norm(
            (&**x.storage(), x.layout()),
            ws.as_ref().zip(wl.as_ref()).map(|(s, l)| (&***s, l)),
            bs.as_ref().zip(bl.as_ref()).map(|(s, l)| (&***s, l)),
            eps,
        )?;
        drop((ws, bs));
        let rows: Vec<usize> = x.dims()[..x.rank() - 1].to_vec();
        let (mean, rstd) =
            (Tensor::from_storage(mean, &rows, x.device())?, Tensor::from_storage(rstd, &rows, x.device())?);
        let y = Tensor::from_storage(y, x.dims(), x.device())?;
        let mut inputs = vec![&x];
        inputs.extend(w.iter());
        inputs.extend(b.iter());
        let (xs, wsv, bsv) = (x.clone(), w.clone(), b.clone());
        y.record("layer_norm", &inputs, move |g| {
            let g = g.contiguous()?;
            let ws = wsv.as_ref().map(|t| t.storage());
            let wl = wsv.as_ref().map(|t| t.layout().clone());
            let (dx, dw, db) = xs.device().backend().layer_norm_bwd(
                (&**xs.storage(), xs.layout()),
                ws.as_ref().zip(wl.as_ref()).map(|(s, l)| (&***s, l)),
                (&**mean.storage(), mean.layout()),
                (&**rstd.storage(), rstd.layout()),
                (&**g.storage(), g.layout()),
            )?;
            let c = [xs.dims()[xs.rank() - 1]];
            let dx = if xs.requires_grad() { Some(Tensor::from_storage(dx, xs.dims(), xs.device())?) } else { None };
            let mut grads = vec![dx];
            if let Some(w) = &wsv {
                let dw = if w.requires_grad() { dw } else { None };
                grads.push(dw.map(|s| Tensor::from_storage(s, &c, xs.device())).transpose()?);
            }
            if let Some(b) = &bsv {
                let db = if b.requires_grad() { db } else { None };
                grads.push(db.map(|s| Tensor::from_storage(s, &c, xs.device())).transpose()?);
            }
            Ok(grads)
        })
    }

    /// LayerNorm composed from primitive ops (mean, sub, sqr, add, sqrt, div, mul): the reference
    /// the fused [`Tensor::layer_norm`] is tested against; same formula, shapes and `eps`, with
    /// autodiff through every primitive instead of the hand-written backward.
    pub fn layer_norm_reference(&self, weight: Option<&Tensor>, bias: Option<&Tensor>, eps: f64) -> Result<Tensor> {
        let mu = self.mean(&[-1], true)?;
        let xc = self.sub(&mu)?;
        let var = xc.sqr()?.mean(&[-1], true)?;
        let mut y = xc.div(&var.add_scalar(eps)?.sqrt()?)?;
        if let Some(w) = weight {
            y = y.mul(w)?;
        }
        if let Some(b) = bias {
            y = y.add(b)?;
        }
        Ok(y)
    }
}
