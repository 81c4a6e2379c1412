//! Attention layers (book ch. 8–9; seed 001 "MHA/MQA/GQA", "KV cache").

mod kv_cache;
mod mha;
mod paged_kv_cache;

pub use kv_cache::KvCache;
pub use mha::{AttentionConfig, MultiHeadAttention};
pub use paged_kv_cache::{kv_row_bytes, PagedKvCache, PagedKvConfig, SeqId};
