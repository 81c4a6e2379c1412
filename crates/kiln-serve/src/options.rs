//! [`ServeOptions`]: the server's limits.

use crate::ServeError;
use kiln_core::DType;
use std::time::Duration;

/// Limits of the server. The defaults suit one person's local use.
#[derive(Clone, Debug, PartialEq)]
pub struct ServeOptions {
    /// Sequences generated together, one batched forward pass per token (continuous batching).
    pub max_num_seqs: usize,
    /// Requests that may wait besides the `max_num_seqs` being generated; one more is answered
    /// 429. 0 accepts a request only while the batch has room.
    pub queue_len: usize,
    /// KV-cache blocks in the pool; 0 sizes it to `max_num_seqs` full contexts, capped at
    /// [`ServeOptions::kv_cache_bytes`] (and never below one full context).
    pub kv_blocks: usize,
    /// Bytes the automatic pool size may use.
    pub kv_cache_bytes: usize,
    /// Tokens per KV block.
    pub block_size: usize,
    /// Storage dtype of the KV cache: f32, f16, bf16, or `U8` for int8 rows (a scale per token and head).
    pub kv_dtype: DType,
    /// Reuse the KV blocks of prompt prefixes seen before.
    pub prefix_caching: bool,
    /// Most tokens (prompt chunks and decode tokens) in one forward pass.
    pub max_tokens_per_step: usize,
    /// Bound on queue wait plus generation: past it a request gets 408 (or, once streaming,
    /// an error event) and its generation stops. `Duration::MAX` means no practical limit.
    pub request_timeout: Duration,
    /// Largest `max_tokens` a request may ask for (more is a 400).
    pub max_tokens_limit: usize,
    /// `max_tokens` of a completions request that names none (OpenAI's default is 16); chat
    /// requests without one may fill the context up to `max_tokens_limit`.
    pub default_max_tokens: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_num_seqs: 16,
            queue_len: 64,
            kv_blocks: 0,
            kv_cache_bytes: 1 << 30,
            block_size: 16,
            kv_dtype: DType::F32,
            prefix_caching: true,
            max_tokens_per_step: 512,
            request_timeout: Duration::from_secs(600),
            max_tokens_limit: 4096,
            default_max_tokens: 16,
        }
    }
}

impl ServeOptions {
    /// Checks that every limit is usable.
    pub fn validate(&self) -> Result<(), ServeError> {
        if self.request_timeout.is_zero() {
            return Err(ServeError::Options("request_timeout must be positive".into()));
        }
        if self.max_tokens_limit == 0 {
            return Err(ServeError::Options("max_tokens_limit must be at least 1".into()));
        }
        if self.max_num_seqs == 0 || self.block_size == 0 || self.max_tokens_per_step == 0 {
            return Err(ServeError::Options(
                "max_num_seqs, block_size and max_tokens_per_step must be at least 1".into(),
            ));
        }
        if !matches!(self.kv_dtype, DType::F32 | DType::F16 | DType::BF16 | DType::U8) {
            return Err(ServeError::Options(format!("KV dtype {} (use f32, f16, bf16 or u8 = int8)", self.kv_dtype)));
        }
        if self.default_max_tokens == 0 {
            return Err(ServeError::Options("default_max_tokens must be at least 1".into()));
        }
        Ok(())
    }
}
