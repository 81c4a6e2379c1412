//! [`CpuStorage`]: a host `Vec` of one dtype, plus the downcasting helpers every kernel uses.

use crate::pool;
use half::{bf16, f16};
use kiln_core::backend::{Arg, BoxStorage, Storage};
use kiln_core::{DType, Error, HostData, Layout, Result};
use std::any::Any;

/// CPU storage: one vector per dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
}

impl Storage for CpuStorage {
    fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::BF16(_) => DType::BF16,
            CpuStorage::I32(_) => DType::I32,
            CpuStorage::I64(_) => DType::I64,
            CpuStorage::U8(_) => DType::U8,
        }
    }
    fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
            CpuStorage::F16(v) => v.len(),
            CpuStorage::BF16(v) => v.len(),
            CpuStorage::I32(v) => v.len(),
            CpuStorage::I64(v) => v.len(),
            CpuStorage::U8(v) => v.len(),
        }
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

impl Drop for CpuStorage {
    /// Returns the buffer to the [`crate::pool`].
    fn drop(&mut self) {
        match self {
            CpuStorage::F32(v) => pool::give(std::mem::take(v)),
            CpuStorage::F64(v) => pool::give(std::mem::take(v)),
            CpuStorage::F16(v) => pool::give(std::mem::take(v)),
            CpuStorage::BF16(v) => pool::give(std::mem::take(v)),
            CpuStorage::I32(v) => pool::give(std::mem::take(v)),
            CpuStorage::I64(v) => pool::give(std::mem::take(v)),
            CpuStorage::U8(v) => pool::give(std::mem::take(v)),
        }
    }
}

impl CpuStorage {
    /// Moves the contents out as host data (leaving an empty buffer behind).
    pub fn into_host(mut self) -> HostData {
        match &mut self {
            CpuStorage::F32(v) => HostData::F32(std::mem::take(v)),
            CpuStorage::F64(v) => HostData::F64(std::mem::take(v)),
            CpuStorage::F16(v) => HostData::F16(std::mem::take(v)),
            CpuStorage::BF16(v) => HostData::BF16(std::mem::take(v)),
            CpuStorage::I32(v) => HostData::I32(std::mem::take(v)),
            CpuStorage::I64(v) => HostData::I64(std::mem::take(v)),
            CpuStorage::U8(v) => HostData::U8(std::mem::take(v)),
        }
    }

    /// Wraps host data.
    pub fn from_host(h: HostData) -> CpuStorage {
        match h {
            HostData::F32(v) => CpuStorage::F32(v),
            HostData::F64(v) => CpuStorage::F64(v),
            HostData::F16(v) => CpuStorage::F16(v),
            HostData::BF16(v) => CpuStorage::BF16(v),
            HostData::I32(v) => CpuStorage::I32(v),
            HostData::I64(v) => CpuStorage::I64(v),
            HostData::U8(v) => CpuStorage::U8(v),
        }
    }

    /// Boxes it for the backend API.
    pub fn boxed(self) -> BoxStorage {
        Box::new(self)
    }
}

/// Downcasts a storage made by this backend.
pub(crate) fn cpu<'a>(op: &'static str, s: &'a dyn Storage) -> Result<&'a CpuStorage> {
    s.as_any().downcast_ref::<CpuStorage>().ok_or(Error::DeviceMismatch {
        op,
        lhs: "cpu".into(),
        rhs: "another backend".into(),
    })
}

/// Downcasts a storage made by this backend, mutably.
pub(crate) fn cpu_mut<'a>(op: &'static str, s: &'a mut dyn Storage) -> Result<&'a mut CpuStorage> {
    s.as_any_mut().downcast_mut::<CpuStorage>().ok_or(Error::DeviceMismatch {
        op,
        lhs: "cpu".into(),
        rhs: "another backend".into(),
    })
}

/// The contiguous slice a layout views; errors when the layout is strided.
pub(crate) fn contiguous_slice<'a, T>(op: &'static str, data: &'a [T], l: &Layout) -> Result<&'a [T]> {
    let (a, b) = l.contiguous_range().ok_or_else(|| Error::BadShape {
        op,
        shape: l.shape().to_vec(),
        msg: "kernel needs a contiguous input".into(),
    })?;
    data.get(a..b).ok_or_else(|| Error::BadShape {
        op,
        shape: l.shape().to_vec(),
        msg: "layout exceeds storage".into(),
    })
}

/// Element type of float kernels.
pub(crate) trait Elem:
    crate::kernels::float::KFloat + crate::pool::Poolable + crate::pool::scratch::Scratch
{
    fn slice<'a>(op: &'static str, a: Arg<'a>) -> Result<&'a [Self]>;
    fn vec_of(s: &dyn Storage) -> Option<&Vec<Self>>;
    fn wrap(v: Vec<Self>) -> BoxStorage;
}

impl Elem for f32 {
    fn slice<'a>(op: &'static str, a: Arg<'a>) -> Result<&'a [f32]> {
        match cpu(op, a.0)? {
            CpuStorage::F32(v) => contiguous_slice(op, v, a.1),
            o => Err(Error::DTypeMismatch { op, lhs: DType::F32, rhs: o.dtype() }),
        }
    }
    fn vec_of(s: &dyn Storage) -> Option<&Vec<f32>> {
        match s.as_any().downcast_ref::<CpuStorage>()? {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn wrap(v: Vec<f32>) -> BoxStorage {
        Box::new(CpuStorage::F32(v))
    }
}

impl Elem for f64 {
    fn slice<'a>(op: &'static str, a: Arg<'a>) -> Result<&'a [f64]> {
        match cpu(op, a.0)? {
            CpuStorage::F64(v) => contiguous_slice(op, v, a.1),
            o => Err(Error::DTypeMismatch { op, lhs: DType::F64, rhs: o.dtype() }),
        }
    }
    fn vec_of(s: &dyn Storage) -> Option<&Vec<f64>> {
        match s.as_any().downcast_ref::<CpuStorage>()? {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn wrap(v: Vec<f64>) -> BoxStorage {
        Box::new(CpuStorage::F64(v))
    }
}

/// Dispatches a generic float kernel `$f::<T>(…)` on the dtype of `$s` (F32 or F64).
macro_rules! dispatch_float {
    ($op:expr, $dtype:expr, $f:ident ( $($arg:expr),* )) => {
        match $dtype {
            kiln_core::DType::F32 => $f::<f32>($($arg),*),
            kiln_core::DType::F64 => $f::<f64>($($arg),*),
            d => Err(kiln_core::Error::UnsupportedDType { op: $op, dtype: d, msg: "compute kernels take f32 or f64" }),
        }
    };
}
pub(crate) use dispatch_float;
