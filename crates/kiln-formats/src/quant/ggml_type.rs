//! ggml tensor types: their on-disk ids, block sizes (elements per block) and type sizes (bytes per
//! block), as ggml's `type_traits` table and gguf-py's `GGML_QUANT_SIZES` define them.
//!
//! A tensor of `n` elements of type `t` stored row by row occupies `n / block_size(t) * type_size(t)`
//! bytes; every row length (`ne[0]`) must be a whole number of blocks.

use std::fmt;

/// Elements per "super-block" of the K-quants (ggml's `QK_K`).
pub const QK_K: usize = 256;
/// Elements per block of the legacy 32-element quants (ggml's `QK4_0`, `QK4_1`, `QK5_0`, `QK5_1`, `QK8_0`).
pub const QK: usize = 32;

/// A ggml tensor element type, with the numeric id GGUF stores in each tensor info.
///
/// Every id ggml has assigned is known here, so a file's byte layout can be checked for any of
/// them; [`GgmlType::can_dequantize`] says which ones [`crate::quant::dequantize`] handles.
/// Ids 4 and 5 (the removed Q4_2, Q4_3) and 31–33, 36–38 (removed repacked layouts) are unknown.
#[allow(non_camel_case_types)] // the names ggml and llama.cpp use, so they can be grepped for
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// IEEE f32.
    F32,
    /// IEEE half.
    F16,
    /// 32-weight blocks: f16 scale, 4-bit codes (offset 8).
    Q4_0,
    /// 32-weight blocks: f16 scale and min, 4-bit codes.
    Q4_1,
    /// 32-weight blocks: f16 scale, 5-bit codes (offset 16).
    Q5_0,
    /// 32-weight blocks: f16 scale and min, 5-bit codes.
    Q5_1,
    /// 32-weight blocks: f16 scale, i8 codes.
    Q8_0,
    /// 32-weight blocks: f16 scale and sum, i8 codes (ggml's matmul intermediate; not dequantized).
    Q8_1,
    /// 256-weight super-blocks, 2-bit codes, 4-bit sub-block scales and mins.
    Q2_K,
    /// 256-weight super-blocks, 3-bit codes, 6-bit sub-block scales.
    Q3_K,
    /// 256-weight super-blocks, 4-bit codes, 6-bit sub-block scales and mins.
    Q4_K,
    /// 256-weight super-blocks, 5-bit codes, 6-bit sub-block scales and mins.
    Q5_K,
    /// 256-weight super-blocks, 6-bit codes, i8 sub-block scales.
    Q6_K,
    /// 256-weight super-blocks: f32 scale, i8 codes, i16 block sums (matmul intermediate).
    Q8_K,
    /// An importance-matrix (i-quant) layout; parsed, not dequantized.
    IQ2_XXS,
    /// An importance-matrix (i-quant) layout; parsed, not dequantized.
    IQ2_XS,
    /// An importance-matrix (i-quant) layout; parsed, not dequantized.
    IQ3_XXS,
    /// An importance-matrix (i-quant) layout; parsed, not dequantized.
    IQ1_S,
    /// An importance-matrix (i-quant) layout; parsed, not dequantized.
    IQ4_NL,
    /// An importance-matrix (i-quant) layout; parsed, not dequantized.
    IQ3_S,
    /// An importance-matrix (i-quant) layout; parsed, not dequantized.
    IQ2_S,
    /// An importance-matrix (i-quant) layout; parsed, not dequantized.
    IQ4_XS,
    /// Signed 8-bit integer; parsed, not dequantized.
    I8,
    /// Signed 16-bit integer; parsed, not dequantized.
    I16,
    /// Signed 32-bit integer; parsed, not dequantized.
    I32,
    /// Signed 64-bit integer; parsed, not dequantized.
    I64,
    /// IEEE f64; parsed, not dequantized.
    F64,
    /// An importance-matrix (i-quant) layout; parsed, not dequantized.
    IQ1_M,
    /// bfloat16.
    BF16,
    /// A ternary layout; parsed, not dequantized.
    TQ1_0,
    /// A ternary layout; parsed, not dequantized.
    TQ2_0,
    /// A 4-bit float / 1-bit layout; parsed, not dequantized.
    MXFP4,
    /// A 4-bit float / 1-bit layout; parsed, not dequantized.
    NVFP4,
    /// A 4-bit float / 1-bit layout; parsed, not dequantized.
    Q1_0,
}

/// (type, id, block size in elements, type size in bytes, name). Block byte counts are spelled as
/// sums of their fields, in ggml-common.h's order (`d` = f16 scale, `m`/`dmin` = f16 min).
const TABLE: [(GgmlType, u32, usize, usize, &str); 34] = [
    (GgmlType::F32, 0, 1, 4, "F32"),
    (GgmlType::F16, 1, 1, 2, "F16"),
    (GgmlType::Q4_0, 2, QK, 2 + QK / 2, "Q4_0"),         // d, qs[16]
    (GgmlType::Q4_1, 3, QK, 2 + 2 + QK / 2, "Q4_1"),     // d, m, qs[16]
    (GgmlType::Q5_0, 6, QK, 2 + 4 + QK / 2, "Q5_0"),     // d, qh[4], qs[16]
    (GgmlType::Q5_1, 7, QK, 2 + 2 + 4 + QK / 2, "Q5_1"), // d, m, qh[4], qs[16]
    (GgmlType::Q8_0, 8, QK, 2 + QK, "Q8_0"),             // d, qs[32]
    // ggml's block_q8_1 is {f16 d, f16 s, i8 qs[32]} = 36 bytes (older gguf-py said 4 + 4 + 32).
    (GgmlType::Q8_1, 9, QK, 2 + 2 + QK, "Q8_1"),
    (GgmlType::Q2_K, 10, QK_K, QK_K / 16 + QK_K / 4 + 2 + 2, "Q2_K"), // scales, qs, d, dmin
    (GgmlType::Q3_K, 11, QK_K, QK_K / 8 + QK_K / 4 + 12 + 2, "Q3_K"), // hmask, qs, scales, d
    (GgmlType::Q4_K, 12, QK_K, 2 + 2 + 12 + QK_K / 2, "Q4_K"),        // d, dmin, scales, qs
    (GgmlType::Q5_K, 13, QK_K, 2 + 2 + 12 + QK_K / 8 + QK_K / 2, "Q5_K"), // d, dmin, scales, qh, qs
    (GgmlType::Q6_K, 14, QK_K, QK_K / 2 + QK_K / 4 + QK_K / 16 + 2, "Q6_K"), // ql, qh, scales, d
    (GgmlType::Q8_K, 15, QK_K, 4 + QK_K + QK_K / 16 * 2, "Q8_K"),     // f32 d, qs, i16 bsums[16]
    (GgmlType::IQ2_XXS, 16, QK_K, 2 + QK_K / 4, "IQ2_XXS"),
    (GgmlType::IQ2_XS, 17, QK_K, 2 + QK_K / 4 + QK_K / 32, "IQ2_XS"),
    (GgmlType::IQ3_XXS, 18, QK_K, 2 + QK_K / 4 + QK_K / 8, "IQ3_XXS"),
    (GgmlType::IQ1_S, 19, QK_K, 2 + QK_K / 8 + QK_K / 16, "IQ1_S"),
    (GgmlType::IQ4_NL, 20, QK, 2 + QK / 2, "IQ4_NL"),
    (GgmlType::IQ3_S, 21, QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4, "IQ3_S"),
    (GgmlType::IQ2_S, 22, QK_K, 2 + QK_K / 4 + QK_K / 16, "IQ2_S"),
    (GgmlType::IQ4_XS, 23, QK_K, 2 + 2 + QK_K / 2 + QK_K / 64, "IQ4_XS"),
    (GgmlType::I8, 24, 1, 1, "I8"),
    (GgmlType::I16, 25, 1, 2, "I16"),
    (GgmlType::I32, 26, 1, 4, "I32"),
    (GgmlType::I64, 27, 1, 8, "I64"),
    (GgmlType::F64, 28, 1, 8, "F64"),
    (GgmlType::IQ1_M, 29, QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32, "IQ1_M"),
    (GgmlType::BF16, 30, 1, 2, "BF16"),
    (GgmlType::TQ1_0, 34, QK_K, 2 + 4 * 13, "TQ1_0"),
    (GgmlType::TQ2_0, 35, QK_K, 2 + 64, "TQ2_0"),
    (GgmlType::MXFP4, 39, 32, 1 + 16, "MXFP4"), // e8m0 scale, 32 × 4-bit
    (GgmlType::NVFP4, 40, 64, 4 + 32, "NVFP4"),
    (GgmlType::Q1_0, 41, 128, 2 + 16, "Q1_0"),
];

impl GgmlType {
    /// The types [`crate::quant::dequantize`] handles.
    pub const SUPPORTED: [GgmlType; 13] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];

    /// [`GgmlType::SUPPORTED`] as a comma-separated list (for error messages).
    pub const SUPPORTED_NAMES: &'static str =
        "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K";

    fn row(self) -> (GgmlType, u32, usize, usize, &'static str) {
        // Every variant has exactly one row; the fallback is unreachable but keeps this panic-free.
        TABLE.iter().copied().find(|r| r.0 == self).unwrap_or((self, u32::MAX, 1, 1, "?"))
    }

    /// The type with GGUF/ggml id `id`, or `None` for an id ggml never assigned or has removed.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        TABLE.iter().find(|r| r.1 == id).map(|r| r.0)
    }

    /// The type ggml names `name` (`"Q4_1"`, `"q8_0"`: case-insensitive), if any.
    pub fn from_name(name: &str) -> Option<GgmlType> {
        TABLE.iter().find(|r| r.4.eq_ignore_ascii_case(name)).map(|r| r.0)
    }

    /// The numeric id stored in GGUF tensor infos.
    pub fn id(self) -> u32 {
        self.row().1
    }

    /// Elements per block (1 for plain element types, 32 for Q4_0…Q8_1, 256 for the K-quants).
    pub fn block_size(self) -> usize {
        self.row().2
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        self.row().3
    }

    /// ggml's upper-case name (`Q4_K`, `BF16`, …).
    pub fn name(self) -> &'static str {
        self.row().4
    }

    /// True for the types [`crate::quant::dequantize`] can turn into f32.
    pub fn can_dequantize(self) -> bool {
        GgmlType::SUPPORTED.contains(&self)
    }

    /// Bytes that `n_elements` elements occupy, or `None` when `n_elements` is not a whole number
    /// of blocks or the size overflows.
    pub fn bytes_for(self, n_elements: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !n_elements.is_multiple_of(bs) {
            return None;
        }
        (n_elements / bs).checked_mul(self.type_size() as u64)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sizes_match_ggml() {
        for r in TABLE {
            assert_eq!(GgmlType::from_id(r.1), Some(r.0));
            assert_eq!(r.0.id(), r.1);
        }
        // Sizes from ggml-common.h's static_asserts.
        let expect = [
            (GgmlType::Q4_0, 18),
            (GgmlType::Q4_1, 20),
            (GgmlType::Q5_0, 22),
            (GgmlType::Q5_1, 24),
            (GgmlType::Q8_0, 34),
            (GgmlType::Q8_1, 36),
            (GgmlType::Q2_K, 84),
            (GgmlType::Q3_K, 110),
            (GgmlType::Q4_K, 144),
            (GgmlType::Q5_K, 176),
            (GgmlType::Q6_K, 210),
            (GgmlType::Q8_K, 292),
        ];
        for (t, size) in expect {
            assert_eq!(t.type_size(), size, "{t}");
        }
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::from_id(999), None);
    }
}
