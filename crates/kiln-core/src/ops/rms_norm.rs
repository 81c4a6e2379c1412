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
    /// RMSNorm over the last dim with an optional weight.
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
            let mut grads = vec![Some(Tensor::from_storage(dx, xs.dims(), xs.device())?)];
            if wsv.is_some() {
                let c = [xs.dims()[xs.rank() - 1]];
                grads.push(dw.map(|s| Tensor::from_storage(s, &c, xs.device())).transpose()?);
            }
            Ok(grads)
        })
    }

    /// RMSNorm from primitive ops: the reference for tests.
    pub fn rms_norm_reference(&self, weight: Option<&Tensor>, eps: f64) -> Result<Tensor> {
        let ms = self.sqr()?.mean(&[-1], true)?;
        let y = self.div(&ms.add_scalar(eps)?.sqrt()?)?;
        match weight {
            Some(w) => y.mul(w),
            None => Ok(y),
        }
    }
}
