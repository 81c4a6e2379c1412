//! The backend's [`FusedOps`] table: each entry forwards to the kernel file of the same name,
//! where forward and backward sit side by side.

use super::softmax;
use crate::CpuBackend;
use kiln_core::backend::{Arg, BoxStorage, FusedOps};
use kiln_core::Result;

impl FusedOps for CpuBackend {
    fn softmax(&self, x: Arg, log: bool) -> Result<BoxStorage> {
        softmax::forward(x, log)
    }
    fn softmax_bwd(&self, y: Arg, dy: Arg, log: bool) -> Result<BoxStorage> {
        softmax::backward(y, dy, log)
    }
}
