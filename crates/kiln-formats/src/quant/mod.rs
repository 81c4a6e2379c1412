//! ggml block formats and their dequantization to f32.
//!
//! A ggml tensor is stored row by row (a row = `ne[0]` elements, the fastest-varying GGUF dim);
//! each row is a sequence of blocks of [`GgmlType::block_size`] elements taking
//! [`GgmlType::type_size`] bytes. Blocks never straddle rows, so any whole number of blocks can be
//! dequantized on its own: [`dequantize_row_into`] does one row (or any run of whole blocks) into a
//! caller's buffer (the building block of a later quantized matmul), [`dequantize_into`] splits a
//! large tensor across rayon's pool, and [`dequantize`] allocates the output.
//!
//! Layouts (one file each): `float.rs` F32/F16/BF16, `legacy.rs` the 32-weight blocks
//! Q4_0/Q4_1/Q5_0/Q5_1/Q8_0, `kquants.rs` the 256-weight super-blocks Q2_K…Q6_K. Results are
//! bit-identical to gguf-py's `gguf.quants.dequantize`.

mod float;
mod ggml_type;
mod gptq;
#[cfg(target_arch = "x86_64")]
mod int_avx2;
mod int_matrix;
mod kquants;
mod legacy;
mod matrix;
mod quantize;
pub mod vec_dot;
#[cfg(target_arch = "x86_64")]
mod vec_dot_avx2;
mod weight;

pub use ggml_type::{GgmlType, QK, QK_K};
pub use gptq::{gptq_quantize, gptq_quantize_weight};
pub use int_matrix::{dot_int4_scalar, dot_w8a16_scalar, dot_w8a8_scalar, IntFormat, IntMatrix, TokenQ8, INT4_GROUPS};
pub use matrix::QMatrix;
pub use quantize::{quantize, quantize_row_into, BlockGrid};
pub use weight::{QuantWeight, StoredPart, WeightFormat};

use crate::error::{FormatError, Result};
use rayon::prelude::*;

/// Elements per parallel work item of [`dequantize_into`]: 64 Ki f32 = 256 KiB of output, small
/// enough to balance over the pool, large enough that rayon's overhead is noise. A multiple of
/// every block size (1, 32, 64, 128, 256).
const PAR_CHUNK: usize = 1 << 16;

/// A dequantization kernel: block bytes → f32, for a whole number of blocks (lengths pre-checked).
type Kernel = fn(&[u8], &mut [f32]);

/// The kernel of each supported type.
fn kernel(ty: GgmlType) -> Result<Kernel> {
    Ok(match ty {
        GgmlType::F32 => float::f32_row,
        GgmlType::F16 => float::f16_row,
        GgmlType::BF16 => float::bf16_row,
        GgmlType::Q4_0 => legacy::q4_0_row,
        GgmlType::Q4_1 => legacy::q4_1_row,
        GgmlType::Q5_0 => legacy::q5_0_row,
        GgmlType::Q5_1 => legacy::q5_1_row,
        GgmlType::Q8_0 => legacy::q8_0_row,
        GgmlType::Q2_K => kquants::q2_k_row,
        GgmlType::Q3_K => kquants::q3_k_row,
        GgmlType::Q4_K => kquants::q4_k_row,
        GgmlType::Q5_K => kquants::q5_k_row,
        GgmlType::Q6_K => kquants::q6_k_row,
        other => return Err(FormatError::UnsupportedType(other)),
    })
}

/// Bytes that `n_elements` elements of `ty` occupy; errors when `n_elements` is not a whole number
/// of blocks (or the size overflows).
pub fn byte_len(ty: GgmlType, n_elements: usize) -> Result<usize> {
    ty.bytes_for(n_elements as u64).and_then(|b| usize::try_from(b).ok()).ok_or_else(|| FormatError::BadLength {
        ty,
        msg: format!("{n_elements} elements are not a whole number of {}-element blocks", ty.block_size()),
    })
}

/// Checks that `src` holds exactly the blocks of `n` elements of `ty`.
fn check_lengths(ty: GgmlType, src_len: usize, n: usize) -> Result<()> {
    let want = byte_len(ty, n)?;
    if src_len != want {
        return Err(FormatError::BadLength { ty, msg: format!("{n} elements take {want} bytes, got {src_len}") });
    }
    Ok(())
}

/// Dequantizes one row — or any whole number of blocks — of `ty` into `out` (`out.len()` elements,
/// which must be a multiple of the block size; `row_bytes` must be exactly their blocks). Serial and
/// allocation-free: call it per row from a matmul's own threads.
pub fn dequantize_row_into(ty: GgmlType, row_bytes: &[u8], out: &mut [f32]) -> Result<()> {
    let f = kernel(ty)?;
    check_lengths(ty, row_bytes.len(), out.len())?;
    f(row_bytes, out);
    Ok(())
}

/// Dequantizes `bytes` (all blocks of `out.len()` elements of `ty`) into `out`, split across
/// rayon's pool in chunks of 64 Ki elements when the tensor is large.
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    let f = kernel(ty)?;
    check_lengths(ty, bytes.len(), out.len())?;
    if out.len() <= PAR_CHUNK {
        f(bytes, out);
        return Ok(());
    }
    // PAR_CHUNK is a multiple of the block size, so every chunk but the last is whole blocks and the
    // last is the remaining (whole) blocks: byte chunks line up with element chunks.
    let chunk_bytes = PAR_CHUNK / ty.block_size() * ty.type_size();
    out.par_chunks_mut(PAR_CHUNK).zip(bytes.par_chunks(chunk_bytes)).for_each(|(o, b)| f(b, o));
    Ok(())
}

/// Dequantizes `n_elements` elements of `ty` stored in `bytes` (exactly their blocks) to a new f32
/// vector, in storage order (row-major with the row = GGUF `ne[0]`).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n_elements: usize) -> Result<Vec<f32>> {
    kernel(ty)?;
    check_lengths(ty, bytes.len(), n_elements)?;
    let mut out = vec![0f32; n_elements];
    dequantize_into(ty, bytes, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Q4_0 by hand: d = 0.5, codes 0..16 in the low nibbles, 15..0 in the high ones.
    #[test]
    fn q4_0_by_hand() {
        let mut b = vec![0u8; 18];
        b[..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
        for j in 0..16 {
            b[2 + j] = (j as u8) | ((15 - j as u8) << 4);
        }
        let x = dequantize(GgmlType::Q4_0, &b, 32).unwrap_or_default();
        for j in 0..16 {
            assert_eq!(x[j], 0.5 * (j as f32 - 8.0));
            assert_eq!(x[j + 16], 0.5 * (7.0 - j as f32));
        }
    }

    #[test]
    fn lengths_are_checked() {
        assert!(dequantize(GgmlType::Q4_0, &[0; 17], 32).is_err());
        assert!(dequantize(GgmlType::Q4_0, &[0; 18], 31).is_err());
        assert!(dequantize(GgmlType::Q4_K, &[0; 144], 32).is_err());
        assert!(matches!(dequantize(GgmlType::IQ2_XXS, &[0; 66], 256), Err(FormatError::UnsupportedType(_))));
        let mut out = [0f32; 64];
        assert!(dequantize_row_into(GgmlType::Q8_0, &[0; 34], &mut out).is_err());
    }

    /// The parallel path splits at block boundaries: same result as one serial call.
    #[test]
    fn parallel_matches_serial() {
        for ty in GgmlType::SUPPORTED {
            let n = 3 * PAR_CHUNK + 4 * QK_K;
            let nbytes = byte_len(ty, n).unwrap_or(0);
            // Pseudo-random bytes; keep f16/bf16/f32 fields finite by clearing exponent-heavy bits.
            let bytes: Vec<u8> = (0..nbytes).map(|i| ((i * 2654435761) >> 7) as u8 & 0x3B).collect();
            let par = dequantize(ty, &bytes, n).unwrap_or_default();
            let mut ser = vec![0f32; n];
            assert!(dequantize_row_into(ty, &bytes, &mut ser).is_ok());
            assert_eq!(par.len(), n);
            assert!(par.iter().zip(&ser).all(|(a, b)| a.to_bits() == b.to_bits()), "{ty}");
        }
    }
}
