//! `y = x·Wᵀ` with a weight kept quantized ([`QuantMatrix`]; seed 004 "quantization": int4/int8
//! weights, dequantized on the fly), for inference on GGUF models and for training adapters on
//! a frozen quantized base (QLoRA-style: the gradient flows to `x`, never to `W`).
//!
//! Forward: the backend's quantized kernel (on the CPU, integer dots against 8-bit activations).
//! Backward: `dx = g·W` with `W` dequantized for the product (the weight itself gets none).

use crate::quant::QuantMatrix;
use crate::tensor::check_compute;
use crate::{DType, Error, Result, Tensor};
use std::sync::Arc;

impl Tensor {
    /// `x (…, K) · Wᵀ` → (…, N) for a quantized `w` of shape (N, K); f32.
    pub fn quantized_matmul(&self, w: &Arc<dyn QuantMatrix>) -> Result<Tensor> {
        check_compute("quantized_matmul", self)?;
        let (n, k) = w.shape();
        let r = self.rank();
        if r == 0 || self.dims()[r - 1] != k {
            return Err(Error::ShapeMismatch { op: "quantized_matmul", lhs: self.dims().to_vec(), rhs: vec![n, k] });
        }
        let x = self.to_dtype(DType::F32)?.contiguous()?;
        let s = self.device().backend().quantized_matmul((&**x.storage(), x.layout()), w.as_ref())?;
        crate::flops::add(crate::flops::product(&[x.numel() / k.max(1), n, k]));
        let mut shape = self.dims().to_vec();
        shape[r - 1] = n;
        let w = Arc::clone(w);
        Tensor::from_op(s, &shape, self.device(), "quantized_matmul", &[&x], move |g| {
            let wd = Tensor::from_vec(w.dequantize()?, &[n, k], g.device())?;
            Ok(vec![Some(g.matmul(&wd)?)])
        })
    }
}
