//! Batched matrix multiplication.

use super::{not_impl, Arg, BoxStorage, Storage};
use crate::quant::QuantMatrix;
use crate::{Layout, Result};

/// Matmul kernels.
pub trait MatmulOps {
    /// `C[b] = A[b] · B[b]` for `la` = (batch…, M, K), `lb` = (batch…, K, N) with identical,
    /// already-broadcast batch dims. Any strides are allowed (a transposed operand is a view), so
    /// `Aᵀ·B` costs no copy. Output: contiguous (batch…, M, N).
    fn matmul(&self, a: &dyn Storage, la: &Layout, b: &dyn Storage, lb: &Layout) -> Result<BoxStorage>;

    /// `C[b] = A[b] · B[b] + bias`, `bias` (N,) added to every row: the affine layer's forward in
    /// one pass (the GEMM accumulates onto rows pre-filled with the bias, so the sum costs no
    /// extra sweep over C). Same layouts as [`MatmulOps::matmul`].
    fn matmul_bias(
        &self,
        a: &dyn Storage,
        la: &Layout,
        b: &dyn Storage,
        lb: &Layout,
        bias: &dyn Storage,
        lbias: &Layout,
    ) -> Result<BoxStorage>;

    /// True when [`MatmulOps::matmul`] takes operands of the half type `dtype` (f16/bf16) and
    /// accumulates in f32 (tensor cores); autocast then runs products in that type. The default
    /// (CPU) says no: autocast runs the same arithmetic as an f32 product of rounded operands.
    fn half_matmul(&self, dtype: crate::DType) -> bool {
        let _ = dtype;
        false
    }

    /// `Y = X·Wᵀ` for a contiguous f32 `x` (M, K) and a quantized `w` (N, K): (M, N) f32, `w`
    /// never materialised ([`QuantMatrix::matmul_t`] on the CPU).
    fn quantized_matmul(&self, x: Arg, w: &dyn QuantMatrix) -> Result<BoxStorage> {
        let _ = (x, w);
        not_impl("quantized_matmul", "?")
    }
}
