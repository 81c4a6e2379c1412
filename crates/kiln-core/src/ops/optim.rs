//! In-place optimizer updates on parameters (not recorded on the tape).

use crate::backend::AdamWStep;
use crate::{Error, Result, Tensor};

impl Tensor {
    /// One fused AdamW update of this parameter in place, with moment buffers `m`, `v` (same
    /// shape and dtype, contiguous, distinct storages) and gradient `grad`. See
    /// [`crate::backend::OptimOps::adamw_step`] for the formula.
    pub fn adamw_step_(&self, m: &Tensor, v: &Tensor, grad: &Tensor, hp: &AdamWStep) -> Result<()> {
        for (name, t) in [("m", m), ("v", v), ("grad", grad)] {
            if t.dims() != self.dims() {
                return Err(Error::ShapeMismatch {
                    op: "adamw_step",
                    lhs: self.dims().to_vec(),
                    rhs: t.dims().to_vec(),
                });
            }
            if t.dtype() != self.dtype() {
                return Err(Error::DTypeMismatch { op: "adamw_step", lhs: self.dtype(), rhs: t.dtype() });
            }
            if name != "grad" && (t.same_storage(self) || !t.is_contiguous()) {
                return Err(Error::Invalid {
                    op: "adamw_step",
                    msg: format!("{name} must be its own contiguous buffer"),
                });
            }
        }
        if m.same_storage(v) || !self.is_contiguous() {
            return Err(Error::Invalid {
                op: "adamw_step",
                msg: "param, m and v must be distinct contiguous buffers".into(),
            });
        }
        let grad = if grad.same_storage(self) { grad.copy()? } else { grad.contiguous()? };
        let g = grad.storage();
        let mut p = self.storage_mut();
        let mut ms = m.storage_mut();
        let mut vs = v.storage_mut();
        self.device().backend().adamw_step((&mut **p, self.layout()), &mut **ms, &mut **vs, (&**g, grad.layout()), hp)
    }
}
