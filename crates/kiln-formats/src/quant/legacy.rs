//! The 32-weight block quants (ggml's "legacy" quants): Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
//!
//! Each block holds 32 consecutive weights of a row. Scales are little-endian f16 (`d`, `m`). The
//! 4-bit codes are packed two per byte: byte `j` holds weight `j` in its low nibble and weight
//! `j + 16` in its high nibble. Q5 adds a 32-bit little-endian mask `qh` whose bit `i` is the 5th
//! (high) bit of weight `i`.
//!
//! Each kernel computes exactly what gguf-py's `quants.py` computes, in the same f32 operation
//! order (`d * q`, `d * q + m`), so the results are bit-identical to the reference.
//!
//! The callers ([`super::dequantize_row_into`]) have checked that `src` holds a whole number of
//! blocks and `out` the matching number of elements.

#![allow(clippy::needless_range_loop)] // index arithmetic mirrors ggml's reference loops

use super::float::f16_le;
use super::ggml_type::QK;

/// Half a block: the number of packed bytes of a 4-bit block, and the offset of the high nibbles.
const HALF: usize = QK / 2;

/// Q4_0, 18 bytes → 32 weights:
/// ```text
///   [0..2)   d       f16
///   [2..18)  qs[16]  u8: low nibble = weight j, high nibble = weight j + 16
/// ```
/// `x = d * (q - 8)`, q ∈ [0, 15].
pub(crate) fn q4_0_row(src: &[u8], out: &mut [f32]) {
    let (blocks, _) = src.as_chunks::<{ 2 + HALF }>();
    let (ys, _) = out.as_chunks_mut::<QK>();
    for (b, y) in blocks.iter().zip(ys) {
        let d = f16_le(b[0], b[1]);
        for j in 0..HALF {
            let q = b[2 + j];
            y[j] = d * ((q & 0x0F) as i32 - 8) as f32;
            y[j + HALF] = d * ((q >> 4) as i32 - 8) as f32;
        }
    }
}

/// Q4_1, 20 bytes → 32 weights:
/// ```text
///   [0..2)   d       f16 scale
///   [2..4)   m       f16 min
///   [4..20)  qs[16]  u8 nibbles as Q4_0
/// ```
/// `x = d * q + m`, q ∈ [0, 15].
pub(crate) fn q4_1_row(src: &[u8], out: &mut [f32]) {
    let (blocks, _) = src.as_chunks::<{ 2 + 2 + HALF }>();
    let (ys, _) = out.as_chunks_mut::<QK>();
    for (b, y) in blocks.iter().zip(ys) {
        let d = f16_le(b[0], b[1]);
        let m = f16_le(b[2], b[3]);
        for j in 0..HALF {
            let q = b[4 + j];
            y[j] = d * (q & 0x0F) as f32 + m;
            y[j + HALF] = d * (q >> 4) as f32 + m;
        }
    }
}

/// Q5_0, 22 bytes → 32 weights:
/// ```text
///   [0..2)   d       f16
///   [2..6)   qh      u32 LE: bit i = high bit of weight i
///   [6..22)  qs[16]  u8 low 4 bits, nibbles as Q4_0
/// ```
/// `x = d * (q - 16)`, q ∈ [0, 31].
pub(crate) fn q5_0_row(src: &[u8], out: &mut [f32]) {
    let (blocks, _) = src.as_chunks::<{ 2 + 4 + HALF }>();
    let (ys, _) = out.as_chunks_mut::<QK>();
    for (b, y) in blocks.iter().zip(ys) {
        let d = f16_le(b[0], b[1]);
        let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
        for j in 0..HALF {
            let q = b[6 + j];
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + HALF)) & 1) << 4;
            y[j] = d * ((u32::from(q & 0x0F) | h0) as i32 - 16) as f32;
            y[j + HALF] = d * ((u32::from(q >> 4) | h1) as i32 - 16) as f32;
        }
    }
}

/// Q5_1, 24 bytes → 32 weights:
/// ```text
///   [0..2)   d       f16 scale
///   [2..4)   m       f16 min
///   [4..8)   qh      u32 LE high bits as Q5_0
///   [8..24)  qs[16]  u8 low 4 bits
/// ```
/// `x = d * q + m`, q ∈ [0, 31].
pub(crate) fn q5_1_row(src: &[u8], out: &mut [f32]) {
    let (blocks, _) = src.as_chunks::<{ 2 + 2 + 4 + HALF }>();
    let (ys, _) = out.as_chunks_mut::<QK>();
    for (b, y) in blocks.iter().zip(ys) {
        let d = f16_le(b[0], b[1]);
        let m = f16_le(b[2], b[3]);
        let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        for j in 0..HALF {
            let q = b[8 + j];
            let h0 = ((qh >> j) & 1) << 4;
            let h1 = ((qh >> (j + HALF)) & 1) << 4;
            y[j] = d * (u32::from(q & 0x0F) | h0) as f32 + m;
            y[j + HALF] = d * (u32::from(q >> 4) | h1) as f32 + m;
        }
    }
}

/// Q8_0, 34 bytes → 32 weights:
/// ```text
///   [0..2)   d       f16
///   [2..34)  qs[32]  i8
/// ```
/// `x = d * q`.
pub(crate) fn q8_0_row(src: &[u8], out: &mut [f32]) {
    let (blocks, _) = src.as_chunks::<{ 2 + QK }>();
    let (ys, _) = out.as_chunks_mut::<QK>();
    for (b, y) in blocks.iter().zip(ys) {
        let d = f16_le(b[0], b[1]);
        for j in 0..QK {
            y[j] = d * f32::from(b[2 + j] as i8);
        }
    }
}
