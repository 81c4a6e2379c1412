//! Fused, numerically stable softmax and log-softmax over the last dim.
//!
//! `softmax(x)_i = e^(x_i − m) / Σ_j e^(x_j − m)` with `m = max_j x_j` (seed 002, "softmax";
//! book ch. 7). The backward uses only the saved output `y`:
//! `dx = y ⊙ (g − Σ g⊙y)` (softmax), `dx = g − e^y Σ g` (log-softmax).
//! Shapes: any `(…, C)`; reduction over `C`.

use crate::tensor::check_compute;
use crate::{Result, Tensor};

impl Tensor {
    fn softmax_impl(&self, log: bool) -> Result<Tensor> {
        let name = if log { "log_softmax" } else { "softmax" };
        check_compute(name, self)?;
        let x = self.contiguous()?;
        let s = x.with_arg(|a| x.device().backend().softmax(a, log))?;
        let y = Tensor::from_storage(s, x.dims(), x.device())?;
        let saved = y.clone();
        y.record(name, &[&x], move |g| {
            let g = g.contiguous()?;
            let dx = saved.with_arg(|ya| g.with_arg(|ga| saved.device().backend().softmax_bwd(ya, ga, log)))?;
            Ok(vec![Some(Tensor::from_storage(dx, saved.dims(), saved.device())?)])
        })
    }

    /// Softmax over the last dim.
    pub fn softmax(&self) -> Result<Tensor> {
        self.softmax_impl(false)
    }

    /// Log-softmax over the last dim.
    pub fn log_softmax(&self) -> Result<Tensor> {
        self.softmax_impl(true)
    }

    /// The composite (unfused) softmax built from primitives: the reference the fused kernel is
    /// tested against.
    pub fn softmax_reference(&self) -> Result<Tensor> {
        let m = self.max(&[-1], true)?.detach();
        let e = self.sub(&m)?.exp()?;
        e.div(&e.sum(&[-1], true)?)
    }
}
