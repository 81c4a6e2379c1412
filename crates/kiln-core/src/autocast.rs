//! Mixed-precision autocast (book ch. "mixed precision training"; PyTorch's `torch.autocast`):
//! inside [`autocast`], every f32 matrix product — [`Tensor::matmul`] and [`Tensor::linear`] —
//! runs with its operands rounded to bf16 or f16 and f32 accumulation, and its output rounded to
//! that type, as a tensor-core GEMM computes it; everything else (norms, softmax, attention,
//! losses, the optimizer) stays f32, and the parameters stay f32 master weights. Gradients flow
//! through the casts, so they are rounded the same way on their way back.
//!
//! A backend with half-precision GEMMs (CUDA: cuBLAS on tensor cores) runs the product in that
//! type; the CPU runs the same arithmetic as an f32 GEMM on the rounded operands (exact products
//! of 8- or 11-bit mantissas accumulated in f32), so CPU and GPU results agree up to summation
//! order.
//!
//! f16 needs loss scaling against gradient underflow (`kiln_train::DynamicLossScaler`); bf16 has
//! f32's exponent range and does not.

use crate::{DType, Error, Result, Tensor};
use std::cell::Cell;

thread_local! {
    static AUTOCAST: Cell<Option<DType>> = const { Cell::new(None) };
}

/// The half type matrix products use on this thread now (`None`: full f32).
pub fn autocast_dtype() -> Option<DType> {
    AUTOCAST.with(|a| a.get())
}

/// Runs `f` with matrix products in `dtype` (`BF16` or `F16`; `None` turns autocast off) and
/// restores the previous setting afterwards, also when `f` fails.
pub fn autocast<T>(dtype: Option<DType>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if let Some(d) = dtype {
        if !matches!(d, DType::BF16 | DType::F16) {
            return Err(Error::UnsupportedDType {
                op: "autocast",
                dtype: d,
                msg: "autocast runs matmuls in bf16 or f16",
            });
        }
    }
    let prev = AUTOCAST.with(|a| a.replace(dtype));
    let out = f();
    AUTOCAST.with(|a| a.set(prev));
    out
}

/// `A·B` under autocast in `dt`: round both operands, multiply with f32 accumulation, round the
/// product; returns f32. Autocast is off inside (the f32 fallback product must not recurse).
pub(crate) fn matmul(a: &Tensor, b: &Tensor, dt: DType) -> Result<Tensor> {
    autocast(None, || {
        let (ah, bh) = (a.to_dtype(dt)?, b.to_dtype(dt)?);
        let c = if a.device().backend().half_matmul(dt) {
            ah.matmul(&bh)?
        } else {
            ah.to_dtype(DType::F32)?.matmul(&bh.to_dtype(DType::F32)?)?.to_dtype(dt)?
        };
        c.to_dtype(DType::F32)
    })
}
