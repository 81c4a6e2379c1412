//! Fused AdamW (`OptimOps`, kernel in `kernels/optim.cu`).

use crate::backend::{cu, cu_mut, grid_1d, launch, want, CudaBackend};
use kiln_core::backend::{AdamWStep, Arg, OptimOps, Storage};
use kiln_core::{DType, Error, Layout, Result};

impl OptimOps for CudaBackend {
    fn adamw_step(
        &self,
        param: (&mut dyn Storage, &Layout),
        m: &mut dyn Storage,
        v: &mut dyn Storage,
        grad: Arg,
        hp: &AdamWStep,
    ) -> Result<()> {
        const OP: &str = "adamw_step";
        let (p, lp) = param;
        let n = lp.numel();
        if !lp.is_contiguous() || grad.1.numel() != n || m.len() != n || v.len() != n {
            return Err(Error::ShapeMismatch { op: OP, lhs: lp.shape().to_vec(), rhs: grad.1.shape().to_vec() });
        }
        let g = cu(OP, grad.0)?;
        want(OP, g, DType::F32)?;
        let g = self.dense(g, grad.1)?;
        let pm = {
            let m = cu_mut(OP, m)?;
            want(OP, m, DType::F32)?;
            self.ptr(m, 0)
        };
        let pv = {
            let v = cu_mut(OP, v)?;
            want(OP, v, DType::F32)?;
            self.ptr(v, 0)
        };
        let p = cu_mut(OP, p)?;
        want(OP, p, DType::F32)?;
        if n == 0 {
            return Ok(());
        }
        let t = hp.step as f64;
        let (bc1, bc2) = (1.0 - hp.beta1.powf(t), 1.0 - hp.beta2.powf(t));
        launch!(self, "adamw_f32", grid_1d(n);
            self.ptr(p, lp.offset()), pm, pv, g.ptr(self), n as i64, hp.lr as f32, hp.beta1 as f32, hp.beta2 as f32,
            hp.eps as f32, hp.weight_decay as f32, bc1 as f32, bc2 as f32)
    }
}
