//! # kiln-formats
//!
//! Reading model files written by other tools.
//!
//! - [`gguf`]: llama.cpp's GGUF format (v2 and v3) — a memory-mapped, fully bounds-checked reader
//!   ([`GgufFile`]) with typed metadata getters, raw tensor blocks, tensors as kiln [`kiln_core::Tensor`]s
//!   (dims reversed into row-major order), and conversion to safetensors.
//! - [`quant`]: ggml's block formats (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K…Q6_K) and
//!   their dequantization to f32, bit-identical to gguf-py's reference.
//!
//! Hostile files are expected: every length, count and offset is checked before use, and every
//! problem is a [`FormatError`] naming the file, key, tensor or field — never a panic.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let gguf = kiln_formats::GgufFile::open("model.gguf")?;
//! let arch = gguf.get_str("general.architecture")?;
//! let tokens = gguf.get_str_array("tokenizer.ggml.tokens")?;
//! for t in gguf.tensors() {
//!     let w: Vec<f32> = gguf.dequantize(t)?; // row-major, shape t.shape()
//!     println!("{arch}: {} {:?} {} ({} values, vocab {})", t.name, t.shape(), t.ggml_type, w.len(), tokens.len());
//! }
//! # Ok(()) }
//! ```

mod error;
pub mod gguf;
pub mod quant;

pub use error::{FormatError, Result};
pub use gguf::{convert_to_safetensors, Array, GgufFile, TensorInfo, Value, ValueType};
pub use quant::{GgmlType, QMatrix};
