//! Gathers along a dim: `index_select`, and the embedding lookup built on it (book ch. 10
//! "embeddings"; seed 002).
//!
//! `y = index_select(x, dim, ids)` picks slices `ids[i]` of `x` along `dim`; its backward
//! scatter-adds `g` back (`index_add`), so repeated ids (the same token twice in a batch)
//! accumulate their gradients.
//!
//! # Shapes
//! `index_select`: `x` (…, D, …), `ids` any shape with n elements → (…, n, …).
//! `embedding`: `weight` (V, C), `ids` (B, T) → (B, T, C).

use crate::shape::resolve_dim;
use crate::tensor::check_compute;
use crate::{DType, Error, Result, Tensor};

impl Tensor {
    /// Gathers slices `ids` of `self` along `dim`: `y[.., i, ..] = x[.., ids[i], ..]`. Backward:
    /// `dx = index_add(zeros like x, dim, ids, g)`, a scatter-add, so repeated ids accumulate
    /// (deterministically: each destination row sums its sources in index order).
    ///
    /// # Shapes
    /// `self`: (…, D, …) with D at `dim` (negative counts from the end); `ids`: any shape with
    /// n elements, `I64`, `I32` or `U8`; output: `self`'s shape with D replaced by n.
    ///
    /// # Errors
    /// `UnsupportedDType` for float ids or non-float `self`, `DimOutOfRange` for a bad `dim`,
    /// `IndexOutOfRange` (with the id and D) for an id outside `0..D`.
    pub fn index_select(&self, dim: isize, ids: &Tensor) -> Result<Tensor> {
        check_compute("index_select", self)?;
        if !matches!(ids.dtype(), DType::I64 | DType::I32 | DType::U8) {
            return Err(Error::UnsupportedDType {
                op: "index_select",
                dtype: ids.dtype(),
                msg: "indices must be integers",
            });
        }
        let d = resolve_dim("index_select", dim, self.rank())?;
        let x = self.contiguous()?;
        let ids = ids.contiguous()?;
        let s = x.with_arg(|xa| ids.with_arg(|ia| x.device().backend().index_select(xa, d, ia)))?;
        let mut shape = x.dims().to_vec();
        shape[d] = ids.numel();
        let (in_shape, idc) = (x.dims().to_vec(), ids.clone());
        Tensor::from_op(s, &shape, x.device(), "index_select", &[&x], move |g| {
            let g = g.contiguous()?;
            let dx = idc.with_arg(|ia| g.with_arg(|ga| g.device().backend().index_add(&in_shape, d, ia, ga)))?;
            Ok(vec![Some(Tensor::from_storage(dx, &in_shape, g.device())?)])
        })
    }

    /// Embedding lookup: `y[b, t, :] = weight[ids[b, t], :]`, i.e. `index_select` on dim 0 reshaped
    /// to `ids.shape + [C]`; its backward scatter-adds `g` into the rows of `dweight` (a token seen
    /// twice gets both gradients).
    ///
    /// # Shapes
    /// `weight`: (V, C); `ids`: any shape, e.g. (B, T), `I64`/`I32`/`U8`; output: (B, T, C).
    ///
    /// # Errors
    /// `BadShape` when `weight` is not rank 2, otherwise as [`Tensor::index_select`].
    pub fn embedding(weight: &Tensor, ids: &Tensor) -> Result<Tensor> {
        if weight.rank() != 2 {
            return Err(Error::BadShape {
                op: "embedding",
                shape: weight.dims().to_vec(),
                msg: "weight must be (V, C)".into(),
            });
        }
        let mut shape = ids.dims().to_vec();
        shape.push(weight.dims()[1]);
        weight.index_select(0, &ids.reshape(&[ids.numel()])?)?.reshape(&shape)
    }
}
