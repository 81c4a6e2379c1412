//! f32 → ggml blocks: ggml's reference quantizers (`quantize_row_*_ref` in ggml-quants.c),
//! bit-identical to llama.cpp and gguf-py (a test holds them to gguf-py's bytes). Per block of
//! 32 weights (seed ch. 22 "quantization"; notes 002/004):
//!
//! - **Q8_0**, symmetric int8: `d = max|x| / 127`, `q = round(x / d)` ∈ [−127, 127].
//! - **Q4_0**, symmetric int4: `d = m / −8` with `m` the value of largest magnitude (sign kept),
//!   `q = min(15, ⌊x / d + 8.5⌋)`, read back as `(q − 8)·d`.
//! - **Q4_1**, asymmetric int4: `d = (max − min) / 15`, `q = min(15, ⌊(x − min)/d + 0.5⌋)`, read
//!   back as `q·d + min`.
//!
//! Scales (and Q4_1's minimum) are stored as f16; the quants use the f32 scale, as ggml does.

use super::{GgmlType, QK};
use crate::{FormatError, Result};
use half::f16;

/// The reciprocal ggml uses (0 for a zero scale, so an all-zero block quantizes to zeros).
fn inv(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

/// What one 32-weight block stores besides its codes: the scale `d` and (Q4_1 only) the
/// minimum `m`, as ggml's reference quantizers choose them from the block's values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockGrid {
    /// The block type (Q8_0, Q4_0 or Q4_1).
    pub ty: GgmlType,
    /// Scale (f32, before the f16 rounding of the stored copy).
    pub d: f32,
    /// Q4_1's minimum (0 for the symmetric types).
    pub m: f32,
}

impl BlockGrid {
    /// ggml's choice for the values `x` of one block: Q8_0 `d = max|x|/127`; Q4_0 `d = v/−8`
    /// with `v` the value of largest magnitude; Q4_1 `d = (max − min)/15`, `m = min`.
    pub fn of(ty: GgmlType, x: &[f32]) -> Result<BlockGrid> {
        let (d, m) = match ty {
            GgmlType::Q8_0 => (x.iter().fold(0.0f32, |a, &v| a.max(v.abs())) / 127.0, 0.0),
            GgmlType::Q4_0 => {
                let (mut amax, mut max) = (0.0f32, 0.0f32);
                for &v in x {
                    if amax < v.abs() {
                        amax = v.abs();
                        max = v;
                    }
                }
                (max / -8.0, 0.0)
            }
            GgmlType::Q4_1 => {
                let (mut min, mut max) = (f32::MAX, -f32::MAX);
                for &v in x {
                    min = min.min(v);
                    max = max.max(v);
                }
                ((max - min) / 15.0, min)
            }
            other => return Err(FormatError::UnsupportedType(other)),
        };
        Ok(BlockGrid { ty, d, m })
    }

    /// ggml's reference rounding of `v` to a stored code (with the f32 scale, as ggml does):
    /// Q8_0 `round(v/d)` as a two's-complement byte; Q4_0 `min(15, ⌊v/d + 8.5⌋)`; Q4_1
    /// `min(15, ⌊(v − m)/d + 0.5⌋)`.
    fn code_ref(&self, v: f32) -> u8 {
        let id = inv(self.d);
        match self.ty {
            GgmlType::Q8_0 => ((v * id).round() as i8) as u8,
            GgmlType::Q4_0 => ((v * id + 8.5) as i8).min(15) as u8,
            _ => (((v - self.m) * id + 0.5) as i8).min(15) as u8,
        }
    }

    /// The grid as the file stores it (scale and minimum rounded to f16): what dequantization
    /// reads back. Code `c` stands for `c·d` (Q8_0, `c` signed), `(c − 8)·d` (Q4_0) or `c·d + m`
    /// (Q4_1).
    pub fn stored(&self) -> BlockGrid {
        let r = |v: f32| f16::from_f32(v).to_f32();
        BlockGrid { ty: self.ty, d: r(self.d), m: r(self.m) }
    }

    /// The code nearest to `v` on this grid (clamped to the type's range) and the value it
    /// stands for. Call on [`BlockGrid::stored`] to round against what will be read back.
    pub fn nearest(&self, v: f32) -> (u8, f32) {
        let id = inv(self.d);
        match self.ty {
            GgmlType::Q8_0 => {
                let c = (v * id).round().clamp(-127.0, 127.0);
                ((c as i8) as u8, c * self.d)
            }
            GgmlType::Q4_0 => {
                let c = ((v * id).round() + 8.0).clamp(0.0, 15.0);
                (c as u8, (c - 8.0) * self.d)
            }
            _ => {
                let c = ((v - self.m) * id).round().clamp(0.0, 15.0);
                (c as u8, c * self.d + self.m)
            }
        }
    }

    /// Writes one block — header (f16 `d`, and `m` for Q4_1) then the 32 codes (bytes for Q8_0;
    /// nibbles for the 4-bit types, element `j` low and `j + 16` high in byte `j`) — into `out`.
    pub fn write_block(&self, codes: &[u8], out: &mut [u8]) {
        out[..2].copy_from_slice(&f16::from_f32(self.d).to_le_bytes());
        let q = match self.ty {
            GgmlType::Q8_0 => {
                out[2..2 + QK].copy_from_slice(&codes[..QK]);
                return;
            }
            GgmlType::Q4_1 => {
                out[2..4].copy_from_slice(&f16::from_f32(self.m).to_le_bytes());
                &mut out[4..]
            }
            _ => &mut out[2..],
        };
        for j in 0..QK / 2 {
            q[j] = (codes[j] & 15) | (codes[j + QK / 2] << 4);
        }
    }
}

/// Quantizes `x` (a whole number of 32-blocks) into `out` (`ty`'s bytes for them), ggml's
/// block layout. Supported: Q8_0, Q4_0, Q4_1.
pub fn quantize_row_into(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<()> {
    if !matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1) {
        return Err(FormatError::UnsupportedType(ty));
    }
    let bytes = super::byte_len(ty, x.len())?;
    if out.len() != bytes {
        return Err(FormatError::BadLength {
            ty,
            msg: format!("{} values need {bytes} bytes, the output has {}", x.len(), out.len()),
        });
    }
    let mut codes = [0u8; QK];
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(ty.type_size())) {
        let grid = BlockGrid::of(ty, xb)?;
        for (c, &v) in codes.iter_mut().zip(xb) {
            *c = grid.code_ref(v);
        }
        grid.write_block(&codes, ob);
    }
    Ok(())
}

/// [`quantize_row_into`] into a new buffer.
pub fn quantize(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; super::byte_len(ty, x.len())?];
    quantize_row_into(ty, x, &mut out)?;
    Ok(out)
}
