//! The error type of kiln's core: every variant names the op and what was wrong with its inputs.

use crate::DType;

/// Errors from tensor ops, shapes, dtypes and backends.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// Two shapes that must agree do not.
    #[error("{op}: shape mismatch, lhs {lhs:?} vs rhs {rhs:?}")]
    ShapeMismatch { op: &'static str, lhs: Vec<usize>, rhs: Vec<usize> },
    /// Shapes that cannot be broadcast together.
    #[error("{op}: cannot broadcast {lhs:?} with {rhs:?}")]
    Broadcast { op: &'static str, lhs: Vec<usize>, rhs: Vec<usize> },
    /// Any other invalid shape argument (a reshape to a different element count, a bad dim…).
    #[error("{op}: {msg} (shape {shape:?})")]
    BadShape { op: &'static str, shape: Vec<usize>, msg: String },
    /// A dimension index out of range.
    #[error("{op}: dim {dim} out of range for rank {rank}")]
    DimOutOfRange { op: &'static str, dim: isize, rank: usize },
    /// Dtypes that must agree do not.
    #[error("{op}: dtype mismatch, {lhs} vs {rhs}")]
    DTypeMismatch { op: &'static str, lhs: DType, rhs: DType },
    /// An op that does not accept this dtype.
    #[error("{op}: unsupported dtype {dtype} ({msg})")]
    UnsupportedDType { op: &'static str, dtype: DType, msg: &'static str },
    /// An index outside the valid range (embedding ids, index_select…).
    #[error("{op}: index {index} out of range for size {size}")]
    IndexOutOfRange { op: &'static str, index: i64, size: usize },
    /// Tensors on different devices.
    #[error("{op}: tensors on different devices ({lhs} vs {rhs})")]
    DeviceMismatch { op: &'static str, lhs: String, rhs: String },
    /// A backend that has no kernel for this op.
    #[error("{op}: not implemented on backend {backend}")]
    NotImplemented { op: &'static str, backend: &'static str },
    /// Autodiff misuse (backward on a non-scalar without a seed gradient, …).
    #[error("autograd: {0}")]
    Autograd(String),
    /// Anomaly mode caught a non-finite value.
    #[error("anomaly: op `{op}` produced a non-finite value ({what}) in a tensor of shape {shape:?}")]
    NonFinite { op: &'static str, what: &'static str, shape: Vec<usize> },
    /// Invalid argument value.
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
    /// A device or driver failure (a CUDA call that returned an error, a library that could not
    /// be loaded, a kernel that did not compile).
    #[error("{op} on {backend}: {msg}")]
    Backend { backend: &'static str, op: &'static str, msg: String },
}

/// Result with kiln's core [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
