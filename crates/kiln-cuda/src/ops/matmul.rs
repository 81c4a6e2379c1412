//! Batched matmul through cuBLAS (`cublasGemmStridedBatchedEx`): f32 (optionally TF32 tensor
//! cores), f16 and bf16 inputs with f32 accumulation.
//!
//! kiln is row-major, cuBLAS column-major: `C = A·B` (M×N row-major) is computed as
//! `Cᵀ = Bᵀ·Aᵀ` (N×M column-major, ldc = N). A row-major operand is its transpose in column-major
//! terms and is passed with `OP_N`; a transposed view (strides (1, ld)) is column-major already
//! and is passed with `OP_T` — so `Aᵀ·B` and `A·Bᵀ` cost no copy. Other strides are copied to
//! contiguous first.

use crate::backend::{boxed, cu, grid_1d, launch, CudaBackend};
use crate::storage::CudaStorage;
use cudarc::cublas::sys::{
    cublasComputeType_t, cublasGemmAlgo_t, cublasGemmStridedBatchedEx, cublasOperation_t, cudaDataType_t,
};
use kiln_core::backend::{BoxStorage, MatmulOps, Storage};
use kiln_core::{DType, Error, Layout, Result};
use std::ffi::c_void;

/// How cuBLAS reads one (rows × cols) row-major operand: `OP_N` with leading dimension `ld` when
/// stored row-major, `OP_T` when stored column-major, plus the batch stride.
#[derive(Clone, Copy, Debug)]
struct Operand {
    trans: bool,
    ld: usize,
    batch_stride: usize,
}

/// The operand geometry of a (batch…, rows, cols) view, or `None` when cuBLAS cannot read it in
/// place (then it is copied to contiguous).
fn operand(l: &Layout) -> Option<Operand> {
    let (sh, st) = (l.shape(), l.strides());
    let r = sh.len();
    let (rows, cols, rs, cs) = (sh[r - 2], sh[r - 1], st[r - 2], st[r - 1]);
    // one stride for all batch dims (dims of size 1 are free)
    let mut batch_stride = None;
    let mut expect = None;
    for d in (0..r - 2).rev() {
        if sh[d] == 1 {
            continue;
        }
        match expect {
            None => {
                batch_stride = Some(st[d]);
                expect = Some(st[d] * sh[d]);
            }
            Some(e) => {
                if st[d] != e {
                    return None;
                }
                expect = Some(e * sh[d]);
            }
        }
    }
    let batch_stride = batch_stride.unwrap_or(0);
    let row_major = cols == 1 || cs == 1;
    let col_major = rows == 1 || rs == 1;
    if row_major && (rows == 1 || rs >= cols) {
        Some(Operand { trans: false, ld: if rows == 1 { cols.max(1) } else { rs }, batch_stride })
    } else if col_major && (cols == 1 || cs >= rows) {
        Some(Operand { trans: true, ld: if cols == 1 { rows.max(1) } else { cs }, batch_stride })
    } else {
        None
    }
}

fn cuda_type(d: DType) -> Result<cudaDataType_t> {
    match d {
        DType::F32 => Ok(cudaDataType_t::CUDA_R_32F),
        DType::F16 => Ok(cudaDataType_t::CUDA_R_16F),
        DType::BF16 => Ok(cudaDataType_t::CUDA_R_16BF),
        d => Err(Error::UnsupportedDType { op: "matmul", dtype: d, msg: "cuBLAS GEMMs take f32, f16 or bf16" }),
    }
}

fn as_int(op: &'static str, v: usize) -> Result<i32> {
    i32::try_from(v).map_err(|_| Error::Invalid { op, msg: format!("dimension {v} exceeds cuBLAS's 32-bit sizes") })
}

impl CudaBackend {
    /// `C = A·B (+ C when accumulate)`, C contiguous (batch, M, N) of A's dtype.
    fn gemm(
        &self,
        a: &CudaStorage,
        la: &Layout,
        b: &CudaStorage,
        lb: &Layout,
        c: &mut CudaStorage,
        accumulate: bool,
    ) -> Result<()> {
        const OP: &str = "matmul";
        let (sa, sb) = (la.shape(), lb.shape());
        let r = sa.len();
        let (m, k, n) = (sa[r - 2], sa[r - 1], sb[r - 1]);
        let batch: usize = sa[..r - 2].iter().product();
        if m == 0 || n == 0 || batch == 0 {
            return Ok(());
        }
        // operands cuBLAS cannot read in place are copied (kept alive until the call is queued)
        let (ca, cb);
        let (a, la2, oa) = match operand(la) {
            Some(o) => (a, la.clone(), o),
            None => {
                ca = self.contiguous(a, la)?;
                let l = Layout::contiguous(la.shape());
                let o = operand(&l).ok_or(Error::Invalid { op: OP, msg: "operand layout".into() })?;
                (&ca, l, o)
            }
        };
        let (b, lb2, ob) = match operand(lb) {
            Some(o) => (b, lb.clone(), o),
            None => {
                cb = self.contiguous(b, lb)?;
                let l = Layout::contiguous(lb.shape());
                let o = operand(&l).ok_or(Error::Invalid { op: OP, msg: "operand layout".into() })?;
                (&cb, l, o)
            }
        };
        let ty = cuda_type(a.dtype)?;
        let compute = if a.dtype == DType::F32 && self.tf32 {
            cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32
        } else {
            cublasComputeType_t::CUBLAS_COMPUTE_32F
        };
        let (alpha, beta) = (1.0f32, if accumulate { 1.0f32 } else { 0.0f32 });
        let op_of = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
        let (pa, pb, pc) = (self.ptr(a, la2.offset()), self.ptr(b, lb2.offset()), self.ptr(c, 0));
        self.bind(OP)?;
        // Cᵀ (N×M) = op(B-buffer) (N×K) · op(A-buffer) (K×M)
        // SAFETY: pointers are live buffers of this backend; the leading dimensions and batch
        // strides come from the views' own strides, so every access stays inside them.
        let status = unsafe {
            cublasGemmStridedBatchedEx(
                *self.blas.handle(),
                op_of(ob.trans),
                op_of(oa.trans),
                as_int(OP, n)?,
                as_int(OP, m)?,
                as_int(OP, k)?,
                (&alpha as *const f32).cast::<c_void>(),
                pb as *const c_void,
                ty,
                as_int(OP, ob.ld)?,
                ob.batch_stride as i64,
                pa as *const c_void,
                ty,
                as_int(OP, oa.ld)?,
                oa.batch_stride as i64,
                (&beta as *const f32).cast::<c_void>(),
                pc as *mut c_void,
                ty,
                as_int(OP, n)?,
                (m * n) as i64,
                as_int(OP, batch)?,
                compute,
                cublasGemmAlgo_t::CUBLAS_GEMM_DFALT,
            )
        };
        status.result().map_err(|e| Error::Backend { backend: "cuda", op: OP, msg: format!("{e:?}") })
    }
}

fn check(la: &Layout, lb: &Layout, a: &CudaStorage, b: &CudaStorage) -> Result<()> {
    let (sa, sb) = (la.shape(), lb.shape());
    if sa.len() < 2
        || sa.len() != sb.len()
        || sa[..sa.len() - 2] != sb[..sb.len() - 2]
        || sa[sa.len() - 1] != sb[sb.len() - 2]
    {
        return Err(Error::ShapeMismatch { op: "matmul", lhs: sa.to_vec(), rhs: sb.to_vec() });
    }
    if a.dtype != b.dtype {
        return Err(Error::DTypeMismatch { op: "matmul", lhs: a.dtype, rhs: b.dtype });
    }
    Ok(())
}

fn out_len(la: &Layout, lb: &Layout) -> usize {
    let r = la.rank();
    la.shape()[..r - 1].iter().product::<usize>() * lb.shape()[r - 1]
}

impl MatmulOps for CudaBackend {
    fn half_matmul(&self, dtype: DType) -> bool {
        matches!(dtype, DType::F16 | DType::BF16)
    }

    fn matmul(&self, a: &dyn Storage, la: &Layout, b: &dyn Storage, lb: &Layout) -> Result<BoxStorage> {
        let (a, b) = (cu("matmul", a)?, cu("matmul", b)?);
        check(la, lb, a, b)?;
        let mut c = self.alloc(a.dtype, out_len(la, lb))?;
        self.gemm(a, la, b, lb, &mut c, false)?;
        Ok(boxed(c))
    }

    fn matmul_bias(
        &self,
        a: &dyn Storage,
        la: &Layout,
        b: &dyn Storage,
        lb: &Layout,
        bias: &dyn Storage,
        lbias: &Layout,
    ) -> Result<BoxStorage> {
        let (a, b, bias) = (cu("matmul_bias", a)?, cu("matmul_bias", b)?, cu("matmul_bias", bias)?);
        check(la, lb, a, b)?;
        let n = lb.shape()[lb.rank() - 1];
        if lbias.shape() != [n] || bias.dtype != DType::F32 || a.dtype != DType::F32 {
            return Err(Error::ShapeMismatch { op: "matmul_bias", lhs: vec![n], rhs: lbias.shape().to_vec() });
        }
        let len = out_len(la, lb);
        let mut c = self.alloc(DType::F32, len)?;
        if len > 0 {
            let bias = self.dense(bias, lbias)?;
            launch!(self, "fill_rows_f32", grid_1d(len); bias.ptr(self), self.ptr(&c, 0), (len / n) as i64, n as i64)?;
        }
        self.gemm(a, la, b, lb, &mut c, true)?;
        Ok(boxed(c))
    }
}
