//! Fused softmax cross-entropy with `ignore_index` and label smoothing (book ch. 11 "label
//! smoothing"; seed 001 "CLM/SFT losses"; PyTorch's `F.cross_entropy` semantics).
//!
//! Per row: `loss = (1−ε)·(lse − x_t) + ε·(lse − mean_v x_v)` with `lse = log Σ_v e^(x_v)`.
//! The kernel never materialises log-probabilities; the backward is
//! `dx = dloss·(softmax(x) − (1−ε)·onehot(t) − ε/V)`.
//!
//! # Shapes
//! `logits`: (N, V) or (B, T, V) (leading dims are flattened); `targets`: the leading shape,
//! `I64` or `I32`. Output: a scalar for `Mean`/`Sum`, the leading shape for `None`.

use crate::tensor::check_compute;
use crate::{DType, Error, Result, Tensor};

/// How per-row losses are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// Average over rows whose target is not ignored (0 when all are ignored).
    Mean,
    /// Sum over rows.
    Sum,
    /// One loss per row, in the targets' shape.
    None,
}

/// Options of [`Tensor::cross_entropy`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrossEntropyOpts {
    /// Target value whose rows contribute nothing (PyTorch's default: -100).
    pub ignore_index: Option<i64>,
    /// Label smoothing ε in [0, 1].
    pub label_smoothing: f64,
    /// How to combine rows.
    pub reduction: Reduction,
}

impl Default for CrossEntropyOpts {
    fn default() -> Self {
        CrossEntropyOpts { ignore_index: Some(-100), label_smoothing: 0.0, reduction: Reduction::Mean }
    }
}

impl Tensor {
    /// Cross-entropy of `self` (logits) against integer `targets`.
    pub fn cross_entropy(&self, targets: &Tensor, opts: CrossEntropyOpts) -> Result<Tensor> {
        check_compute("cross_entropy", self)?;
        if !matches!(targets.dtype(), DType::I64 | DType::I32) {
            return Err(Error::UnsupportedDType {
                op: "cross_entropy",
                dtype: targets.dtype(),
                msg: "targets must be i64 or i32",
            });
        }
        if self.rank() < 1 || targets.dims() != &self.dims()[..self.rank() - 1] {
            return Err(Error::ShapeMismatch {
                op: "cross_entropy",
                lhs: self.dims().to_vec(),
                rhs: targets.dims().to_vec(),
            });
        }
        if !(0.0..=1.0).contains(&opts.label_smoothing) {
            return Err(Error::Invalid {
                op: "cross_entropy",
                msg: format!("label_smoothing {} not in [0, 1]", opts.label_smoothing),
            });
        }
        let v = self.dims()[self.rank() - 1];
        let n = targets.numel();
        let x = self.contiguous()?.reshape(&[n, v])?;
        let t = targets.contiguous()?.reshape(&[n])?;
        let ignore = opts.ignore_index.unwrap_or(i64::MIN);
        let eps = opts.label_smoothing;
        let (loss, lse) = x.with_arg(|xa| t.with_arg(|ta| x.device().backend().cross_entropy(xa, ta, ignore, eps)))?;
        let lse = Tensor::from_storage(lse, &[n], x.device())?;
        let rows = Tensor::from_storage(loss, &[n], x.device())?;
        let (xs, ts) = (x.clone(), t.clone());
        let rows = rows.record("cross_entropy", &[&x], move |g| {
            let g = g.contiguous()?;
            let dx = xs.with_arg(|xa| {
                ts.with_arg(|ta| {
                    lse.with_arg(|la| {
                        g.with_arg(|ga| xs.device().backend().cross_entropy_bwd(xa, ta, la, ga, ignore, eps))
                    })
                })
            })?;
            Ok(vec![Some(Tensor::from_storage(dx, xs.dims(), xs.device())?)])
        })?;
        match opts.reduction {
            Reduction::None => rows.reshape(targets.dims()),
            Reduction::Sum => rows.sum_all(),
            Reduction::Mean => {
                let ids = t.to_dtype(DType::I64)?.to_vec::<i64>()?;
                let count = ids.iter().filter(|&&i| i != ignore).count();
                rows.sum_all()?.scale(1.0 / count.max(1) as f64)
            }
        }
    }

    /// Cross-entropy from `log_softmax` and primitives (no label smoothing, `Mean` over
    /// non-ignored rows): the reference for tests.
    pub fn cross_entropy_reference(&self, targets: &Tensor, ignore_index: i64) -> Result<Tensor> {
        let v = self.dims()[self.rank() - 1];
        let n = targets.numel();
        let logp = self.reshape(&[n, v])?.log_softmax()?;
        let ids = targets.to_dtype(DType::I64)?.to_vec::<i64>()?;
        let mut onehot = vec![0.0; n * v];
        let mut count = 0;
        for (r, &i) in ids.iter().enumerate() {
            if i != ignore_index {
                onehot[r * v + i as usize] = 1.0;
                count += 1;
            }
        }
        let oh = Tensor::from_f64(&onehot, &[n, v], self.dtype(), self.device())?;
        logp.mul(&oh)?.sum_all()?.scale(-1.0 / count.max(1) as f64)
    }
}
