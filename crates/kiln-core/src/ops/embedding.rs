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
    /// Slices `ids` of `self` along `dim` (ids: `I64`, `I32` or `U8`).
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

    /// Embedding lookup: rows `ids` of `weight` (V, C), shaped `ids.shape + [C]`.
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
