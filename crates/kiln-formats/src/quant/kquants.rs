//! The K-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K. Each "super-block" holds `QK_K` = 256 consecutive
//! weights of a row, split into sub-blocks (16 of 16 weights, or 8 of 32) that each have their own
//! small integer scale (and min), themselves scaled by the block's f16 `d` (and `dmin`).
//!
//! Bit layouts follow ggml-common.h; the arithmetic follows gguf-py's `quants.py` operation for
//! operation (first `dl = d * scale` per sub-block, then `dl * q` or `dl * q - ml`), so the f32
//! results are bit-identical to the reference.
//!
//! A recurring packing: 2-bit (or 4-bit, 1-bit) codes for 128 weights share 32 (or 64) bytes, the
//! code of weight `32·s + l` sitting in byte `l` at bit offset `2·s` (resp. `4·s`, `s`). The
//! callers ([`super::dequantize_row_into`]) have checked that `src` holds a whole number of blocks
//! and `out` the matching number of elements.

#![allow(clippy::needless_range_loop)] // index arithmetic mirrors ggml's reference loops

use super::float::f16_le;
use super::ggml_type::QK_K;

/// Bytes of the packed 6-bit (scale, min) pairs of Q4_K and Q5_K (ggml's `K_SCALE_SIZE`).
const K_SCALE_SIZE: usize = 12;

/// Unpacks the 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block, ggml's
/// `get_scale_min_k4`. The 12 bytes hold, per sub-block (A..H scales, a..h mins):
/// ```text
///   0..4   EEAAAAAA FFBBBBBB GGCCCCCC HHDDDDDD   (scales 0..3, high 2 bits of scales 4..7)
///   4..8   eeaaaaaa ffbbbbbb ggcccccc hhdddddd   (mins 0..3, high 2 bits of mins 4..7)
///   8..12  eeeeEEEE ffffFFFF ggggGGGG hhhhHHHH   (low 4 bits of scales and mins 4..7)
/// ```
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8; K_SCALE_SIZE]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 0x3F, q[j + 4] & 0x3F)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// Q2_K, 84 bytes → 256 weights in 16 sub-blocks of 16:
/// ```text
///   [0..16)   scales[16]  u8: low nibble = scale, high nibble = min, of sub-block i
///   [16..80)  qs[64]      2-bit codes; weight 128·n + 32·s + l in byte 32·n + l, bits 2·s
///   [80..82)  d           f16 (scale of the scales)
///   [82..84)  dmin        f16 (scale of the mins)
/// ```
/// `x = (d * sc) * q - (dmin * m)`, q ∈ [0, 3].
pub(crate) fn q2_k_row(src: &[u8], out: &mut [f32]) {
    let (blocks, _) = src.as_chunks::<{ QK_K / 16 + QK_K / 4 + 2 + 2 }>();
    let (ys, _) = out.as_chunks_mut::<QK_K>();
    for (b, y) in blocks.iter().zip(ys) {
        let d = f16_le(b[80], b[81]);
        let dmin = f16_le(b[82], b[83]);
        let mut dl = [0f32; 16];
        let mut ml = [0f32; 16];
        for i in 0..16 {
            dl[i] = d * (b[i] & 0x0F) as f32;
            ml[i] = dmin * (b[i] >> 4) as f32;
        }
        for n in 0..2 {
            for s in 0..4 {
                for l in 0..32 {
                    let e = 128 * n + 32 * s + l;
                    let q = (b[16 + 32 * n + l] >> (2 * s)) & 3;
                    y[e] = dl[e / 16] * q as f32 - ml[e / 16];
                }
            }
        }
    }
}

/// Q3_K, 110 bytes → 256 weights in 16 sub-blocks of 16:
/// ```text
///   [0..32)    hmask[32]   high bit of weight 32·k + l at bit k of byte l (k = 0..8)
///   [32..96)   qs[64]      low 2 bits, packed as Q2_K
///   [96..108)  scales[12]  16 signed 6-bit scales (+32 bias), see `q3_k_scales`
///   [108..110) d           f16
/// ```
/// `x = (d * sc) * q` with q = low2 − (high bit set ? 0 : 4) ∈ [−4, 3].
pub(crate) fn q3_k_row(src: &[u8], out: &mut [f32]) {
    let (blocks, _) = src.as_chunks::<{ QK_K / 8 + QK_K / 4 + 12 + 2 }>();
    let (ys, _) = out.as_chunks_mut::<QK_K>();
    for (b, y) in blocks.iter().zip(ys) {
        let d = f16_le(b[108], b[109]);
        let sc =
            q3_k_scales(&[b[96], b[97], b[98], b[99], b[100], b[101], b[102], b[103], b[104], b[105], b[106], b[107]]);
        let mut dl = [0f32; 16];
        for i in 0..16 {
            dl[i] = d * sc[i] as f32;
        }
        for n in 0..2 {
            for s in 0..4 {
                for l in 0..32 {
                    let e = 128 * n + 32 * s + l;
                    let low = ((b[32 + 32 * n + l] >> (2 * s)) & 3) as i8;
                    let high_set = (b[l] >> (4 * n + s)) & 1 == 1;
                    let q = if high_set { low } else { low - 4 };
                    y[e] = dl[e / 16] * q as f32;
                }
            }
        }
    }
}

/// Unpacks Q3_K's 16 scales. 12 bytes, scale i = (low 4 bits | high 2 bits << 4) − 32:
/// ```text
///   byte 0..8:   low nibble = low bits of scale i, high nibble = low bits of scale i + 8
///   byte 8..12:  bits 2k..2k+2 of byte 8 + (i mod 4) = high bits of scale i, k = i / 4
/// ```
fn q3_k_scales(s: &[u8; 12]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for i in 0..16 {
        let low = if i < 8 { s[i] & 0x0F } else { s[i - 8] >> 4 };
        let high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
        out[i] = (low | (high << 4)) as i8 - 32;
    }
    out
}

/// Q4_K, 144 bytes → 256 weights in 8 sub-blocks of 32:
/// ```text
///   [0..2)    d           f16 (scale of the scales)
///   [2..4)    dmin        f16 (scale of the mins)
///   [4..16)   scales[12]  8 × (6-bit scale, 6-bit min), see `scale_min_k4`
///   [16..144) qs[128]     4-bit codes: weight 64·j + l in the low nibble of byte 32·j + l,
///                         weight 64·j + 32 + l in its high nibble (j = 0..4, l = 0..32)
/// ```
/// `x = (d * sc) * q - (dmin * m)`, q ∈ [0, 15].
pub(crate) fn q4_k_row(src: &[u8], out: &mut [f32]) {
    let (blocks, _) = src.as_chunks::<{ 2 + 2 + K_SCALE_SIZE + QK_K / 2 }>();
    let (ys, _) = out.as_chunks_mut::<QK_K>();
    for (b, y) in blocks.iter().zip(ys) {
        let d = f16_le(b[0], b[1]);
        let dmin = f16_le(b[2], b[3]);
        let scales = [b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]];
        for j in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * j, &scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, &scales);
            let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
            for l in 0..32 {
                let q = b[16 + 32 * j + l];
                y[64 * j + l] = d1 * (q & 0x0F) as f32 - min1;
                y[64 * j + 32 + l] = d2 * (q >> 4) as f32 - min2;
            }
        }
    }
}

/// Q5_K, 176 bytes → 256 weights in 8 sub-blocks of 32:
/// ```text
///   [0..2)    d           f16
///   [2..4)    dmin        f16
///   [4..16)   scales[12]  as Q4_K
///   [16..48)  qh[32]      5th bit of weight 32·k + l at bit k of byte l (k = 0..8)
///   [48..176) qs[128]     low 4 bits, packed as Q4_K
/// ```
/// `x = (d * sc) * q - (dmin * m)`, q ∈ [0, 31].
pub(crate) fn q5_k_row(src: &[u8], out: &mut [f32]) {
    let (blocks, _) = src.as_chunks::<{ 2 + 2 + K_SCALE_SIZE + QK_K / 8 + QK_K / 2 }>();
    let (ys, _) = out.as_chunks_mut::<QK_K>();
    for (b, y) in blocks.iter().zip(ys) {
        let d = f16_le(b[0], b[1]);
        let dmin = f16_le(b[2], b[3]);
        let scales = [b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]];
        for j in 0..4 {
            let (sc1, m1) = scale_min_k4(2 * j, &scales);
            let (sc2, m2) = scale_min_k4(2 * j + 1, &scales);
            let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
            for l in 0..32 {
                let q = b[48 + 32 * j + l];
                let h = b[16 + l];
                let lo = (q & 0x0F) | (((h >> (2 * j)) & 1) << 4);
                let hi = (q >> 4) | (((h >> (2 * j + 1)) & 1) << 4);
                y[64 * j + l] = d1 * lo as f32 - min1;
                y[64 * j + 32 + l] = d2 * hi as f32 - min2;
            }
        }
    }
}

/// Q6_K, 210 bytes → 256 weights in 16 sub-blocks of 16:
/// ```text
///   [0..128)   ql[128]     low 4 bits: per half n (128 weights), weight 128·n + 64·h + l in
///                          byte 64·n + l at bits 4·h (h = 0..2, l = 0..64)
///   [128..192) qh[64]      high 2 bits: weight 128·n + 32·s + l in byte 32·n + l, bits 2·s
///   [192..208) scales[16]  i8, one per sub-block of 16
///   [208..210) d           f16
/// ```
/// `x = (d * sc) * q` with q = (low | high << 4) − 32 ∈ [−32, 31].
pub(crate) fn q6_k_row(src: &[u8], out: &mut [f32]) {
    let (blocks, _) = src.as_chunks::<{ QK_K / 2 + QK_K / 4 + QK_K / 16 + 2 }>();
    let (ys, _) = out.as_chunks_mut::<QK_K>();
    for (b, y) in blocks.iter().zip(ys) {
        let d = f16_le(b[208], b[209]);
        let mut dl = [0f32; 16];
        for i in 0..16 {
            dl[i] = d * (b[192 + i] as i8) as f32;
        }
        for n in 0..2 {
            for l in 0..32 {
                let ql0 = b[64 * n + l];
                let ql1 = b[64 * n + 32 + l];
                let qh = b[128 + 32 * n + l];
                // Weights 128·n + {0, 32, 64, 96} + l.
                let q = [
                    (ql0 & 0x0F) | ((qh & 3) << 4),
                    (ql1 & 0x0F) | (((qh >> 2) & 3) << 4),
                    (ql0 >> 4) | (((qh >> 4) & 3) << 4),
                    (ql1 >> 4) | (((qh >> 6) & 3) << 4),
                ];
                for (k, &qk) in q.iter().enumerate() {
                    let e = 128 * n + 32 * k + l;
                    y[e] = dl[e / 16] * (qk as i8 - 32) as f32;
                }
            }
        }
    }
}
