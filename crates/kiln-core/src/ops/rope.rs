//! Fused rotary position embedding (Su et al. 2021, RoFormer; LLaMA; seed 002/003 "RoPE").
//!
//! With the rotate-half pairing of GPT-NeoX/HF LLaMA (channel `i` pairs with `i + D/2`) and tables
//! `cos`, `sin` (T, D) that repeat the D/2 frequencies twice:
//! `rope(x)_t = x_t ⊙ cos_t + rotate_half(x_t) ⊙ sin_t`, `rotate_half([a, b]) = [−b, a]`.
//! Backward: the transposed Jacobian (for RoPE's tables, the rotation by −θ), one kernel pass.
//!
//! # Shapes
//! `x`: (…, T, D), D even; `cos`, `sin`: (T, D); output like `x`.

use crate::tensor::{check_compute, check_same_dtype};
use crate::{Error, Result, Tensor};

impl Tensor {
    /// Rotary embedding of `self` (…, T, D) at the positions whose angles `cos`, `sin` (T, D)
    /// hold (constants: no gradient flows to them). One pass forward and one backward, instead
    /// of the six ops of [`Tensor::rope_reference`].
    pub fn rope(&self, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        check_compute("rope", self)?;
        check_same_dtype("rope", self, cos)?;
        check_same_dtype("rope", self, sin)?;
        let r = self.rank();
        let (t, d) = if r >= 2 { (self.dims()[r - 2], self.dims()[r - 1]) } else { (0, 0) };
        if r < 2 || d % 2 != 0 || cos.dims() != [t, d] || sin.dims() != [t, d] {
            return Err(Error::ShapeMismatch { op: "rope", lhs: self.dims().to_vec(), rhs: cos.dims().to_vec() });
        }
        let (x, c, s) = (self.contiguous()?, cos.detach().contiguous()?, sin.detach().contiguous()?);
        let run = move |x: &Tensor, transpose: bool| -> Result<Tensor> {
            let y = x.device().backend().rope(
                (&**x.storage(), x.layout()),
                (&**c.storage(), c.layout()),
                (&**s.storage(), s.layout()),
                transpose,
            )?;
            Tensor::from_storage(y, x.dims(), x.device())
        };
        let y = run(&x, false)?;
        y.record("rope", &[&x], move |g| Ok(vec![Some(run(&g.contiguous()?, true)?)]))
    }

    /// RoPE composed from primitive ops (chunk, neg, cat, mul, add): the reference the fused
    /// [`Tensor::rope`] is tested against.
    pub fn rope_reference(&self, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let halves = self.chunk(2, -1)?;
        let rotated = Tensor::cat(&[&halves[1].neg()?, &halves[0]], -1)?;
        self.mul(cos)?.add(&rotated.mul(sin)?)
    }
}
