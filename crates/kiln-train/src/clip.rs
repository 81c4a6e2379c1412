//! Gradient clipping by global norm (book ch. 11 "gradient clipping").

use kiln_core::{no_grad, Result, Tensor};

/// Scales every parameter's gradient by `min(1, max_norm / ‖g‖)` where `‖g‖` is the L2 norm of
/// all gradients concatenated, and returns `‖g‖` before clipping (PyTorch's
/// `clip_grad_norm_`). Parameters without a gradient are skipped.
pub fn clip_grad_norm(params: &[Tensor], max_norm: f64) -> Result<f64> {
    no_grad(|| {
        let mut sq = 0.0;
        for p in params {
            if let Some(g) = p.grad() {
                sq += g.sqr()?.sum_all()?.to_scalar()?;
            }
        }
        let norm = sq.sqrt();
        if norm.is_finite() && norm > max_norm && norm > 0.0 {
            let s = max_norm / (norm + 1e-6);
            for p in params {
                if let Some(g) = p.grad() {
                    p.set_grad(Some(g.scale(s)?));
                }
            }
        }
        Ok(norm)
    })
}
