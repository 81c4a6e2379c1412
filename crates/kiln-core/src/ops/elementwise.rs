//! Elementwise ops: unary maps, broadcasting binary arithmetic, comparisons, select, dtype casts.
//!
//! Backward rules (g = dL/dy):
//! - unary `y = f(x)`: `dx = g·f'(x)` (one fused kernel, [`UnaryOp`] table in the backend);
//! - `a + b`: `(g, g)`; `a − b`: `(g, −g)`; `a·b`: `(g·b, g·a)`; `a / b`: `(g/b, −g·a/b²)`;
//!   `max(a, b)`: g goes to the larger (to `a` on ties); each then summed back over broadcast dims;
//! - `where(c, a, b)`: `(c ? g : 0, c ? 0 : g)`.

use crate::backend::{BinaryOp, CmpOp, UnaryOp};
use crate::shape::broadcast_shapes;
use crate::tensor::{check_compute, check_same_device, check_same_dtype};
use crate::{DType, Result, Tensor};

impl Tensor {
    /// `y = f(x)` for any [`UnaryOp`], with its derivative on the tape.
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        check_compute(op.name(), self)?;
        let s = self.device().backend().unary(op, &**self.storage(), self.layout())?;
        let x = self.clone();
        Tensor::from_op(s, self.dims(), self.device(), op.name(), &[self], move |g| {
            let dx = x.device().backend().unary_bwd(op, &**x.storage(), x.layout(), &**g.storage(), g.layout())?;
            Ok(vec![Some(Tensor::from_storage(dx, x.dims(), x.device())?)])
        })
    }

    /// `−x`.
    pub fn neg(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Neg)
    }
    /// `eˣ`.
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Exp)
    }
    /// Natural log.
    pub fn log(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Log)
    }
    /// `√x`.
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt)
    }
    /// `tanh x`.
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Tanh)
    }
    /// `|x|`.
    pub fn abs(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Abs)
    }
    /// `x²`.
    pub fn sqr(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqr)
    }
    /// `1/x`.
    pub fn recip(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Recip)
    }
    /// `max(x, 0)`.
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Relu)
    }
    /// GELU with the exact normal CDF: `x·Φ(x)` (BERT, PyTorch's default).
    pub fn gelu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::GeluErf)
    }
    /// GELU, tanh approximation (GPT-2): `½x(1 + tanh(√(2/π)(x + 0.044715x³)))`.
    pub fn gelu_tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::GeluTanh)
    }
    /// SiLU / Swish: `x·σ(x)`.
    pub fn silu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Silu)
    }
    /// `σ(x) = 1/(1 + e⁻ˣ)`.
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sigmoid)
    }
    /// `xᵖ`.
    pub fn powf(&self, p: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Powf(p))
    }
    /// `x·mul + add`.
    pub fn affine(&self, mul: f64, add: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Affine { mul, add })
    }
    /// `x·s`.
    pub fn scale(&self, s: f64) -> Result<Tensor> {
        self.affine(s, 0.0)
    }
    /// `x + s`.
    pub fn add_scalar(&self, s: f64) -> Result<Tensor> {
        self.affine(1.0, s)
    }

    /// Broadcasting `f(a, b)` for any [`BinaryOp`], with its backward.
    pub fn binary(&self, rhs: &Tensor, op: BinaryOp) -> Result<Tensor> {
        let name = op.name();
        check_same_device(name, self, rhs)?;
        check_same_dtype(name, self, rhs)?;
        check_compute(name, self)?;
        let shape = broadcast_shapes(name, self.dims(), rhs.dims())?;
        let la = self.layout().broadcast_as(&shape)?;
        let lb = rhs.layout().broadcast_as(&shape)?;
        let s = self.device().backend().binary(op, &**self.storage(), &la, &**rhs.storage(), &lb)?;
        // Sums and differences need no input values in the backward: they keep none (a
        // residual stream's branch output is then freed during the forward pass).
        let keep = !matches!(op, BinaryOp::Add | BinaryOp::Sub);
        let (a, b) = if keep { (Some(self.clone()), Some(rhs.clone())) } else { (None, None) };
        let (need_a, need_b) = (self.requires_grad(), rhs.requires_grad());
        let (dims_a, dims_b) = (self.dims().to_vec(), rhs.dims().to_vec());
        Tensor::from_op(s, &shape, self.device(), name, &[self, rhs], move |g| {
            let saved = |t: &Option<Tensor>| {
                t.clone().ok_or_else(|| crate::Error::Autograd(format!("backward of `{name}`: input not saved")))
            };
            let (ga, gb) = match op {
                BinaryOp::Add => (g.clone(), g.clone()),
                BinaryOp::Sub => (g.clone(), g.neg()?),
                BinaryOp::Mul => (g.mul(&saved(&b)?)?, g.mul(&saved(&a)?)?),
                BinaryOp::Div => {
                    let (a, b) = (saved(&a)?, saved(&b)?);
                    (g.div(&b)?, g.mul(&a)?.div(&b.sqr()?)?.neg()?)
                }
                BinaryOp::Maximum | BinaryOp::Minimum => {
                    let c = if op == BinaryOp::Maximum { CmpOp::Ge } else { CmpOp::Le };
                    let take_a = saved(&a)?.cmp(&saved(&b)?, c)?;
                    let zero = g.zeros_like()?;
                    (take_a.where_cond(g, &zero)?, take_a.where_cond(&zero, g)?)
                }
            };
            let ga = if need_a { Some(ga.sum_to(&dims_a)?) } else { None };
            let gb = if need_b { Some(gb.sum_to(&dims_b)?) } else { None };
            Ok(vec![ga, gb])
        })
    }

    /// `a + b` (broadcasting).
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Add)
    }
    /// `a − b` (broadcasting).
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Sub)
    }
    /// `a · b` elementwise (broadcasting).
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Mul)
    }
    /// `a / b` (broadcasting).
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Div)
    }
    /// Elementwise maximum (broadcasting).
    pub fn maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Maximum)
    }
    /// Elementwise minimum (broadcasting).
    pub fn minimum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Minimum)
    }

    /// Elementwise comparison as a `U8` mask (broadcasting; not differentiable).
    pub fn cmp(&self, rhs: &Tensor, op: CmpOp) -> Result<Tensor> {
        check_same_device("cmp", self, rhs)?;
        check_same_dtype("cmp", self, rhs)?;
        let shape = broadcast_shapes("cmp", self.dims(), rhs.dims())?;
        let la = self.layout().broadcast_as(&shape)?;
        let lb = rhs.layout().broadcast_as(&shape)?;
        let s = self.device().backend().cmp(op, &**self.storage(), &la, &**rhs.storage(), &lb)?;
        Tensor::from_storage(s, &shape, self.device())
    }

    /// Comparison with a scalar.
    pub fn cmp_scalar(&self, value: f64, op: CmpOp) -> Result<Tensor> {
        let v = Tensor::full(&[], value, self.dtype(), self.device())?;
        self.cmp(&v, op)
    }

    /// `cond ? a : b` elementwise, `self` being the `U8` condition (broadcasting all three).
    pub fn where_cond(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        check_same_device("where_cond", a, b)?;
        check_same_device("where_cond", self, a)?;
        check_same_dtype("where_cond", a, b)?;
        if self.dtype() != DType::U8 {
            return Err(crate::Error::UnsupportedDType {
                op: "where_cond",
                dtype: self.dtype(),
                msg: "the condition must be u8",
            });
        }
        let shape = broadcast_shapes("where_cond", a.dims(), b.dims())?;
        let shape = broadcast_shapes("where_cond", self.dims(), &shape)?;
        let (lc, la, lb) =
            (self.layout().broadcast_as(&shape)?, a.layout().broadcast_as(&shape)?, b.layout().broadcast_as(&shape)?);
        let s = self.device().backend().where_cond(&**self.storage(), &lc, &**a.storage(), &la, &**b.storage(), &lb)?;
        let (c, ta, tb) = (self.clone(), a.clone(), b.clone());
        Tensor::from_op(s, &shape, a.device(), "where_cond", &[a, b], move |g| {
            let zero = g.zeros_like()?;
            let ga = if ta.requires_grad() { Some(c.where_cond(g, &zero)?.sum_to(ta.dims())?) } else { None };
            let gb = if tb.requires_grad() { Some(c.where_cond(&zero, g)?.sum_to(tb.dims())?) } else { None };
            Ok(vec![ga, gb])
        })
    }

    /// `mask ? value : x` (`mask` is `U8`, broadcast to `x`).
    pub fn masked_fill(&self, mask: &Tensor, value: f64) -> Result<Tensor> {
        let v = Tensor::full(&[], value, self.dtype(), self.device())?;
        let out = mask.where_cond(&v, self)?;
        if out.dims() != self.dims() {
            return Err(crate::Error::Broadcast {
                op: "masked_fill",
                lhs: self.dims().to_vec(),
                rhs: mask.dims().to_vec(),
            });
        }
        Ok(out)
    }

    /// Converts to `dtype`; differentiable between float types (the gradient is cast back).
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let s = self.device().backend().to_dtype(&**self.storage(), self.layout(), dtype)?;
        let from = self.dtype();
        let inputs: &[&Tensor] = if dtype.is_float() && from.is_float() { &[self] } else { &[] };
        Tensor::from_op(s, self.dims(), self.device(), "to_dtype", inputs, move |g| Ok(vec![Some(g.to_dtype(from)?)]))
    }
}
