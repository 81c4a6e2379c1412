//! Unary maps, their derivatives, binary ops, comparisons and select (`ElementwiseOps`); the
//! kernels are in `kernels/elementwise.cu`.

use crate::backend::{boxed, cu, grid_1d, launch, want, CudaBackend, Strided};
use crate::storage::dtype_code;
use kiln_core::backend::{BinaryOp, BoxStorage, CmpOp, ElementwiseOps, Storage, UnaryOp};
use kiln_core::{DType, Error, Layout, Result};

/// Kernel op code and parameters of a unary op (the `U_*` enum of elementwise.cu).
fn unary_code(op: UnaryOp) -> (i32, f32, f32) {
    match op {
        UnaryOp::Neg => (0, 0.0, 0.0),
        UnaryOp::Exp => (1, 0.0, 0.0),
        UnaryOp::Log => (2, 0.0, 0.0),
        UnaryOp::Sqrt => (3, 0.0, 0.0),
        UnaryOp::Tanh => (4, 0.0, 0.0),
        UnaryOp::Abs => (5, 0.0, 0.0),
        UnaryOp::Sqr => (6, 0.0, 0.0),
        UnaryOp::Recip => (7, 0.0, 0.0),
        UnaryOp::Relu => (8, 0.0, 0.0),
        UnaryOp::GeluErf => (9, 0.0, 0.0),
        UnaryOp::GeluTanh => (10, 0.0, 0.0),
        UnaryOp::Silu => (11, 0.0, 0.0),
        UnaryOp::Sigmoid => (12, 0.0, 0.0),
        UnaryOp::Powf(p) => (13, p as f32, 0.0),
        UnaryOp::Affine { mul, add } => (14, mul as f32, add as f32),
    }
}

fn same_shape(op: &'static str, a: &Layout, b: &Layout) -> Result<()> {
    if a.shape() == b.shape() {
        Ok(())
    } else {
        Err(Error::ShapeMismatch { op, lhs: a.shape().to_vec(), rhs: b.shape().to_vec() })
    }
}

impl ElementwiseOps for CudaBackend {
    fn unary(&self, op: UnaryOp, x: &dyn Storage, lx: &Layout) -> Result<BoxStorage> {
        let x = cu(op.name(), x)?;
        want(op.name(), x, DType::F32)?;
        let n = lx.numel();
        let y = self.alloc(DType::F32, n)?;
        if n > 0 {
            let (code, p0, p1) = unary_code(op);
            launch!(self, "unary_f32", grid_1d(n); code, p0, p1, Strided::of(op.name(), lx)?, self.ptr(x, 0), self.ptr(&y, 0), n as i64)?;
        }
        Ok(boxed(y))
    }

    fn unary_bwd(
        &self,
        op: UnaryOp,
        x: &dyn Storage,
        lx: &Layout,
        dy: &dyn Storage,
        ldy: &Layout,
    ) -> Result<BoxStorage> {
        let (x, dy) = (cu(op.name(), x)?, cu(op.name(), dy)?);
        want(op.name(), x, DType::F32)?;
        want(op.name(), dy, DType::F32)?;
        same_shape(op.name(), lx, ldy)?;
        let n = lx.numel();
        let dx = self.alloc(DType::F32, n)?;
        if n > 0 {
            let (code, p0, _) = unary_code(op);
            let (sx, sdy) = (Strided::of(op.name(), lx)?, Strided::of(op.name(), ldy)?);
            launch!(self, "unary_bwd_f32", grid_1d(n); code, p0, sx, self.ptr(x, 0), sdy, self.ptr(dy, 0), self.ptr(&dx, 0), n as i64)?;
        }
        Ok(boxed(dx))
    }

    fn binary(&self, op: BinaryOp, a: &dyn Storage, la: &Layout, b: &dyn Storage, lb: &Layout) -> Result<BoxStorage> {
        let (a, b) = (cu(op.name(), a)?, cu(op.name(), b)?);
        want(op.name(), a, DType::F32)?;
        want(op.name(), b, DType::F32)?;
        same_shape(op.name(), la, lb)?;
        let n = la.numel();
        let z = self.alloc(DType::F32, n)?;
        if n > 0 {
            let code = match op {
                BinaryOp::Add => 0i32,
                BinaryOp::Sub => 1,
                BinaryOp::Mul => 2,
                BinaryOp::Div => 3,
                BinaryOp::Maximum => 4,
                BinaryOp::Minimum => 5,
            };
            let (sa, sb) = (Strided::of(op.name(), la)?, Strided::of(op.name(), lb)?);
            launch!(self, "binary_f32", grid_1d(n); code, sa, self.ptr(a, 0), sb, self.ptr(b, 0), self.ptr(&z, 0), n as i64)?;
        }
        Ok(boxed(z))
    }

    fn cmp(&self, op: CmpOp, a: &dyn Storage, la: &Layout, b: &dyn Storage, lb: &Layout) -> Result<BoxStorage> {
        let (a, b) = (cu("cmp", a)?, cu("cmp", b)?);
        if a.dtype != b.dtype {
            return Err(Error::DTypeMismatch { op: "cmp", lhs: a.dtype, rhs: b.dtype });
        }
        same_shape("cmp", la, lb)?;
        let n = la.numel();
        let m = self.alloc(DType::U8, n)?;
        if n > 0 {
            let code = match op {
                CmpOp::Eq => 0i32,
                CmpOp::Ne => 1,
                CmpOp::Lt => 2,
                CmpOp::Le => 3,
                CmpOp::Gt => 4,
                CmpOp::Ge => 5,
            };
            let (sa, sb) = (Strided::of("cmp", la)?, Strided::of("cmp", lb)?);
            launch!(self, "cmp_any", grid_1d(n); code, dtype_code(a.dtype), sa, self.ptr(a, 0), sb, self.ptr(b, 0), self.ptr(&m, 0), n as i64)?;
        }
        Ok(boxed(m))
    }

    fn where_cond(
        &self,
        cond: &dyn Storage,
        lc: &Layout,
        a: &dyn Storage,
        la: &Layout,
        b: &dyn Storage,
        lb: &Layout,
    ) -> Result<BoxStorage> {
        let (c, a, b) = (cu("where_cond", cond)?, cu("where_cond", a)?, cu("where_cond", b)?);
        want("where_cond", c, DType::U8)?;
        if a.dtype != b.dtype {
            return Err(Error::DTypeMismatch { op: "where_cond", lhs: a.dtype, rhs: b.dtype });
        }
        same_shape("where_cond", la, lb)?;
        same_shape("where_cond", lc, la)?;
        let n = la.numel();
        let z = self.alloc(a.dtype, n)?;
        if n > 0 {
            let (sc, sa, sb) =
                (Strided::of("where_cond", lc)?, Strided::of("where_cond", la)?, Strided::of("where_cond", lb)?);
            let (pc, pa, pb, pz, n64) = (self.ptr(c, 0), self.ptr(a, 0), self.ptr(b, 0), self.ptr(&z, 0), n as i64);
            match a.dtype.size_in_bytes() {
                1 => launch!(self, "where_cond_b1", grid_1d(n); sc, pc, sa, pa, sb, pb, pz, n64)?,
                2 => launch!(self, "where_cond_b2", grid_1d(n); sc, pc, sa, pa, sb, pb, pz, n64)?,
                4 => launch!(self, "where_cond_b4", grid_1d(n); sc, pc, sa, pa, sb, pb, pz, n64)?,
                _ => launch!(self, "where_cond_b8", grid_1d(n); sc, pc, sa, pa, sb, pb, pz, n64)?,
            }
        }
        Ok(boxed(z))
    }
}
