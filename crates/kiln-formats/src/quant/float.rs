//! Plain float element types: F32 (4 bytes), F16 (IEEE half, 2 bytes), BF16 (bfloat16, 2 bytes), all
//! little-endian, one element per "block". Conversion to f32 is exact for every one of them.

/// F32: copies the little-endian floats bit for bit (NaN payloads included).
pub(crate) fn f32_row(src: &[u8], out: &mut [f32]) {
    let (words, _) = src.as_chunks::<4>();
    for (o, w) in out.iter_mut().zip(words) {
        *o = f32::from_le_bytes(*w);
    }
}

/// F16 → f32, exact (`half` uses the F16C instruction where the CPU has it).
pub(crate) fn f16_row(src: &[u8], out: &mut [f32]) {
    let (halves, _) = src.as_chunks::<2>();
    for (o, h) in out.iter_mut().zip(halves) {
        *o = half::f16::from_le_bytes(*h).to_f32();
    }
}

/// BF16 → f32: the 16 stored bits become the top half of the f32 (as gguf-py's `<< 16`).
pub(crate) fn bf16_row(src: &[u8], out: &mut [f32]) {
    let (halves, _) = src.as_chunks::<2>();
    for (o, h) in out.iter_mut().zip(halves) {
        *o = f32::from_bits(u32::from(u16::from_le_bytes(*h)) << 16);
    }
}

/// Reads the little-endian f16 at the start of a 2-byte field, widened to f32 (the scale fields of
/// every quantized block).
#[inline(always)]
pub(crate) fn f16_le(b0: u8, b1: u8) -> f32 {
    half::f16::from_le_bytes([b0, b1]).to_f32()
}
