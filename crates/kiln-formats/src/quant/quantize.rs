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

fn q8_0_block(x: &[f32], out: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |a, &v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = inv(d);
    out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    for (o, &v) in out[2..2 + QK].iter_mut().zip(x) {
        *o = ((v * id).round() as i8) as u8;
    }
}

fn q4_0_block(x: &[f32], out: &mut [u8]) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = inv(d);
    out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    for j in 0..QK / 2 {
        out[2 + j] = q(x[j]) | (q(x[j + QK / 2]) << 4);
    }
}

fn q4_1_block(x: &[f32], out: &mut [u8]) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        min = min.min(v);
        max = max.max(v);
    }
    let d = (max - min) / 15.0;
    let id = inv(d);
    out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    out[2..4].copy_from_slice(&f16::from_f32(min).to_le_bytes());
    let q = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
    for j in 0..QK / 2 {
        out[4 + j] = q(x[j]) | (q(x[j + QK / 2]) << 4);
    }
}

/// Quantizes `x` (a whole number of 32-blocks) into `out` (`ty`'s bytes for them), ggml's
/// block layout. Supported: Q8_0, Q4_0, Q4_1.
pub fn quantize_row_into(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<()> {
    let block: fn(&[f32], &mut [u8]) = match ty {
        GgmlType::Q8_0 => q8_0_block,
        GgmlType::Q4_0 => q4_0_block,
        GgmlType::Q4_1 => q4_1_block,
        other => return Err(FormatError::UnsupportedType(other)),
    };
    let bytes = super::byte_len(ty, x.len())?;
    if out.len() != bytes {
        return Err(FormatError::BadLength {
            ty,
            msg: format!("{} values need {bytes} bytes, the output has {}", x.len(), out.len()),
        });
    }
    for (xb, ob) in x.chunks_exact(QK).zip(out.chunks_exact_mut(ty.type_size())) {
        block(xb, ob);
    }
    Ok(())
}

/// [`quantize_row_into`] into a new buffer.
pub fn quantize(ty: GgmlType, x: &[f32]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; super::byte_len(ty, x.len())?];
    quantize_row_into(ty, x, &mut out)?;
    Ok(out)
}
