//! Quantized weight matrices for inference (seed 003/004 "quantization"; GGUF's block formats):
//! a weight kept in memory as its quantized blocks and multiplied without ever materialising the
//! f32 matrix (dequantize-on-the-fly), so decoding streams ~4–8× fewer bytes per token. The
//! trait lives here so layers can hold one without depending on a file format; `kiln-formats`
//! implements it for ggml's block types.

use crate::Result;

/// A (rows, cols) weight matrix `W` stored quantized, row-major (each row a whole number of
/// blocks), as `nn.Linear` stores (out, in).
pub trait QuantMatrix: Send + Sync + std::fmt::Debug {
    /// (rows, cols) = (out features, in features).
    fn shape(&self) -> (usize, usize);
    /// The block format's name (e.g. `Q4_1`).
    fn format(&self) -> &'static str;
    /// Bytes held in memory.
    fn bytes(&self) -> usize;
    /// `out (m, rows) = x (m, cols) · Wᵀ`, row-major f32, each weight row dequantized once into a
    /// per-thread scratch row (or dotted with 8-bit quantized inputs in integers) and dotted with
    /// the `m` input rows.
    fn matmul_t(&self, x: &[f32], m: usize, out: &mut [f32]) -> Result<()>;
    /// Row `r` in f32 into `out` (`cols` values): embedding lookups from a quantized table.
    fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<()>;
    /// The whole matrix in f32 (row-major), for large products that go through the GEMM.
    fn dequantize(&self) -> Result<Vec<f32>>;
}
