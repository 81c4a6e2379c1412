//! Elementwise kernels: unary maps and their derivatives, broadcasting binary ops, comparisons,
//! select. Contiguous inputs take a flat (parallel) loop; strided/broadcast inputs walk rows.

use super::float::KFloat;
use super::strided::{gather, inner, row_starts};
use super::PAR_MIN;
use crate::pool::{self, Poolable};
use crate::storage::{cpu, dispatch_float, CpuStorage, Elem};
use crate::CpuBackend;
use kiln_core::backend::{BinaryOp, BoxStorage, CmpOp, ElementwiseOps, Storage, UnaryOp};
use kiln_core::{Error, Layout, Result};
use rayon::prelude::*;
use std::borrow::Cow;

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const FRAC_1_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
const GELU_C: f64 = 0.044_715;
/// Elements per parallel task of the flat loops.
const CHUNK: usize = 1 << 14;

/// The contiguous elements of `l` (borrowed when already contiguous).
fn dense<'a, T: Poolable>(v: &'a [T], l: &Layout) -> Cow<'a, [T]> {
    match l.contiguous_range() {
        Some((a, b)) => Cow::Borrowed(&v[a..b]),
        None => Cow::Owned(gather(v, l)),
    }
}

/// Returns a gathered copy made by [`dense`] to the pool.
fn recycle<T: Poolable>(c: Cow<'_, [T]>) {
    if let Cow::Owned(v) = c {
        pool::give(v);
    }
}

fn vec_arg<'a, T: Elem>(op: &'static str, s: &'a dyn Storage) -> Result<&'a Vec<T>> {
    T::vec_of(s).ok_or(Error::UnsupportedDType { op, dtype: s.dtype(), msg: "operands must share one compute dtype" })
}

/// `out[i] = f(x[i])`, in parallel for large inputs.
fn map1<T: Elem>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    let mut out = pool::take(x.len());
    // Plain slice loops inside each task, so the closure body vectorises.
    let run = |(o, xs): (&mut [T], &[T])| o.iter_mut().zip(xs).for_each(|(o, &v)| *o = f(v));
    if x.len() >= PAR_MIN {
        out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(run);
    } else {
        run((&mut out, x));
    }
    out
}

/// `out[i] = f(x[i], y[i])`, in parallel for large inputs.
fn map2<T: Elem>(x: &[T], y: &[T], f: impl Fn(T, T) -> T + Sync) -> Vec<T> {
    let mut out = pool::take(x.len());
    let run = |(o, (xs, ys)): (&mut [T], (&[T], &[T]))| {
        o.iter_mut().zip(xs.iter().zip(ys)).for_each(|(o, (&a, &b))| *o = f(a, b))
    };
    if x.len() >= PAR_MIN {
        out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(y.par_chunks(CHUNK))).for_each(run);
    } else {
        run((&mut out, (x, y)));
    }
    out
}

/// `tanh u = 1 − 2/(e^(2u) + 1)` on the fast exp (GELU's hot path; `Tanh` itself stays exact).
#[inline(always)]
fn tanh_fast<T: KFloat>(u: T) -> T {
    T::one() - T::c(2.0) / ((u + u).fexp() + T::one())
}

fn sigmoid<T: KFloat>(x: T) -> T {
    T::one() / (T::one() + (-x).fexp())
}

fn unary_fwd<T: Elem>(op: UnaryOp, s: &dyn Storage, l: &Layout) -> Result<BoxStorage> {
    let x = dense(vec_arg::<T>(op.name(), s)?, l);
    let c = T::c;
    let y = match op {
        UnaryOp::Neg => map1(&x, |v| -v),
        UnaryOp::Exp => map1(&x, |v| v.fexp()),
        UnaryOp::Log => map1(&x, |v| v.ln()),
        UnaryOp::Sqrt => map1(&x, |v| v.sqrt()),
        UnaryOp::Tanh => map1(&x, |v| v.tanh()),
        UnaryOp::Abs => map1(&x, |v| v.abs()),
        UnaryOp::Sqr => map1(&x, |v| v * v),
        UnaryOp::Recip => map1(&x, |v| v.recip()),
        UnaryOp::Relu => map1(&x, |v| v.max(T::zero())),
        UnaryOp::GeluErf => map1(&x, |v| c(0.5) * v * (T::one() + (v * c(std::f64::consts::FRAC_1_SQRT_2)).ferf())),
        UnaryOp::GeluTanh => {
            map1(&x, |v| c(0.5) * v * (T::one() + tanh_fast(c(SQRT_2_OVER_PI) * (v + c(GELU_C) * v * v * v))))
        }
        UnaryOp::Silu => map1(&x, |v| v * sigmoid(v)),
        UnaryOp::Sigmoid => map1(&x, sigmoid),
        UnaryOp::Powf(p) => map1(&x, |v| v.powf(c(p))),
        UnaryOp::Affine { mul, add } => map1(&x, |v| v * c(mul) + c(add)),
    };
    recycle(x);
    Ok(T::wrap(y))
}

fn unary_bwd_t<T: Elem>(
    op: UnaryOp,
    xs: &dyn Storage,
    lx: &Layout,
    gs: &dyn Storage,
    lg: &Layout,
) -> Result<BoxStorage> {
    let x = dense(vec_arg::<T>(op.name(), xs)?, lx);
    let g = dense(vec_arg::<T>(op.name(), gs)?, lg);
    let c = T::c;
    let one = T::one();
    let dx = match op {
        UnaryOp::Neg => map2(&x, &g, |_, g| -g),
        UnaryOp::Exp => map2(&x, &g, |x, g| g * x.fexp()),
        UnaryOp::Log => map2(&x, &g, |x, g| g / x),
        UnaryOp::Sqrt => map2(&x, &g, |x, g| g / (c(2.0) * x.sqrt())),
        UnaryOp::Tanh => map2(&x, &g, |x, g| {
            let t = x.tanh();
            g * (one - t * t)
        }),
        UnaryOp::Abs => map2(&x, &g, |x, g| {
            if x > T::zero() {
                g
            } else if x < T::zero() {
                -g
            } else {
                T::zero()
            }
        }),
        UnaryOp::Sqr => map2(&x, &g, |x, g| c(2.0) * x * g),
        UnaryOp::Recip => map2(&x, &g, |x, g| -g / (x * x)),
        UnaryOp::Relu => map2(&x, &g, |x, g| if x > T::zero() { g } else { T::zero() }),
        UnaryOp::GeluErf => map2(&x, &g, |x, g| {
            let cdf = c(0.5) * (one + (x * c(std::f64::consts::FRAC_1_SQRT_2)).ferf());
            let pdf = c(FRAC_1_SQRT_2PI) * (c(-0.5) * x * x).fexp();
            g * (cdf + x * pdf)
        }),
        UnaryOp::GeluTanh => map2(&x, &g, |x, g| {
            let t = tanh_fast(c(SQRT_2_OVER_PI) * (x + c(GELU_C) * x * x * x));
            let du = c(SQRT_2_OVER_PI) * (one + c(3.0 * GELU_C) * x * x);
            g * (c(0.5) * (one + t) + c(0.5) * x * (one - t * t) * du)
        }),
        UnaryOp::Silu => map2(&x, &g, |x, g| {
            let s = sigmoid(x);
            g * s * (one + x * (one - s))
        }),
        UnaryOp::Sigmoid => map2(&x, &g, |x, g| {
            let s = sigmoid(x);
            g * s * (one - s)
        }),
        UnaryOp::Powf(p) => map2(&x, &g, |x, g| g * c(p) * x.powf(c(p - 1.0))),
        UnaryOp::Affine { mul, .. } => map2(&x, &g, |_, g| g * c(mul)),
    };
    recycle(x);
    recycle(g);
    Ok(T::wrap(dx))
}

/// `out = f(a, b)` over layouts already broadcast to the output shape.
fn zip_layouts<A: Copy + Sync, B: Copy + Sync, O: Poolable + Sync>(
    a: &[A],
    la: &Layout,
    b: &[B],
    lb: &Layout,
    f: impl Fn(A, B) -> O + Sync,
) -> Vec<O> {
    let numel = la.numel();
    let mut out = pool::take(numel);
    if numel == 0 {
        return out;
    }
    if let (Some((a0, a1)), Some((b0, b1))) = (la.contiguous_range(), lb.contiguous_range()) {
        let (a, b) = (&a[a0..a1], &b[b0..b1]);
        if numel >= PAR_MIN {
            out.par_iter_mut().zip(a.par_iter().zip(b.par_iter())).for_each(|(o, (&x, &y))| *o = f(x, y));
        } else {
            out.iter_mut().zip(a.iter().zip(b)).for_each(|(o, (&x, &y))| *o = f(x, y));
        }
        return out;
    }
    let (n, sa) = inner(la);
    let (_, sb) = inner(lb);
    let (ra, rb) = (row_starts(la), row_starts(lb));
    let row = |(o, (&oa, &ob)): (&mut [O], (&usize, &usize))| {
        for (j, v) in o.iter_mut().enumerate() {
            *v = f(a[oa + j * sa], b[ob + j * sb]);
        }
    };
    if numel >= PAR_MIN {
        out.par_chunks_mut(n).zip(ra.par_iter().zip(rb.par_iter())).for_each(row);
    } else {
        out.chunks_mut(n).zip(ra.iter().zip(rb.iter())).for_each(row);
    }
    out
}

fn binary_t<T: Elem>(op: BinaryOp, a: &dyn Storage, la: &Layout, b: &dyn Storage, lb: &Layout) -> Result<BoxStorage> {
    let (x, y) = (vec_arg::<T>(op.name(), a)?, vec_arg::<T>(op.name(), b)?);
    let out = match op {
        BinaryOp::Add => zip_layouts(x, la, y, lb, |p, q| p + q),
        BinaryOp::Sub => zip_layouts(x, la, y, lb, |p, q| p - q),
        BinaryOp::Mul => zip_layouts(x, la, y, lb, |p, q| p * q),
        BinaryOp::Div => zip_layouts(x, la, y, lb, |p, q| p / q),
        BinaryOp::Maximum => zip_layouts(x, la, y, lb, |p, q| if p >= q { p } else { q }),
        BinaryOp::Minimum => zip_layouts(x, la, y, lb, |p, q| if p <= q { p } else { q }),
    };
    Ok(T::wrap(out))
}

fn cmp_fn<T: PartialOrd>(op: CmpOp) -> impl Fn(T, T) -> u8 + Sync {
    move |p: T, q: T| {
        (match op {
            CmpOp::Eq => p == q,
            CmpOp::Ne => p != q,
            CmpOp::Lt => p < q,
            CmpOp::Le => p <= q,
            CmpOp::Gt => p > q,
            CmpOp::Ge => p >= q,
        }) as u8
    }
}

impl ElementwiseOps for CpuBackend {
    fn unary(&self, op: UnaryOp, x: &dyn Storage, lx: &Layout) -> Result<BoxStorage> {
        dispatch_float!(op.name(), x.dtype(), unary_fwd(op, x, lx))
    }

    fn unary_bwd(
        &self,
        op: UnaryOp,
        x: &dyn Storage,
        lx: &Layout,
        dy: &dyn Storage,
        ldy: &Layout,
    ) -> Result<BoxStorage> {
        if lx.shape() != ldy.shape() {
            return Err(Error::ShapeMismatch { op: op.name(), lhs: lx.shape().to_vec(), rhs: ldy.shape().to_vec() });
        }
        dispatch_float!(op.name(), x.dtype(), unary_bwd_t(op, x, lx, dy, ldy))
    }

    fn binary(&self, op: BinaryOp, a: &dyn Storage, la: &Layout, b: &dyn Storage, lb: &Layout) -> Result<BoxStorage> {
        if la.shape() != lb.shape() {
            return Err(Error::ShapeMismatch { op: op.name(), lhs: la.shape().to_vec(), rhs: lb.shape().to_vec() });
        }
        dispatch_float!(op.name(), a.dtype(), binary_t(op, a, la, b, lb))
    }

    fn cmp(&self, op: CmpOp, a: &dyn Storage, la: &Layout, b: &dyn Storage, lb: &Layout) -> Result<BoxStorage> {
        let out = match (cpu("cmp", a)?, cpu("cmp", b)?) {
            (CpuStorage::F32(x), CpuStorage::F32(y)) => zip_layouts(x, la, y, lb, cmp_fn(op)),
            (CpuStorage::F64(x), CpuStorage::F64(y)) => zip_layouts(x, la, y, lb, cmp_fn(op)),
            (CpuStorage::I32(x), CpuStorage::I32(y)) => zip_layouts(x, la, y, lb, cmp_fn(op)),
            (CpuStorage::I64(x), CpuStorage::I64(y)) => zip_layouts(x, la, y, lb, cmp_fn(op)),
            (CpuStorage::U8(x), CpuStorage::U8(y)) => zip_layouts(x, la, y, lb, cmp_fn(op)),
            (x, y) => return Err(Error::DTypeMismatch { op: "cmp", lhs: x.dtype(), rhs: y.dtype() }),
        };
        Ok(CpuStorage::U8(out).boxed())
    }

    fn where_cond(
        &self,
        c: &dyn Storage,
        lc: &Layout,
        a: &dyn Storage,
        la: &Layout,
        b: &dyn Storage,
        lb: &Layout,
    ) -> Result<BoxStorage> {
        let CpuStorage::U8(cond) = cpu("where_cond", c)? else {
            return Err(Error::UnsupportedDType {
                op: "where_cond",
                dtype: c.dtype(),
                msg: "the condition must be u8",
            });
        };
        // Pick per element: a where the (broadcast) mask is set, else b.
        let mask = gather(cond, lc);
        macro_rules! sel {
            ($x:expr, $y:expr, $var:ident) => {{
                let xa = gather($x, la);
                let mut out = gather($y, lb);
                out.iter_mut().zip(xa.iter().zip(mask.iter())).for_each(|(o, (&v, &m))| {
                    if m != 0 {
                        *o = v
                    }
                });
                pool::give(xa);
                CpuStorage::$var(out)
            }};
        }
        let out = match (cpu("where_cond", a)?, cpu("where_cond", b)?) {
            (CpuStorage::F32(x), CpuStorage::F32(y)) => sel!(x, y, F32),
            (CpuStorage::F64(x), CpuStorage::F64(y)) => sel!(x, y, F64),
            (CpuStorage::I32(x), CpuStorage::I32(y)) => sel!(x, y, I32),
            (CpuStorage::I64(x), CpuStorage::I64(y)) => sel!(x, y, I64),
            (CpuStorage::U8(x), CpuStorage::U8(y)) => sel!(x, y, U8),
            (x, y) => return Err(Error::DTypeMismatch { op: "where_cond", lhs: x.dtype(), rhs: y.dtype() }),
        };
        Ok(out.boxed())
    }
}
