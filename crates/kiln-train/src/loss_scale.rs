//! Dynamic loss scaling (Micikevicius et al. 2018, "Mixed Precision Training"; the book's
//! mixed-precision section): f16 gradients underflow below 6e-8, so the loss is multiplied by a
//! scale S before backward, and the gradients divided by S before clipping and the optimizer. If
//! any gradient overflowed to inf/NaN the step is skipped and S halves; after `growth_interval`
//! overflow-free steps S doubles. PyTorch's `GradScaler` with its defaults.

use kiln_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// The scaler's state (saved with checkpoints, so resuming continues bit-exactly).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DynamicLossScaler {
    /// Current scale S.
    pub scale: f64,
    /// Overflow-free steps since the last change of S.
    pub good_steps: u64,
    /// Multiplier after `growth_interval` good steps.
    pub growth_factor: f64,
    /// Multiplier after an overflow.
    pub backoff_factor: f64,
    /// Good steps between growths.
    pub growth_interval: u64,
}

impl Default for DynamicLossScaler {
    /// PyTorch's defaults: S = 2¹⁶, ×2 every 2000 good steps, ×½ on overflow.
    fn default() -> Self {
        DynamicLossScaler {
            scale: 65536.0,
            good_steps: 0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
        }
    }
}

impl DynamicLossScaler {
    /// Divides every gradient by S in place and reports whether all are finite. On overflow the
    /// gradients are left as they are (the caller skips the step) and S backs off; otherwise S
    /// grows after `growth_interval` good steps.
    pub fn unscale(&mut self, grads: &[Tensor]) -> Result<bool> {
        // Σ g² over every gradient is finite iff all are: one reduction read back, not one per tensor
        let mut total: Option<Tensor> = None;
        for g in grads {
            let s = g.sqr()?.sum_all()?;
            total = Some(match total {
                Some(t) => t.add(&s)?,
                None => s,
            });
        }
        if !total.map_or(Ok(0.0), |t| t.to_scalar())?.is_finite() {
            self.scale *= self.backoff_factor;
            self.good_steps = 0;
            return Ok(false);
        }
        let inv = 1.0 / self.scale;
        for g in grads {
            g.assign_(&g.scale(inv)?)?;
        }
        self.good_steps += 1;
        if self.good_steps >= self.growth_interval {
            self.scale *= self.growth_factor;
            self.good_steps = 0;
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_core::DType;

    #[test]
    fn backs_off_on_overflow_and_grows_after_good_steps() -> Result<()> {
        let dev = kiln_cpu::cpu();
        let mut s = DynamicLossScaler { growth_interval: 3, ..Default::default() };
        let g = Tensor::from_vec(vec![65536f32, -131072.0], &[2], &dev)?;
        assert!(s.unscale(std::slice::from_ref(&g))?);
        assert_eq!(g.to_vec::<f32>()?, vec![1.0, -2.0], "divided by the scale");
        let bad = Tensor::from_vec(vec![f32::INFINITY, 1.0], &[2], &dev)?;
        assert!(!s.unscale(std::slice::from_ref(&bad))?);
        assert_eq!((s.scale, s.good_steps), (32768.0, 0), "halved, counter reset");
        assert_eq!(bad.to_vec::<f32>()?[1], 1.0, "skipped steps leave gradients alone");
        for _ in 0..3 {
            s.unscale(&[Tensor::zeros(&[3], DType::F32, &dev)?])?;
        }
        assert_eq!((s.scale, s.good_steps), (65536.0, 0), "doubled after growth_interval good steps");
        Ok(())
    }
}
