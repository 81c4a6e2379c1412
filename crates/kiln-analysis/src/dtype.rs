//! [`Dtype`]: how many bytes a run of n elements takes in a storage format — plain floats and
//! integers, and ggml's block-quantized formats (a block of 32 weights with its scales).
//!
//! `bytes(n) = ⌈n / block_elems⌉ · block_bytes`: exact, so byte counts stay integers even for
//! 4.5-bit formats. Block sizes are ggml's (`ggml-common.h`: `block_q8_0` = f16 scale + 32 i8 =
//! 34 B, `block_q4_0` = f16 scale + 16 B of nibbles = 18 B, `block_q4_1` = f16 scale and min +
//! 16 B = 20 B), the formats kiln reads and runs (`kiln_formats::QMatrix`).

use crate::checked::{div_ceil, prod, to_u64};
use crate::error::{AnalysisError, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A storage format for weights, activations or the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    /// IEEE binary32, 4 bytes.
    F32,
    /// IEEE binary16, 2 bytes.
    F16,
    /// bfloat16, 2 bytes.
    Bf16,
    /// 8-bit float (E4M3 / E5M2), 1 byte (per-tensor scales neglected).
    Fp8,
    /// 8-bit integer, 1 byte (per-channel scales neglected).
    Int8,
    /// 4-bit integer, two per byte (group scales neglected).
    Int4,
    /// ggml Q8_0: blocks of 32 int8 weights with an f16 scale (34 B / 32, 8.5 bits).
    #[serde(rename = "q8_0")]
    Q8_0,
    /// ggml Q4_0: blocks of 32 4-bit weights with an f16 scale (18 B / 32, 4.5 bits).
    #[serde(rename = "q4_0")]
    Q4_0,
    /// ggml Q4_1: blocks of 32 4-bit weights with f16 scale and minimum (20 B / 32, 5 bits).
    #[serde(rename = "q4_1")]
    Q4_1,
}

impl Dtype {
    /// Every format, in the order of [`Dtype::name`]'s table.
    pub const ALL: [Dtype; 9] = [
        Dtype::F32,
        Dtype::F16,
        Dtype::Bf16,
        Dtype::Fp8,
        Dtype::Int8,
        Dtype::Int4,
        Dtype::Q8_0,
        Dtype::Q4_0,
        Dtype::Q4_1,
    ];

    /// `(elements, bytes)` of one storage block: `(1, 4)` for f32, `(2, 1)` for int4,
    /// `(32, 34)` for Q8_0, …
    pub fn block(self) -> (u64, u64) {
        match self {
            Dtype::F32 => (1, 4),
            Dtype::F16 | Dtype::Bf16 => (1, 2),
            Dtype::Fp8 | Dtype::Int8 => (1, 1),
            Dtype::Int4 => (2, 1),
            Dtype::Q8_0 => (32, 34),
            Dtype::Q4_0 => (32, 18),
            Dtype::Q4_1 => (32, 20),
        }
    }

    /// Bits per element, `8 · block_bytes / block_elems` (32 for f32, 4.5 for Q4_0).
    pub fn bits(self) -> f64 {
        let (e, b) = self.block();
        8.0 * b as f64 / e as f64
    }

    /// Bytes of a contiguous run of `n` elements: `⌈n / block_elems⌉ · block_bytes`.
    pub fn bytes(self, n: u64) -> Result<u64> {
        let (e, b) = self.block();
        to_u64("dtype bytes", prod("dtype bytes", &[div_ceil(n as u128, e as u128), b as u128])?)
    }

    /// `rows` runs of `row_len` elements each, every row padded to whole blocks (how ggml lays
    /// out a quantized matrix or a KV-cache row): `rows · bytes(row_len)`.
    pub fn bytes_rows(self, rows: u64, row_len: u64) -> Result<u64> {
        to_u64("dtype bytes", prod("dtype bytes", &[rows as u128, self.bytes(row_len)? as u128])?)
    }

    /// The lower-case name, as [`FromStr`] reads it (`f32`, `bf16`, `q4_1`, …).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::F16 => "f16",
            Dtype::Bf16 => "bf16",
            Dtype::Fp8 => "fp8",
            Dtype::Int8 => "int8",
            Dtype::Int4 => "int4",
            Dtype::Q8_0 => "q8_0",
            Dtype::Q4_0 => "q4_0",
            Dtype::Q4_1 => "q4_1",
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dtype {
    type Err = AnalysisError;

    /// Reads a [`Dtype::name`], case-insensitively; `fp32`, `fp16`, `half` and `float` are
    /// accepted as aliases.
    fn from_str(s: &str) -> Result<Dtype> {
        let lower = s.to_ascii_lowercase();
        let alias = match lower.as_str() {
            "fp32" | "float" | "float32" => "f32",
            "fp16" | "half" | "float16" => "f16",
            "bfloat16" => "bf16",
            "i8" => "int8",
            "i4" => "int4",
            other => other,
        };
        Dtype::ALL.into_iter().find(|d| d.name() == alias).ok_or_else(|| AnalysisError::InvalidInput {
            what: "dtype",
            msg: format!("{s:?} is not one of {}", Dtype::ALL.iter().map(|d| d.name()).collect::<Vec<_>>().join(", ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_bytes() {
        assert_eq!(Dtype::F32.bytes(3).unwrap(), 12);
        assert_eq!(Dtype::Int4.bytes(3).unwrap(), 2);
        assert_eq!(Dtype::Q4_1.bytes(64).unwrap(), 40);
        assert_eq!(Dtype::Q8_0.bytes(33).unwrap(), 68);
        assert_eq!(Dtype::Q4_0.bits(), 4.5);
        assert_eq!("FP16".parse::<Dtype>().unwrap(), Dtype::F16);
        assert!("f24".parse::<Dtype>().is_err());
    }
}
