//! Device buffers: [`CudaStorage`] is a typed view of one CUDA allocation.

use cudarc::driver::CudaSlice;
use kiln_core::backend::Storage;
use kiln_core::DType;
use std::any::Any;
use std::fmt;

/// `len` elements of `dtype` in device memory (a byte allocation of at least one byte: CUDA
/// refuses empty ones).
pub struct CudaStorage {
    pub(crate) buf: CudaSlice<u8>,
    pub(crate) dtype: DType,
    pub(crate) len: usize,
}

impl fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CudaStorage({}, {} elements)", self.dtype, self.len)
    }
}

impl Storage for CudaStorage {
    fn dtype(&self) -> DType {
        self.dtype
    }
    fn len(&self) -> usize {
        self.len
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The dtype code the kernels use (`DT_*` in `common.cuh`): the order of [`DType::ALL`].
pub(crate) fn dtype_code(d: DType) -> i32 {
    match d {
        DType::F32 => 0,
        DType::F64 => 1,
        DType::F16 => 2,
        DType::BF16 => 3,
        DType::I32 => 4,
        DType::I64 => 5,
        DType::U8 => 6,
    }
}
