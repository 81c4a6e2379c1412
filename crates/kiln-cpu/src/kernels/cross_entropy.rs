//! cross_entropy kernels (forward and backward side by side). Placeholder until implemented.

use kiln_core::backend::{Arg, BoxStorage};
use kiln_core::{Error, Result};

pub(crate) fn forward(
    _logits: Arg,
    _targets: Arg,
    _ignore_index: i64,
    _label_smoothing: f64,
) -> Result<(BoxStorage, BoxStorage)> {
    Err(Error::NotImplemented { op: "cross_entropy", backend: "cpu" })
}

pub(crate) fn backward(
    _logits: Arg,
    _targets: Arg,
    _lse: Arg,
    _dloss: Arg,
    _ignore_index: i64,
    _label_smoothing: f64,
) -> Result<BoxStorage> {
    Err(Error::NotImplemented { op: "cross_entropy_bwd", backend: "cpu" })
}
