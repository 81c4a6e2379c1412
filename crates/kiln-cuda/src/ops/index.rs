//! Integer ids on the device: conversion to i64 and range checks (shared by the embedding
//! gather/scatter and cross-entropy), and `IndexOps`. Kernels: `kernels/index.cu`.

use crate::backend::{boxed, cu, grid_1d, launch, CudaBackend, Strided};
use crate::ops::memory::Dense;
use crate::storage::dtype_code;
use kiln_core::backend::{Arg, BoxStorage, IndexOps};
use kiln_core::{DType, Error, Result};

impl CudaBackend {
    /// `ids` (any integer dtype, any layout) as a dense i64 buffer.
    pub(crate) fn ids_i64<'a>(&self, op: &'static str, ids: Arg<'a>) -> Result<Dense<'a>> {
        let s = cu(op, ids.0)?;
        match s.dtype {
            DType::I64 => self.dense(s, ids.1),
            DType::I32 | DType::U8 => {
                let n = ids.1.numel();
                let out = self.alloc(DType::I64, n)?;
                if n > 0 {
                    launch!(self, "cast_any", grid_1d(n);
                        dtype_code(s.dtype), Strided::of(op, ids.1)?, self.ptr(s, 0), dtype_code(DType::I64), self.ptr(&out, 0), n as i64)?;
                }
                Ok(Dense::Copy(out))
            }
            d => Err(Error::UnsupportedDType { op, dtype: d, msg: "ids must be i64, i32 or u8" }),
        }
    }

    /// Fails with `IndexOutOfRange` naming the first id (in order) outside `[0, size)` other than
    /// `ignore`. Reads one word back from the device (a synchronisation).
    pub(crate) fn check_ids(&self, op: &'static str, ids: &Dense, n: usize, size: usize, ignore: i64) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let flag = self.stream.clone_htod(&[u64::MAX]).map_err(|e| self.err(op, e))?;
        let pf = self.slice_ptr(&flag);
        launch!(self, "check_ids", grid_1d(n); ids.ptr(self), n as i64, size as i64, ignore, pf)?;
        let first = self.stream.clone_dtoh(&flag).map_err(|e| self.err(op, e))?;
        let Some(&pos) = first.first().filter(|&&p| p != u64::MAX) else {
            return Ok(());
        };
        let mut bad = [0i64];
        let base = ids.ptr(self) + pos * 8;
        self.bind(op)?;
        // SAFETY: `pos` < n, so the 8 bytes at `base` are inside the ids buffer.
        unsafe { cudarc::driver::result::memcpy_dtoh_async(&mut bad, base, self.stream.cu_stream()) }
            .map_err(|e| self.err(op, e))?;
        self.stream.synchronize().map_err(|e| self.err(op, e))?;
        Err(Error::IndexOutOfRange { op, index: bad[0], size })
    }
}

/// (outer, size, inner) around `dim` of `shape`.
fn split(shape: &[usize], dim: usize) -> (usize, usize, usize) {
    (shape[..dim].iter().product(), shape[dim], shape[dim + 1..].iter().product())
}

impl IndexOps for CudaBackend {
    fn index_select(&self, x: Arg, dim: usize, ids: Arg) -> Result<BoxStorage> {
        const OP: &str = "index_select";
        let xs = cu(OP, x.0)?;
        let shape = x.1.shape();
        if dim >= shape.len() {
            return Err(Error::DimOutOfRange { op: OP, dim: dim as isize, rank: shape.len() });
        }
        if xs.dtype.size_in_bytes() != 4 {
            return Err(Error::UnsupportedDType {
                op: OP,
                dtype: xs.dtype,
                msg: "the CUDA gather takes 4-byte elements",
            });
        }
        let (outer, size, inner) = split(shape, dim);
        let n_ids = ids.1.numel();
        let ids = self.ids_i64(OP, ids)?;
        self.check_ids(OP, &ids, n_ids, size, i64::MIN)?;
        let xd = self.dense(xs, x.1)?;
        let total = outer * n_ids * inner;
        let y = self.alloc(xs.dtype, total)?;
        if total > 0 {
            launch!(self, "index_select_b4", grid_1d(total);
                xd.ptr(self), ids.ptr(self), self.ptr(&y, 0), outer as i64, size as i64, n_ids as i64, inner as i64)?;
        }
        Ok(boxed(y))
    }

    fn index_add(&self, shape: &[usize], dim: usize, ids: Arg, src: Arg) -> Result<BoxStorage> {
        const OP: &str = "index_add";
        if dim >= shape.len() {
            return Err(Error::DimOutOfRange { op: OP, dim: dim as isize, rank: shape.len() });
        }
        let (outer, size, inner) = split(shape, dim);
        let n_ids = ids.1.numel();
        let ss = cu(OP, src.0)?;
        if ss.dtype != DType::F32 {
            return Err(Error::UnsupportedDType { op: OP, dtype: ss.dtype, msg: "the CUDA kernels compute in f32" });
        }
        if src.1.numel() != outer * n_ids * inner {
            return Err(Error::ShapeMismatch { op: OP, lhs: shape.to_vec(), rhs: src.1.shape().to_vec() });
        }
        let ids = self.ids_i64(OP, ids)?;
        self.check_ids(OP, &ids, n_ids, size, i64::MIN)?;
        let sd = self.dense(ss, src.1)?;
        let out = self.alloc_zeros(DType::F32, outer * size * inner)?;
        let total = outer * n_ids * inner;
        if total > 0 {
            launch!(self, "index_add_f32", grid_1d(total);
                ids.ptr(self), sd.ptr(self), self.ptr(&out, 0), outer as i64, size as i64, n_ids as i64, inner as i64)?;
        }
        Ok(boxed(out))
    }
}
