//! Attention layers (book ch. 8–9; seed 001 "MHA/MQA/GQA", "KV cache").

mod kv_cache;
mod mha;

pub use kv_cache::KvCache;
pub use mha::{AttentionConfig, MultiHeadAttention};
