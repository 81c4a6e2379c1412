//! layer_norm kernels (forward and backward side by side). Placeholder until implemented.

use kiln_core::backend::{Arg, BoxStorage};
use kiln_core::{Error, Result};

pub(crate) fn forward(
    _x: Arg,
    _w: Option<Arg>,
    _b: Option<Arg>,
    _eps: f64,
) -> Result<(BoxStorage, BoxStorage, BoxStorage)> {
    Err(Error::NotImplemented { op: "layer_norm", backend: "cpu" })
}

pub(crate) fn backward(
    _x: Arg,
    _w: Option<Arg>,
    _mean: Arg,
    _rstd: Arg,
    _dy: Arg,
) -> Result<(BoxStorage, Option<BoxStorage>, Option<BoxStorage>)> {
    Err(Error::NotImplemented { op: "layer_norm_bwd", backend: "cpu" })
}
