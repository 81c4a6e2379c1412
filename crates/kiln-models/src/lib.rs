//! # kiln-models
//!
//! Models composed from `kiln-nn` layers. [`gpt`]: decoder-only transformers from one config —
//! GPT-2 (learned positions, LayerNorm, GELU MLP, biases, tied head) and LLaMA (RoPE, RMSNorm,
//! SwiGLU, no biases, grouped-query attention).

pub mod gpt;
