//! Reductions over a set of dims.

use super::{BoxStorage, Storage};
use crate::{Layout, Result};

/// What a reduction computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Max,
    Min,
    /// Index (as `I64`) of the first maximum; one dim only.
    ArgMax,
    /// Index (as `I64`) of the first minimum; one dim only.
    ArgMin,
}

/// Reduction kernels.
pub trait ReduceOps {
    /// Reduces `dims` of `lx`; the output is contiguous with those dims kept as size 1.
    fn reduce(&self, op: ReduceOp, x: &dyn Storage, lx: &Layout, dims: &[usize]) -> Result<BoxStorage>;
}
