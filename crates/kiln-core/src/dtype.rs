//! Element types.
//!
//! kiln stores tensors in any of these types; the compute kernels work in `F32` (and `F64`, used by
//! the finite-difference gradient checks). `F16`/`BF16` are storage formats (weights, mixed
//! precision): convert with [`crate::Tensor::to_dtype`]. Integer types hold indices and masks.

use half::{bf16, f16};
use std::fmt;

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// IEEE-754 single precision: the compute type.
    F32,
    /// IEEE-754 double precision: the gradcheck reference type.
    F64,
    /// IEEE-754 half precision (5-bit exponent).
    F16,
    /// bfloat16 (8-bit exponent, 7-bit mantissa).
    BF16,
    /// 32-bit signed integer (indices).
    I32,
    /// 64-bit signed integer (indices, PyTorch's default).
    I64,
    /// Unsigned byte (masks, quantized blocks).
    U8,
}

impl DType {
    /// Every dtype, in a fixed order.
    pub const ALL: [DType; 7] = [DType::F32, DType::F64, DType::F16, DType::BF16, DType::I32, DType::I64, DType::U8];

    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::U8 => 1,
        }
    }

    /// True for floating-point types.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
    }

    /// True for the types the compute kernels accept (`F32`, `F64`).
    pub fn is_compute(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// True for integer types usable as indices.
    pub fn is_index(self) -> bool {
        matches!(self, DType::I32 | DType::I64 | DType::U8)
    }

    /// Lower-case name as in PyTorch / safetensors (`f32`, `bf16`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Host-side contents of a tensor: one variant per dtype. This is how data enters and leaves a
/// backend ([`crate::Tensor::from_vec`], [`crate::Tensor::to_vec`]).
#[derive(Clone, Debug, PartialEq)]
pub enum HostData {
    F32(Vec<f32>),
    F64(Vec<f64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
}

impl HostData {
    /// The dtype of this buffer.
    pub fn dtype(&self) -> DType {
        match self {
            HostData::F32(_) => DType::F32,
            HostData::F64(_) => DType::F64,
            HostData::F16(_) => DType::F16,
            HostData::BF16(_) => DType::BF16,
            HostData::I32(_) => DType::I32,
            HostData::I64(_) => DType::I64,
            HostData::U8(_) => DType::U8,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            HostData::F32(v) => v.len(),
            HostData::F64(v) => v.len(),
            HostData::F16(v) => v.len(),
            HostData::BF16(v) => v.len(),
            HostData::I32(v) => v.len(),
            HostData::I64(v) => v.len(),
            HostData::U8(v) => v.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every element converted to `f64` (exact for all dtypes but large `i64`).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            HostData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            HostData::F64(v) => v.clone(),
            HostData::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            HostData::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
            HostData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            HostData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            HostData::U8(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// Converts every element from `f64` into a buffer of `dtype` (round to nearest; integers
    /// truncate toward zero and saturate).
    pub fn from_f64_slice(values: &[f64], dtype: DType) -> HostData {
        let it = values.iter().copied();
        match dtype {
            DType::F32 => HostData::F32(it.map(|x| x as f32).collect()),
            DType::F64 => HostData::F64(it.collect()),
            DType::F16 => HostData::F16(it.map(f16::from_f64).collect()),
            DType::BF16 => HostData::BF16(it.map(bf16::from_f64).collect()),
            DType::I32 => HostData::I32(it.map(|x| x as i32).collect()),
            DType::I64 => HostData::I64(it.map(|x| x as i64).collect()),
            DType::U8 => HostData::U8(it.map(|x| x as u8).collect()),
        }
    }
}

/// A Rust element type that maps to a [`DType`]; lets `Tensor::from_vec` and `Tensor::to_vec`
/// be generic over the host type.
pub trait WithDType: Copy + Send + Sync + 'static {
    /// The matching dtype.
    const DTYPE: DType;
    /// Wraps a vector.
    fn into_host(v: Vec<Self>) -> HostData;
    /// Unwraps a vector, or `None` for another dtype.
    fn from_host(h: HostData) -> Option<Vec<Self>>;
}

macro_rules! with_dtype {
    ($t:ty, $variant:ident) => {
        impl WithDType for $t {
            const DTYPE: DType = DType::$variant;
            fn into_host(v: Vec<Self>) -> HostData {
                HostData::$variant(v)
            }
            fn from_host(h: HostData) -> Option<Vec<Self>> {
                match h {
                    HostData::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
with_dtype!(f32, F32);
with_dtype!(f64, F64);
with_dtype!(f16, F16);
with_dtype!(bf16, BF16);
with_dtype!(i32, I32);
with_dtype!(i64, I64);
with_dtype!(u8, U8);
