//! Row kernels with hand-written backward (`FusedOps` minus attention): softmax, LayerNorm,
//! RMSNorm, RoPE and softmax cross-entropy. Kernels: `kernels/{softmax,norm,rope}.cu`.

use crate::backend::{boxed, cu, grid_1d, grid_rows, launch, want, CudaBackend};
use crate::ops::memory::Dense;
use kiln_core::backend::{Arg, BoxStorage};
use kiln_core::{DType, Error, Result};

/// An f32 operand, dense, with its rows: (storage, rows, last dim).
pub(crate) fn rows<'a>(be: &CudaBackend, op: &'static str, a: Arg<'a>) -> Result<(Dense<'a>, usize, usize)> {
    let s = cu(op, a.0)?;
    want(op, s, DType::F32)?;
    let c = a.1.shape().last().copied().unwrap_or(1);
    let n = a.1.numel().checked_div(c).unwrap_or(0);
    Ok((be.dense(s, a.1)?, n, c))
}

/// A per-row or per-column f32 vector operand of exactly `len` elements.
pub(crate) fn vector<'a>(be: &CudaBackend, op: &'static str, a: Arg<'a>, len: usize) -> Result<Dense<'a>> {
    let s = cu(op, a.0)?;
    want(op, s, DType::F32)?;
    if a.1.numel() != len {
        return Err(Error::ShapeMismatch { op, lhs: vec![len], rhs: a.1.shape().to_vec() });
    }
    be.dense(s, a.1)
}

fn opt_ptr(be: &CudaBackend, d: &Option<Dense>) -> u64 {
    d.as_ref().map_or(0, |d| d.ptr(be))
}

impl CudaBackend {
    pub(crate) fn softmax_k(&self, x: Arg, log: bool) -> Result<BoxStorage> {
        let (x, n, c) = rows(self, "softmax", x)?;
        let y = self.alloc(DType::F32, n * c)?;
        if n * c > 0 {
            launch!(self, "softmax_fwd_f32", grid_rows(n, c); x.ptr(self), self.ptr(&y, 0), n as i64, c as i64, log as i32)?;
        }
        Ok(boxed(y))
    }

    pub(crate) fn softmax_bwd_k(&self, y: Arg, dy: Arg, log: bool) -> Result<BoxStorage> {
        let (y, n, c) = rows(self, "softmax_bwd", y)?;
        let dy = vector(self, "softmax_bwd", dy, n * c)?;
        let dx = self.alloc(DType::F32, n * c)?;
        if n * c > 0 {
            launch!(self, "softmax_bwd_f32", grid_rows(n, c); y.ptr(self), dy.ptr(self), self.ptr(&dx, 0), n as i64, c as i64, log as i32)?;
        }
        Ok(boxed(dx))
    }

    #[allow(clippy::type_complexity)]
    pub(crate) fn layer_norm_k(
        &self,
        x: Arg,
        w: Option<Arg>,
        b: Option<Arg>,
        eps: f64,
    ) -> Result<(BoxStorage, BoxStorage, BoxStorage)> {
        let (x, n, c) = rows(self, "layer_norm", x)?;
        let w = w.map(|w| vector(self, "layer_norm", w, c)).transpose()?;
        let b = b.map(|b| vector(self, "layer_norm", b, c)).transpose()?;
        let (y, mean, rstd) = (self.alloc(DType::F32, n * c)?, self.alloc(DType::F32, n)?, self.alloc(DType::F32, n)?);
        if n * c > 0 {
            launch!(self, "layer_norm_fwd_f32", grid_rows(n, c);
                x.ptr(self), opt_ptr(self, &w), opt_ptr(self, &b), self.ptr(&y, 0), self.ptr(&mean, 0), self.ptr(&rstd, 0),
                n as i64, c as i64, eps as f32)?;
        }
        Ok((boxed(y), boxed(mean), boxed(rstd)))
    }

    #[allow(clippy::type_complexity)]
    pub(crate) fn layer_norm_bwd_k(
        &self,
        x: Arg,
        w: Option<Arg>,
        mean: Arg,
        rstd: Arg,
        dy: Arg,
    ) -> Result<(BoxStorage, Option<BoxStorage>, Option<BoxStorage>)> {
        const OP: &str = "layer_norm_bwd";
        let (x, n, c) = rows(self, OP, x)?;
        let w = w.map(|w| vector(self, OP, w, c)).transpose()?;
        let (mean, rstd, dy) = (vector(self, OP, mean, n)?, vector(self, OP, rstd, n)?, vector(self, OP, dy, n * c)?);
        let dx = self.alloc(DType::F32, n * c)?;
        if n * c > 0 {
            launch!(self, "layer_norm_bwd_dx_f32", grid_rows(n, c);
                x.ptr(self), opt_ptr(self, &w), mean.ptr(self), rstd.ptr(self), dy.ptr(self), self.ptr(&dx, 0), n as i64, c as i64)?;
        }
        let (dw, db) = match w {
            None => (None, None),
            Some(_) => {
                let (dw, db) = (self.alloc(DType::F32, c)?, self.alloc(DType::F32, c)?);
                if c > 0 {
                    launch!(self, "norm_bwd_dw_f32", grid_1d(c);
                        x.ptr(self), mean.ptr(self), rstd.ptr(self), dy.ptr(self), self.ptr(&dw, 0), self.ptr(&db, 0), n as i64, c as i64)?;
                }
                (Some(boxed(dw)), Some(boxed(db)))
            }
        };
        Ok((boxed(dx), dw, db))
    }

    pub(crate) fn rms_norm_k(&self, x: Arg, w: Option<Arg>, eps: f64) -> Result<(BoxStorage, BoxStorage)> {
        let (x, n, c) = rows(self, "rms_norm", x)?;
        let w = w.map(|w| vector(self, "rms_norm", w, c)).transpose()?;
        let (y, rstd) = (self.alloc(DType::F32, n * c)?, self.alloc(DType::F32, n)?);
        if n * c > 0 {
            launch!(self, "rms_norm_fwd_f32", grid_rows(n, c);
                x.ptr(self), opt_ptr(self, &w), self.ptr(&y, 0), self.ptr(&rstd, 0), n as i64, c as i64, eps as f32)?;
        }
        Ok((boxed(y), boxed(rstd)))
    }

    pub(crate) fn rms_norm_bwd_k(
        &self,
        x: Arg,
        w: Option<Arg>,
        rstd: Arg,
        dy: Arg,
    ) -> Result<(BoxStorage, Option<BoxStorage>)> {
        const OP: &str = "rms_norm_bwd";
        let (x, n, c) = rows(self, OP, x)?;
        let w = w.map(|w| vector(self, OP, w, c)).transpose()?;
        let (rstd, dy) = (vector(self, OP, rstd, n)?, vector(self, OP, dy, n * c)?);
        let dx = self.alloc(DType::F32, n * c)?;
        if n * c > 0 {
            launch!(self, "rms_norm_bwd_dx_f32", grid_rows(n, c);
                x.ptr(self), opt_ptr(self, &w), rstd.ptr(self), dy.ptr(self), self.ptr(&dx, 0), n as i64, c as i64)?;
        }
        let dw = match w {
            None => None,
            Some(_) => {
                let dw = self.alloc(DType::F32, c)?;
                if c > 0 {
                    launch!(self, "norm_bwd_dw_f32", grid_1d(c);
                        x.ptr(self), 0u64, rstd.ptr(self), dy.ptr(self), self.ptr(&dw, 0), 0u64, n as i64, c as i64)?;
                }
                Some(boxed(dw))
            }
        };
        Ok((boxed(dx), dw))
    }

    pub(crate) fn rope_k(&self, x: Arg, cos: Arg, sin: Arg, transpose: bool) -> Result<BoxStorage> {
        let (xd, n, d) = rows(self, "rope", x)?;
        let t = cos.1.shape().first().copied().unwrap_or(0);
        if !d.is_multiple_of(2) || cos.1.shape() != [t, d] || sin.1.shape() != [t, d] || t == 0 || n % t != 0 {
            return Err(Error::ShapeMismatch { op: "rope", lhs: x.1.shape().to_vec(), rhs: cos.1.shape().to_vec() });
        }
        let (cs, sn) = (vector(self, "rope", cos, t * d)?, vector(self, "rope", sin, t * d)?);
        let y = self.alloc(DType::F32, n * d)?;
        if n * d > 0 {
            launch!(self, "rope_f32", grid_1d(n * d / 2);
                xd.ptr(self), cs.ptr(self), sn.ptr(self), self.ptr(&y, 0), n as i64, t as i64, d as i64, transpose as i32)?;
        }
        Ok(boxed(y))
    }
}
