//! Inverted dropout (Srivastava et al. 2014; book ch. 4, seed 001 "dropout").
//!
//! Training: `y = x ⊙ m / (1 − p)` with `m_i ~ Bernoulli(1 − p)` drawn from the counter-based RNG
//! seeded with `seed` (so a step is reproducible for any thread count); evaluation: `y = x`.
//! Backward: `dx = g ⊙ m / (1 − p)` with the saved scaled mask.

use crate::tensor::check_compute;
use crate::{no_grad, Error, Result, Tensor};

impl Tensor {
    /// Inverted dropout with drop probability `p`: `y = x ⊙ m/(1 − p)`, `m_i = [u_i ≥ p]`,
    /// `u = Tensor::rand(shape, 0, 1, seed)` (counter-based, so the same seed gives the same mask
    /// for any thread count). Identity when `!train` or `p = 0`; zeros (and zero gradient) when
    /// `p = 1`. Recorded as the op `dropout` with backward `dx = g ⊙ m/(1 − p)` (the scaled mask is
    /// the saved state).
    ///
    /// # Shapes
    /// `self`: any shape; output: the same.
    ///
    /// # Errors
    /// `Invalid` when `p` is not in `[0, 1]` (NaN included), `UnsupportedDType` for a non-float
    /// input.
    pub fn dropout(&self, p: f64, seed: u64, train: bool) -> Result<Tensor> {
        check_compute("dropout", self)?;
        if !(0.0..=1.0).contains(&p) {
            return Err(Error::Invalid { op: "dropout", msg: format!("drop probability {p} is not in [0, 1]") });
        }
        if !train || p == 0.0 {
            return Ok(self.clone());
        }
        let mask = no_grad(|| -> Result<Tensor> {
            if p == 1.0 {
                return self.zeros_like();
            }
            let u = Tensor::rand(self.dims(), 0.0, 1.0, self.dtype(), seed, self.device())?;
            u.cmp_scalar(p, crate::backend::CmpOp::Ge)?.to_dtype(self.dtype())?.scale(1.0 / (1.0 - p))
        })?;
        let y = no_grad(|| self.mul(&mask))?;
        y.detach().record("dropout", &[self], move |g| Ok(vec![Some(g.mul(&mask)?)]))
    }
}
