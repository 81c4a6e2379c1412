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
    /// LayerNorm over the last dim with optional affine weight and bias.
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
        let (xs, wsv, has_b) = (x.clone(), w.clone(), b.is_some());
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
            let mut grads = vec![Some(Tensor::from_storage(dx, xs.dims(), xs.device())?)];
            if wsv.is_some() {
                grads.push(dw.map(|s| Tensor::from_storage(s, &c, xs.device())).transpose()?);
            }
            if has_b {
                grads.push(db.map(|s| Tensor::from_storage(s, &c, xs.device())).transpose()?);
            }
            Ok(grads)
        })
    }

    /// LayerNorm from primitive ops (mean, sub, sqr, sqrt, div): the reference the fused kernel is
    /// tested against.
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
