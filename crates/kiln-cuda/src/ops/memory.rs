//! Allocation, host transfers, strided copies and dtype casts (`MemoryOps`).

use crate::backend::{boxed, cu, cu_mut, grid_1d, launch, CudaBackend, Strided};
use crate::storage::{dtype_code, CudaStorage};
use half::{bf16, f16};
use kiln_core::backend::{BoxStorage, MemoryOps, Storage};
use kiln_core::{DType, Error, HostData, Layout, Result};

/// The bytes of a slice of plain numbers.
fn bytes_of<T: Copy>(v: &[T]) -> &[u8] {
    // SAFETY: T is a plain number type (no padding, every bit pattern valid as u8).
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), std::mem::size_of_val(v)) }
}

/// A vector of `len` zeros of T, written from device bytes.
fn download<T: Copy + Default>(be: &CudaBackend, s: &CudaStorage, len: usize) -> Result<Vec<T>> {
    let mut v = vec![T::default(); len];
    if len > 0 {
        // SAFETY: T is a plain number type; the byte view covers exactly the vector's elements.
        let dst = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast::<u8>(), std::mem::size_of_val(&v[..])) };
        let n = dst.len();
        be.stream.memcpy_dtoh(&s.buf.slice(..n), dst).map_err(|e| be.err("to_host", e))?;
        be.stream.synchronize().map_err(|e| be.err("to_host", e))?;
    }
    Ok(v)
}

impl CudaBackend {
    /// A contiguous copy of `s` viewed by `l` (no copy kernel when already contiguous from 0).
    pub(crate) fn contiguous(&self, s: &CudaStorage, l: &Layout) -> Result<CudaStorage> {
        let n = l.numel();
        let out = self.alloc(s.dtype, n)?;
        if n == 0 {
            return Ok(out);
        }
        let (sl, src, dst, n64) = (Strided::of("copy_strided", l)?, self.ptr(s, 0), self.ptr(&out, 0), n as i64);
        match s.dtype.size_in_bytes() {
            1 => launch!(self, "copy_strided_b1", grid_1d(n); sl, src, dst, n64)?,
            2 => launch!(self, "copy_strided_b2", grid_1d(n); sl, src, dst, n64)?,
            4 => launch!(self, "copy_strided_b4", grid_1d(n); sl, src, dst, n64)?,
            _ => launch!(self, "copy_strided_b8", grid_1d(n); sl, src, dst, n64)?,
        }
        Ok(out)
    }

    /// `s` viewed by `l` as a dense row-major buffer: the storage itself when `l` is contiguous
    /// (at its offset), else a contiguous copy.
    pub(crate) fn dense<'a>(&self, s: &'a CudaStorage, l: &Layout) -> Result<Dense<'a>> {
        if l.is_contiguous() {
            Ok(Dense::View(s, l.offset()))
        } else {
            Ok(Dense::Copy(self.contiguous(s, l)?))
        }
    }
}

/// A dense operand: a contiguous view into a storage, or a contiguous copy.
pub(crate) enum Dense<'a> {
    View(&'a CudaStorage, usize),
    Copy(CudaStorage),
}

impl Dense<'_> {
    /// Device address of the first element.
    pub(crate) fn ptr(&self, be: &CudaBackend) -> u64 {
        match self {
            Dense::View(s, off) => be.ptr(s, *off),
            Dense::Copy(s) => be.ptr(s, 0),
        }
    }
}

impl MemoryOps for CudaBackend {
    fn zeros(&self, dtype: DType, len: usize) -> Result<BoxStorage> {
        Ok(boxed(self.alloc_zeros(dtype, len)?))
    }

    fn full(&self, dtype: DType, len: usize, value: f64) -> Result<BoxStorage> {
        let out = self.alloc(dtype, len)?;
        if len > 0 {
            launch!(self, "fill_any", grid_1d(len); dtype_code(dtype), value, self.ptr(&out, 0), len as i64)?;
        }
        Ok(boxed(out))
    }

    fn from_host(&self, data: HostData) -> Result<BoxStorage> {
        let (dtype, len) = (data.dtype(), data.len());
        let bytes: &[u8] = match &data {
            HostData::F32(v) => bytes_of(v),
            HostData::F64(v) => bytes_of(v),
            HostData::F16(v) => bytes_of(v),
            HostData::BF16(v) => bytes_of(v),
            HostData::I32(v) => bytes_of(v),
            HostData::I64(v) => bytes_of(v),
            HostData::U8(v) => bytes_of(v),
        };
        let mut out = self.alloc(dtype, len)?;
        if !bytes.is_empty() {
            let mut dst = out.buf.slice_mut(..bytes.len());
            self.stream.memcpy_htod(bytes, &mut dst).map_err(|e| self.err("from_host", e))?;
        }
        Ok(boxed(out))
    }

    fn to_host(&self, s: &dyn Storage, layout: &Layout) -> Result<HostData> {
        let s = cu("to_host", s)?;
        let c = self.contiguous(s, layout)?;
        let n = layout.numel();
        Ok(match s.dtype {
            DType::F32 => HostData::F32(download::<f32>(self, &c, n)?),
            DType::F64 => HostData::F64(download::<f64>(self, &c, n)?),
            DType::F16 => HostData::F16(download::<f16>(self, &c, n)?),
            DType::BF16 => HostData::BF16(download::<bf16>(self, &c, n)?),
            DType::I32 => HostData::I32(download::<i32>(self, &c, n)?),
            DType::I64 => HostData::I64(download::<i64>(self, &c, n)?),
            DType::U8 => HostData::U8(download::<u8>(self, &c, n)?),
        })
    }

    fn copy_strided(&self, s: &dyn Storage, layout: &Layout) -> Result<BoxStorage> {
        Ok(boxed(self.contiguous(cu("copy_strided", s)?, layout)?))
    }

    fn to_dtype(&self, s: &dyn Storage, layout: &Layout, dtype: DType) -> Result<BoxStorage> {
        let s = cu("to_dtype", s)?;
        if s.dtype == dtype {
            return Ok(boxed(self.contiguous(s, layout)?));
        }
        let n = layout.numel();
        let out = self.alloc(dtype, n)?;
        if n > 0 {
            let sl = Strided::of("to_dtype", layout)?;
            launch!(self, "cast_any", grid_1d(n); dtype_code(s.dtype), sl, self.ptr(s, 0), dtype_code(dtype), self.ptr(&out, 0), n as i64)?;
        }
        Ok(boxed(out))
    }

    fn copy_into(
        &self,
        dst: &mut dyn Storage,
        dst_layout: &Layout,
        src: &dyn Storage,
        src_layout: &Layout,
    ) -> Result<()> {
        let src = cu("copy_into", src)?;
        let dst = cu_mut("copy_into", dst)?;
        if dst_layout.shape() != src_layout.shape() {
            return Err(Error::ShapeMismatch {
                op: "copy_into",
                lhs: dst_layout.shape().to_vec(),
                rhs: src_layout.shape().to_vec(),
            });
        }
        if dst.dtype != src.dtype {
            return Err(Error::DTypeMismatch { op: "copy_into", lhs: dst.dtype, rhs: src.dtype });
        }
        let n = src_layout.numel();
        if n == 0 {
            return Ok(());
        }
        let (ld, ls) = (Strided::of("copy_into", dst_layout)?, Strided::of("copy_into", src_layout)?);
        let (d, s, n64) = (self.ptr(dst, 0), self.ptr(src, 0), n as i64);
        match src.dtype.size_in_bytes() {
            1 => launch!(self, "copy_into_b1", grid_1d(n); ld, d, ls, s, n64),
            2 => launch!(self, "copy_into_b2", grid_1d(n); ld, d, ls, s, n64),
            4 => launch!(self, "copy_into_b4", grid_1d(n); ld, d, ls, s, n64),
            _ => launch!(self, "copy_into_b8", grid_1d(n); ld, d, ls, s, n64),
        }
    }
}
