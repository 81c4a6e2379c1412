//! Softmax cross-entropy forward and backward (kernels in `kernels/softmax.cu`).

use crate::backend::{boxed, grid_rows, launch, CudaBackend};
use crate::ops::fused::{rows, vector};
use kiln_core::backend::{Arg, BoxStorage};
use kiln_core::{DType, Error, Result};

impl CudaBackend {
    pub(crate) fn cross_entropy_k(
        &self,
        logits: Arg,
        targets: Arg,
        ignore: i64,
        eps: f64,
    ) -> Result<(BoxStorage, BoxStorage)> {
        const OP: &str = "cross_entropy";
        let (x, n, v) = rows(self, OP, logits)?;
        if targets.1.numel() != n {
            return Err(Error::ShapeMismatch { op: OP, lhs: vec![n, v], rhs: targets.1.shape().to_vec() });
        }
        let t = self.ids_i64(OP, targets)?;
        self.check_ids(OP, &t, n, v, ignore)?;
        let (loss, lse) = (self.alloc(DType::F32, n)?, self.alloc(DType::F32, n)?);
        if n > 0 && v > 0 {
            launch!(self, "cross_entropy_fwd_f32", grid_rows(n, v);
                x.ptr(self), t.ptr(self), self.ptr(&loss, 0), self.ptr(&lse, 0), n as i64, v as i64, ignore, eps as f32)?;
        }
        Ok((boxed(loss), boxed(lse)))
    }

    pub(crate) fn cross_entropy_bwd_k(
        &self,
        logits: Arg,
        targets: Arg,
        lse: Arg,
        dloss: Arg,
        ignore: i64,
        eps: f64,
    ) -> Result<BoxStorage> {
        const OP: &str = "cross_entropy_bwd";
        let (x, n, v) = rows(self, OP, logits)?;
        if targets.1.numel() != n {
            return Err(Error::ShapeMismatch { op: OP, lhs: vec![n, v], rhs: targets.1.shape().to_vec() });
        }
        let t = self.ids_i64(OP, targets)?;
        let (lse, dloss) = (vector(self, OP, lse, n)?, vector(self, OP, dloss, n)?);
        let dx = self.alloc(DType::F32, n * v)?;
        if n * v > 0 {
            launch!(self, "cross_entropy_bwd_f32", grid_rows(n, v);
                x.ptr(self), t.ptr(self), lse.ptr(self), dloss.ptr(self), self.ptr(&dx, 0), n as i64, v as i64, ignore, eps as f32)?;
        }
        Ok(boxed(dx))
    }
}
