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
    /// Softmax cross-entropy of `self` (logits) against integer class `targets`, fused: the
    /// kernel computes each row's loss and `lse = log Σ_v e^(x_v)` in one pass (never the
    /// log-probabilities), and the backward is `dx = dloss_row·(softmax(x) − (1−ε)·onehot(t) − ε/V)`.
    ///
    /// Per row (PyTorch's `F.cross_entropy`): `loss = (1−ε)·(lse − x_t) + ε·mean_v(lse − x_v)`,
    /// i.e. `(1−ε)·nll + ε·mean_v(−log p_v)` with `ε = opts.label_smoothing`. Rows whose target is
    /// `opts.ignore_index` have loss 0 and zero gradient. [`Reduction::Mean`] divides by the number
    /// of non-ignored rows (0 when all are ignored, not NaN).
    ///
    /// # Shapes
    /// `self`: (N, V) or (B, T, V), any leading dims (flattened to N); `targets`: the leading
    /// shape ((N) or (B, T)), `I64` or `I32`. Output: a scalar for `Mean`/`Sum`, the leading shape
    /// for `None`.
    ///
    /// # Numerics
    /// `lse` uses the row max shift and f64 accumulation; saved for the backward: the logits,
    /// the targets and `lse` (N).
    ///
    /// # Errors
    /// `UnsupportedDType` for non-integer targets or non-float logits, `ShapeMismatch` when the
    /// targets do not have the leading shape, `Invalid` for `ε ∉ [0, 1]`, `IndexOutOfRange` for
    /// a target outside `0..V` that is not `ignore_index`.
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

    /// Cross-entropy composed from `log_softmax` and primitive ops (mul, sum, mean, scale), with
    /// the same semantics as [`Tensor::cross_entropy`] (ignore_index, label smoothing, every
    /// reduction): the reference the fused kernel is tested against.
    ///
    /// `loss_r = −(1−ε)·Σ_v onehot_rv·log p_rv − ε·mean_v log p_rv`, times 0 for ignored rows.
    ///
    /// # Shapes
    /// As [`Tensor::cross_entropy`]: logits (…, V), targets (…).
    pub fn cross_entropy_reference(&self, targets: &Tensor, opts: CrossEntropyOpts) -> Result<Tensor> {
        const OP: &str = "cross_entropy_reference";
        if self.rank() < 1 || targets.dims() != &self.dims()[..self.rank() - 1] {
            return Err(Error::ShapeMismatch { op: OP, lhs: self.dims().to_vec(), rhs: targets.dims().to_vec() });
        }
        if !matches!(targets.dtype(), DType::I64 | DType::I32) {
            return Err(Error::UnsupportedDType { op: OP, dtype: targets.dtype(), msg: "targets must be i64 or i32" });
        }
        let v = self.dims()[self.rank() - 1];
        let n = targets.numel();
        let logp = self.reshape(&[n, v])?.log_softmax()?;
        let ids = targets.to_dtype(DType::I64)?.to_vec::<i64>()?;
        let ignore = opts.ignore_index;
        let eps = opts.label_smoothing;
        let mut onehot = vec![0.0; n * v];
        let mut keep = vec![0.0; n];
        for (r, &i) in ids.iter().enumerate() {
            if Some(i) == ignore {
                continue;
            }
            if i < 0 || i as usize >= v {
                return Err(Error::IndexOutOfRange { op: OP, index: i, size: v });
            }
            onehot[r * v + i as usize] = 1.0;
            keep[r] = 1.0;
        }
        let count = keep.iter().filter(|&&k| k > 0.0).count();
        let oh = Tensor::from_f64(&onehot, &[n, v], self.dtype(), self.device())?;
        let keep = Tensor::from_f64(&keep, &[n], self.dtype(), self.device())?;
        let nll = logp.mul(&oh)?.sum(&[-1], false)?.scale(-(1.0 - eps))?;
        let smooth = logp.mean(&[-1], false)?.scale(-eps)?;
        let rows = nll.add(&smooth)?.mul(&keep)?;
        match opts.reduction {
            Reduction::None => rows.reshape(targets.dims()),
            Reduction::Sum => rows.sum_all(),
            Reduction::Mean => rows.sum_all()?.scale(1.0 / count.max(1) as f64),
        }
    }
}
