//! # kiln-models
//!
//! Models composed from `kiln-nn` layers. [`gpt`]: decoder-only transformers from one config —
//! GPT-2 (learned positions, LayerNorm, GELU MLP, biases, tied head) and LLaMA (RoPE, RMSNorm,
//! SwiGLU, no biases, grouped-query attention).

pub mod bert;
pub mod embed;
pub mod gpt;

pub use bert::{Bert, BertConfig};
pub use embed::{Pooling, SentenceEmbedder};
