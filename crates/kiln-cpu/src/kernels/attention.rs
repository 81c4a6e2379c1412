//! attention kernels (forward and backward side by side). Placeholder until implemented.

use kiln_core::backend::{Arg, AttentionArgs, BoxStorage};
use kiln_core::{Error, Result};

pub(crate) fn forward(
    _args: &AttentionArgs,
    _q: Arg,
    _k: Arg,
    _v: Arg,
    _mask: Option<Arg>,
) -> Result<(BoxStorage, BoxStorage)> {
    Err(Error::NotImplemented { op: "attention", backend: "cpu" })
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    _args: &AttentionArgs,
    _q: Arg,
    _k: Arg,
    _v: Arg,
    _mask: Option<Arg>,
    _out: Arg,
    _lse: Arg,
    _dout: Arg,
) -> Result<(BoxStorage, BoxStorage, BoxStorage)> {
    Err(Error::NotImplemented { op: "attention_bwd", backend: "cpu" })
}
