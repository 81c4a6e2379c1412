//! Gather/scatter kernels: index_select (embedding lookup) and index_add (its backward).

use super::{not_impl, Arg, BoxStorage};
use crate::Result;

/// Indexing kernels.
pub trait IndexOps {
    /// Selects entries `ids` (an integer tensor, any shape flattened to `n`) along `dim` of `x`.
    /// Output: contiguous, `x`'s shape with dim `dim` replaced by `n`.
    fn index_select(&self, x: Arg, dim: usize, ids: Arg) -> Result<BoxStorage> {
        let _ = (x, dim, ids);
        not_impl("index_select", "?")
    }
    /// `out = zeros(shape); out[.., ids[i], ..] += src[.., i, ..]` along `dim`: the scatter-add
    /// backward of [`IndexOps::index_select`].
    fn index_add(&self, shape: &[usize], dim: usize, ids: Arg, src: Arg) -> Result<BoxStorage> {
        let _ = (shape, dim, ids, src);
        not_impl("index_add", "?")
    }
}
