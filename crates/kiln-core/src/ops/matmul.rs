//! Batched matrix multiplication with broadcasting batch dims.
//!
//! `C = A·B`, A (…, M, K), B (…, K, N) → C (…, M, N). Backward: `dA = g·Bᵀ`, `dB = Aᵀ·g`, each
//! summed over broadcast batch dims. Transposed operands are strided views: the backend kernel
//! (`gemm` on CPU) reads them in place.

use crate::shape::broadcast_shapes;
use crate::tensor::{check_compute, check_same_device, check_same_dtype};
use crate::{DType, Error, Result, Tensor};

/// Matmul operands must be a compute type, or a half type the backend multiplies natively
/// (autocast's products and their backward).
fn check_matmul_dtype(op: &'static str, a: &Tensor) -> Result<()> {
    let d = a.dtype();
    if matches!(d, DType::F16 | DType::BF16) && a.device().backend().half_matmul(d) {
        return Ok(());
    }
    check_compute(op, a)
}

impl Tensor {
    /// Matrix product over the last two dims, broadcasting the leading ones.
    /// Inside [`crate::autocast()`], f32 operands are multiplied in the autocast half type.
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        check_same_device("matmul", self, rhs)?;
        check_same_dtype("matmul", self, rhs)?;
        if let (Some(dt), DType::F32) = (crate::autocast_dtype(), self.dtype()) {
            return crate::autocast::matmul(self, rhs, dt);
        }
        check_matmul_dtype("matmul", self)?;
        let (ra, rb) = (self.rank(), rhs.rank());
        if ra < 2 || rb < 2 || self.dims()[ra - 1] != rhs.dims()[rb - 2] {
            return Err(Error::ShapeMismatch { op: "matmul", lhs: self.dims().to_vec(), rhs: rhs.dims().to_vec() });
        }
        // (…, M, K)·(K, N): fold the batch into M for one large GEMM when that needs no copy.
        if rb == 2 && ra > 2 && self.is_contiguous() {
            let k = self.dims()[ra - 1];
            let m: usize = self.numel() / k.max(1);
            let mut out_shape = self.dims().to_vec();
            out_shape[ra - 1] = rhs.dims()[1];
            return self.reshape(&[m, k])?.matmul(rhs)?.reshape(&out_shape);
        }
        let (m, n) = (self.dims()[ra - 2], rhs.dims()[rb - 1]);
        let batch = broadcast_shapes("matmul", &self.dims()[..ra - 2], &rhs.dims()[..rb - 2])?;
        let mut sa = batch.clone();
        sa.extend_from_slice(&self.dims()[ra - 2..]);
        let mut sb = batch.clone();
        sb.extend_from_slice(&rhs.dims()[rb - 2..]);
        let mut out_shape = batch;
        out_shape.extend_from_slice(&[m, n]);
        let la = self.layout().broadcast_as(&sa)?;
        let lb = rhs.layout().broadcast_as(&sb)?;
        let s = self.device().backend().matmul(&**self.storage(), &la, &**rhs.storage(), &lb)?;
        let k = self.dims()[ra - 1];
        crate::flops::add(crate::flops::product(&[out_shape.iter().product::<usize>(), k]));
        let (a, b) = (self.clone(), rhs.clone());
        Tensor::from_op(s, &out_shape, self.device(), "matmul", &[self, rhs], move |g| {
            let ga = if a.requires_grad() { Some(g.matmul(&b.t()?)?.sum_to(a.dims())?) } else { None };
            let gb = if b.requires_grad() { Some(a.t()?.matmul(g)?.sum_to(b.dims())?) } else { None };
            Ok(vec![ga, gb])
        })
    }

    /// `y = x·Wᵀ + b` with `W` (out, in) as stored by PyTorch/HF, `x` (…, in), `b` (out,).
    ///
    /// With a bias this is one fused node: forward is a single GEMM accumulating onto rows
    /// pre-filled with `b`; backward computes `dx = g·W` (…, in), `dW = gᵀ·x` (out, in) and
    /// `db = Σ_rows g` (out,) together, with no separate broadcast-add node.
    /// Inside [`crate::autocast()`], the product runs in the autocast half type and the bias is
    /// added in f32.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let Some(b) = bias else { return self.matmul(&weight.t()?) };
        if crate::autocast_dtype().is_some() && self.dtype() == DType::F32 {
            return self.matmul(&weight.t()?)?.add(b);
        }
        check_same_device("linear", self, weight)?;
        check_same_device("linear", self, b)?;
        check_same_dtype("linear", self, weight)?;
        check_same_dtype("linear", self, b)?;
        check_compute("linear", self)?;
        let r = self.rank();
        let (wd, bd) = (weight.dims(), b.dims());
        if r < 1 || weight.rank() != 2 || wd[1] != self.dims()[r - 1] || bd != [wd[0]] {
            return Err(Error::ShapeMismatch { op: "linear", lhs: self.dims().to_vec(), rhs: [wd, bd].concat() });
        }
        let (k, n) = (wd[1], wd[0]);
        let m = self.numel() / k.max(1);
        let x2 = self.contiguous()?.reshape(&[m, k])?; // (M,K)
        let wt = weight.t()?; // (K,N) view
        let s = self.device().backend().matmul_bias(
            &**x2.storage(),
            x2.layout(),
            &**wt.storage(),
            wt.layout(),
            &**b.storage(),
            b.layout(),
        )?;
        crate::flops::add(crate::flops::product(&[m, n, k]));
        let mut out_shape = self.dims().to_vec();
        out_shape[r - 1] = n;
        let (x, w) = (x2.clone(), weight.clone());
        let (need_x, need_w, need_b) = (x2.requires_grad(), weight.requires_grad(), b.requires_grad());
        Tensor::from_op(s, &out_shape, self.device(), "linear", &[&x2, weight, b], move |g| {
            let g = g.reshape(&[m, n])?; // (M,N)
            let gx = if need_x { Some(g.matmul(&w)?) } else { None }; // (M,K)
            let gw = if need_w { Some(g.t()?.matmul(&x)?) } else { None }; // (N,K)
            let gb = if need_b { Some(g.sum_to(&[n])?) } else { None }; // (N,)
            Ok(vec![gx, gw, gb])
        })
    }
}
