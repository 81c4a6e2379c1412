//! Elementwise kernels: unary maps, their derivatives, broadcasting binary ops, comparisons and
//! select.

use super::{not_impl, BoxStorage, Storage};
use crate::{Layout, Result};

/// Unary elementwise functions `y = f(x)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Tanh,
    Abs,
    Sqr,
    Recip,
    Relu,
    /// `x·Φ(x)` with the exact normal CDF `Φ(x) = ½(1 + erf(x/√2))`.
    GeluErf,
    /// GPT-2's `½x(1 + tanh(√(2/π)(x + 0.044715x³)))`.
    GeluTanh,
    /// `x·σ(x)` (Swish-1).
    Silu,
    Sigmoid,
    /// `x^p`.
    Powf(f64),
    /// `x·mul + add`.
    Affine {
        mul: f64,
        add: f64,
    },
}

impl UnaryOp {
    /// Name used in errors and anomaly reports.
    pub fn name(&self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Abs => "abs",
            UnaryOp::Sqr => "sqr",
            UnaryOp::Recip => "recip",
            UnaryOp::Relu => "relu",
            UnaryOp::GeluErf => "gelu",
            UnaryOp::GeluTanh => "gelu_tanh",
            UnaryOp::Silu => "silu",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Powf(_) => "powf",
            UnaryOp::Affine { .. } => "affine",
        }
    }
}

/// Binary elementwise functions `z = f(a, b)` with NumPy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
}

impl BinaryOp {
    /// Name used in errors.
    pub fn name(&self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
        }
    }
}

/// Comparisons producing a `U8` mask (1 = true).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Elementwise kernels. All outputs are contiguous with the (broadcast) output shape.
pub trait ElementwiseOps {
    /// `y = f(x)`.
    fn unary(&self, op: UnaryOp, x: &dyn Storage, lx: &Layout) -> Result<BoxStorage>;
    /// `dx = dy · f'(x)`; `lx` and `ldy` have the same shape.
    fn unary_bwd(
        &self,
        op: UnaryOp,
        x: &dyn Storage,
        lx: &Layout,
        dy: &dyn Storage,
        ldy: &Layout,
    ) -> Result<BoxStorage>;
    /// `z = f(a, b)`; `la` and `lb` are already broadcast to the output shape.
    fn binary(&self, op: BinaryOp, a: &dyn Storage, la: &Layout, b: &dyn Storage, lb: &Layout) -> Result<BoxStorage>;
    /// `m = a <op> b` as `U8`; layouts already broadcast.
    fn cmp(&self, op: CmpOp, a: &dyn Storage, la: &Layout, b: &dyn Storage, lb: &Layout) -> Result<BoxStorage> {
        let _ = (op, a, la, b, lb);
        not_impl("cmp", "?")
    }
    /// `z = cond ? a : b` (`cond` is `U8`); layouts already broadcast.
    #[allow(clippy::too_many_arguments)]
    fn where_cond(
        &self,
        cond: &dyn Storage,
        lc: &Layout,
        a: &dyn Storage,
        la: &Layout,
        b: &dyn Storage,
        lb: &Layout,
    ) -> Result<BoxStorage> {
        let _ = (cond, lc, a, la, b, lb);
        not_impl("where_cond", "?")
    }
}
