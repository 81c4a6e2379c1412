//! KV-cache memory of decoding (book §12.3.1, eqs. 12.93–12.100; seed 003 §12; seed 004
//! "KV Cache", "MQA/GQA", "PagedAttention"; REFERENCE.md):
//! ```text
//! bytes = 2 · L · T · Hkv · D · B · bytes_per_element     (K and V, every layer, every token)
//! ```
//! Multi-head attention has Hkv = H (so Hkv·D = C, the book's `2·L·T·C·B·p`); multi-query
//! attention Hkv = 1; grouped-query attention 1 < Hkv < H, an H/Hkv-fold saving. Block-quantized
//! formats round each token's K (and V) row of Hkv·D elements up to whole blocks.
//!
//! PagedAttention (Kwon et al. 2023, vLLM) stores a sequence in fixed blocks of `block_tokens`
//! tokens, allocated on demand: a sequence of n tokens holds `⌈n / block⌉` blocks, wasting less
//! than one block; REFERENCE.md's default is 16–32 tokens per block.
//!
//! With a sliding window `w` (Mistral) only the last `w` tokens are ever read: a contiguous
//! cache keeps `min(T, w)` (a rolling buffer), and kiln's paged cache hands back the blocks
//! wholly before the next query's window, holding `⌈n/b⌉ − ⌊(n + 1 − w)⁺/b⌋` blocks
//! (`PagedKvCache::release_before`).

use crate::arch::{Arch, Family};
use crate::checked::{positive, prod, sum, to_u64};
use crate::dtype::Dtype;
use crate::error::{AnalysisError, Result};
use crate::memory::weight_bytes;
use crate::params::num_params;
use serde::Serialize;

/// A contiguous KV cache for B sequences of T tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct KvCache {
    /// Tokens per sequence T.
    pub tokens: u64,
    /// Tokens per sequence kept: T, or `min(T, w)` with a sliding window.
    pub stored_tokens: u64,
    /// Sequences B.
    pub batch: u64,
    /// Element format.
    pub dtype: Dtype,
    /// K + V of one token in one layer: `2 · bytes(Hkv·D)`.
    pub per_token_per_layer: u64,
    /// One token in all layers, L × the above.
    pub per_token: u64,
    /// One layer for the whole batch, T·B × `per_token_per_layer`.
    pub per_layer: u64,
    /// Everything: `2·L·T·Hkv·D·B·bytes`.
    pub total: u64,
    /// What the same cache would take with multi-head attention (Hkv = H): the GQA/MQA saving
    /// is `mha_total / total`.
    pub mha_total: u64,
}

/// Encoders do not decode autoregressively, so they have no KV cache.
fn decoder_only(arch: &Arch) -> Result<()> {
    arch.validate()?;
    if arch.family == Family::Encoder {
        return Err(AnalysisError::InvalidInput {
            what: "architecture",
            msg: format!("{} is an encoder: encoders do not keep a KV cache", arch.name),
        });
    }
    Ok(())
}

/// Bytes of K and V for one token of one layer with `kv_heads` heads: `2·bytes(Hkv·D)`.
fn token_layer_bytes(arch: &Arch, kv_heads: u64, dtype: Dtype) -> Result<u64> {
    dtype.bytes_rows(2, kv_heads.saturating_mul(arch.head_dim()))
}

/// The KV cache of `arch` for B sequences of T tokens in `dtype` (see the module formula).
pub fn kv_cache(arch: &Arch, tokens: u64, batch: u64, dtype: Dtype) -> Result<KvCache> {
    decoder_only(arch)?;
    arch.check_seq("tokens", tokens)?;
    positive("batch", batch)?;
    let what = "KV-cache bytes";
    let stored = arch.sliding_window.map_or(tokens, |w| tokens.min(w));
    let bt = prod(what, &[stored as u128, batch as u128])?;
    let per_token_per_layer = token_layer_bytes(arch, arch.n_kv_heads, dtype)?;
    let mha = token_layer_bytes(arch, arch.n_heads, dtype)?;
    let l = arch.n_layers as u128;
    Ok(KvCache {
        tokens,
        stored_tokens: stored,
        batch,
        dtype,
        per_token_per_layer,
        per_token: to_u64(what, prod(what, &[l, per_token_per_layer as u128])?)?,
        per_layer: to_u64(what, prod(what, &[bt, per_token_per_layer as u128])?)?,
        total: to_u64(what, prod(what, &[l, bt, per_token_per_layer as u128])?)?,
        mha_total: to_u64(what, prod(what, &[l, bt, mha as u128])?)?,
    })
}

/// The closed form `2 · layers · tokens · kv_heads · head_dim · batch · bytes_per_element`
/// (book eq. 12.100 with Hkv heads).
pub fn kv_cache_bytes(
    layers: u64,
    tokens: u64,
    kv_heads: u64,
    head_dim: u64,
    batch: u64,
    bytes_per_element: u64,
) -> Result<u64> {
    let what = "KV-cache bytes";
    let xs = [2, layers, tokens, kv_heads, head_dim, batch, bytes_per_element].map(u128::from);
    to_u64(what, prod(what, &xs)?)
}

/// A paged KV cache holding sequences of different lengths.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PagedKvCache {
    /// Tokens per block.
    pub block_tokens: u64,
    /// Element format.
    pub dtype: Dtype,
    /// Sequences.
    pub sequences: u64,
    /// Tokens over all sequences, Σ n.
    pub tokens: u64,
    /// Blocks allocated, Σ ⌈n / block⌉.
    pub blocks: u64,
    /// Bytes of one block (all layers): `block_tokens · per-token bytes`.
    pub block_bytes: u64,
    /// Bytes allocated, `blocks · block_bytes`.
    pub allocated: u64,
    /// Bytes holding tokens, `Σ n · per-token bytes` (the contiguous, exactly-sized cache).
    pub used: u64,
    /// `allocated − used`: the last, partly filled block of each sequence.
    pub waste: u64,
    /// `waste / allocated`.
    pub waste_fraction: f64,
}

/// The paged KV cache of `arch` for sequences of lengths `seq_lens` in blocks of
/// `block_tokens` tokens (see the module docs).
pub fn paged_kv_cache(arch: &Arch, seq_lens: &[u64], block_tokens: u64, dtype: Dtype) -> Result<PagedKvCache> {
    decoder_only(arch)?;
    positive("block_tokens", block_tokens)?;
    if seq_lens.is_empty() {
        return Err(AnalysisError::InvalidInput { what: "sequence lengths", msg: "need at least one sequence".into() });
    }
    let what = "paged KV-cache bytes";
    let per_token = prod(what, &[arch.n_layers as u128, token_layer_bytes(arch, arch.n_kv_heads, dtype)? as u128])?;
    let (mut tokens, mut blocks) = (0u128, 0u128);
    for &n in seq_lens {
        arch.check_seq("sequence length", n)?;
        // With a window the next query reads the w − 1 keys before it (and its own); the
        // leading blocks wholly before them are released. Held tokens ≥ kept, so no underflow.
        let (kept, released) = match arch.sliding_window {
            Some(w) => (n.min(w - 1), (n + 1).saturating_sub(w) / block_tokens),
            None => (n, 0),
        };
        tokens = sum(what, &[tokens, kept as u128])?;
        blocks = sum(what, &[blocks, (n.div_ceil(block_tokens) - released) as u128])?;
    }
    let block_bytes = prod(what, &[block_tokens as u128, per_token])?;
    let allocated = prod(what, &[blocks, block_bytes])?;
    let used = prod(what, &[tokens, per_token])?;
    // INVARIANT: each sequence's ⌈n/b⌉·b ≥ n, so allocated ≥ used.
    let waste = allocated - used;
    Ok(PagedKvCache {
        block_tokens,
        dtype,
        sequences: seq_lens.len() as u64,
        tokens: to_u64(what, tokens)?,
        blocks: to_u64(what, blocks)?,
        block_bytes: to_u64(what, block_bytes)?,
        allocated: to_u64(what, allocated)?,
        used: to_u64(what, used)?,
        waste: to_u64(what, waste)?,
        waste_fraction: if allocated == 0 { 0.0 } else { waste as f64 / allocated as f64 },
    })
}

/// The most cached tokens (over all sequences) that fit in `budget` bytes of KV cache:
/// `⌊budget / (L · 2·bytes(Hkv·D))⌋`.
pub fn max_kv_tokens(arch: &Arch, dtype: Dtype, budget: u64) -> Result<u64> {
    decoder_only(arch)?;
    let per_token = arch.n_layers.saturating_mul(token_layer_bytes(arch, arch.n_kv_heads, dtype)?);
    Ok(budget / per_token.max(1))
}

/// The largest batch of T-token sequences that decodes within `budget` bytes: the weights in
/// `weight_dtype` plus B KV caches of T tokens in `kv_dtype` (activations of decoding, O(B·C),
/// are neglected; seed 003 §13). `None` when not even B = 1 fits.
pub fn max_decode_batch(
    arch: &Arch,
    tokens: u64,
    weight_dtype: Dtype,
    kv_dtype: Dtype,
    budget: u64,
) -> Result<Option<u64>> {
    let weights = weight_bytes(num_params(arch)?, weight_dtype)?;
    let one = kv_cache(arch, tokens, 1, kv_dtype)?.total;
    let left = budget.saturating_sub(weights);
    let b = left / one.max(1);
    Ok(if weights > budget || b == 0 { None } else { Some(b) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gqa_saves_h_over_hkv() {
        let a = Arch::llama("t", 100, 64, 64, 2, 8, 2, 128, true);
        let k = kv_cache(&a, 64, 3, Dtype::F16).unwrap();
        assert_eq!(k.total, kv_cache_bytes(2, 64, 2, 8, 3, 2).unwrap());
        assert_eq!(k.mha_total, 4 * k.total);
    }
}
