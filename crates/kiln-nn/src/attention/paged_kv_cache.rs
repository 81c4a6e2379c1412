//! [`PagedKvCache`]: the KV cache as a pool of fixed-size blocks (Kwon et al. 2023, vLLM; seed
//! 003/004 "paged KV cache", "prefix caching").
//!
//! Every layer's keys and values live in one preallocated tensor of `num_blocks · block_size`
//! slots, (slots, Hkv, D). A sequence owns a block table (its logical block `i` → a physical
//! block), so memory is reserved one block at a time instead of a whole context per sequence,
//! and at most `block_size − 1` slots per sequence are wasted.
//!
//! - **Sharing.** Blocks are reference-counted: [`PagedKvCache::fork`] gives a child (a beam, a
//!   parallel sample) its parent's blocks, and the first write into a shared block copies it
//!   (copy-on-write).
//! - **Prefix caching.** A full block is keyed by a hash of its tokens and of every token before
//!   it. A new sequence whose prompt starts with cached full blocks reuses them and skips their
//!   prefill; freed blocks keep their contents (and key) until the allocator needs them, least
//!   recently freed first.
//!
//! - **Sliding windows.** With a model whose tokens see only the last `w` keys (Mistral),
//!   [`PagedKvCache::release_before`] hands back the blocks that fell out of the window, so a
//!   sequence holds about `w / block_size + 1` blocks however long it grows.
//!
//! Size: `2 · layers · slots · kv_heads · head_dim · bytes(dtype)` ([`PagedKvCache::bytes`]);
//! int8 rows take `head_dim + 4` bytes (codes and an f32 scale).

use kiln_core::ops::PagedBatch;
use kiln_core::{no_grad, DType, Device, Error, Result, Tensor};
use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};

/// A sequence's handle in a [`PagedKvCache`].
pub type SeqId = u64;

/// One sequence's blocks and the tokens cached in them.
#[derive(Clone, Debug, Default)]
struct SeqBlocks {
    blocks: Vec<usize>,
    tokens: Vec<u32>,
    /// Prefix hash of each full block so far.
    hashes: Vec<u64>,
    /// Leading blocks already released ([`PagedKvCache::release_before`]): their entries stay
    /// in `blocks` (positions keep their block index) but are neither owned nor read.
    dropped: usize,
}

/// Geometry of a [`PagedKvCache`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PagedKvConfig {
    /// Transformer layers.
    pub layers: usize,
    /// Key/value heads per layer.
    pub kv_heads: usize,
    /// Channels per head.
    pub head_dim: usize,
    /// Blocks in the pool.
    pub num_blocks: usize,
    /// Token slots per block (vLLM uses 16 or 32).
    pub block_size: usize,
    /// Storage dtype of keys and values: f32, f16, bf16, or `U8` for int8 rows with a scale
    /// per (token, head) (`kiln_core::ops::q8_quantize_row`).
    pub dtype: DType,
    /// Reuse cached full blocks of common prompt prefixes.
    pub prefix_caching: bool,
}

/// Keys and values of many sequences in one pool of blocks; see the module docs.
#[derive(Debug)]
pub struct PagedKvCache {
    cfg: PagedKvConfig,
    /// Per layer: keys and values (slots, Hkv, D).
    layers: Vec<(Tensor, Tensor)>,
    refcount: Vec<usize>,
    /// Blocks holding nothing.
    free: Vec<usize>,
    /// Unreferenced blocks that still hold a cached prefix, least recently freed first.
    evictable: VecDeque<usize>,
    /// Prefix hash → block, and block → its hash.
    by_hash: HashMap<u64, usize>,
    hash_of: Vec<Option<u64>>,
    seqs: HashMap<SeqId, SeqBlocks>,
}

fn invalid(op: &'static str, msg: String) -> Error {
    Error::Invalid { op, msg }
}

/// Bytes of one (token, head) row of `head_dim` keys or values stored as `dtype`: `D·4` (f32),
/// `D·2` (f16, bf16), `D + 4` (int8 codes and an f32 scale, `U8`); `None` for other dtypes.
pub fn kv_row_bytes(dtype: DType, head_dim: usize) -> Option<usize> {
    match dtype {
        DType::F32 | DType::F16 | DType::BF16 => Some(head_dim * dtype.size_in_bytes()),
        DType::U8 => Some(kiln_core::ops::q8_row_bytes(head_dim)),
        _ => None,
    }
}

/// The prefix hash of a block: its tokens after the hash of everything before it.
fn block_hash(parent: Option<u64>, tokens: &[u32]) -> u64 {
    let mut h = DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

impl PagedKvCache {
    /// An empty pool (zeroed tensors).
    pub fn new(cfg: PagedKvConfig, device: &Device) -> Result<PagedKvCache> {
        if cfg.block_size == 0 || cfg.num_blocks == 0 || cfg.kv_heads == 0 || cfg.head_dim == 0 {
            return Err(invalid("PagedKvCache", format!("every size must be positive: {cfg:?}")));
        }
        let row = kv_row_bytes(cfg.dtype, cfg.head_dim).ok_or_else(|| {
            invalid("PagedKvCache", format!("KV dtype {} (use f32, f16, bf16 or u8 = int8)", cfg.dtype))
        })?;
        let shape = [cfg.num_blocks * cfg.block_size, cfg.kv_heads, row / cfg.dtype.size_in_bytes()];
        let layers = (0..cfg.layers)
            .map(|_| Ok((Tensor::zeros(&shape, cfg.dtype, device)?, Tensor::zeros(&shape, cfg.dtype, device)?)))
            .collect::<Result<_>>()?;
        Ok(PagedKvCache {
            layers,
            refcount: vec![0; cfg.num_blocks],
            free: (0..cfg.num_blocks).rev().collect(),
            evictable: VecDeque::new(),
            by_hash: HashMap::new(),
            hash_of: vec![None; cfg.num_blocks],
            seqs: HashMap::new(),
            cfg,
        })
    }

    /// Its geometry.
    pub fn config(&self) -> &PagedKvConfig {
        &self.cfg
    }

    /// Bytes of one token's keys and values over all layers: `2·layers·Hkv·row`, `row` =
    /// [`kv_row_bytes`] (`D·bytes`, or `D + 4` for int8).
    pub fn bytes_per_token(&self) -> usize {
        2 * self.cfg.layers * self.cfg.kv_heads * kv_row_bytes(self.cfg.dtype, self.cfg.head_dim).unwrap_or(0)
    }

    /// Bytes of the whole pool, as allocated.
    pub fn bytes(&self) -> usize {
        self.layers.iter().map(|(k, v)| (k.numel() + v.numel()) * k.dtype().size_in_bytes()).sum()
    }

    /// Keys and values of layer `i`, (slots, Hkv, D).
    pub fn layer(&self, i: usize) -> Result<(&Tensor, &Tensor)> {
        self.layers
            .get(i)
            .map(|(k, v)| (k, v))
            .ok_or_else(|| invalid("PagedKvCache::layer", format!("layer {i} of {}", self.layers.len())))
    }

    /// Blocks referenced by some sequence.
    pub fn blocks_in_use(&self) -> usize {
        self.refcount.iter().filter(|&&r| r > 0).count()
    }

    /// Blocks an allocation may take now (empty ones and evictable cached prefixes).
    pub fn blocks_available(&self) -> usize {
        self.free.len() + self.evictable.len()
    }

    /// Blocks needed to hold `tokens` tokens.
    pub fn blocks_for(&self, tokens: usize) -> usize {
        tokens.div_ceil(self.cfg.block_size)
    }

    /// Tokens cached for `id` (0 for an unknown sequence).
    pub fn len(&self, id: SeqId) -> usize {
        self.seqs.get(&id).map_or(0, |s| s.tokens.len())
    }

    /// True when no sequence is registered.
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    /// Registered sequences.
    pub fn num_sequences(&self) -> usize {
        self.seqs.len()
    }

    /// Takes a block (an empty one first, else the least recently freed cached prefix).
    fn alloc(&mut self) -> Option<usize> {
        let b = match self.free.pop() {
            Some(b) => b,
            None => {
                let b = self.evictable.pop_front()?;
                if let Some(h) = self.hash_of[b].take() {
                    self.by_hash.remove(&h);
                }
                b
            }
        };
        self.refcount[b] = 1;
        Some(b)
    }

    fn release(&mut self, b: usize) {
        self.refcount[b] -= 1;
        if self.refcount[b] == 0 {
            if self.hash_of[b].is_some() {
                self.evictable.push_back(b);
            } else {
                self.free.push(b);
            }
        }
    }

    fn retain(&mut self, b: usize) {
        if self.refcount[b] == 0 {
            self.evictable.retain(|&e| e != b);
        }
        self.refcount[b] += 1;
    }

    /// Registers sequence `id` with `prompt`; with prefix caching, reuses the cached full blocks
    /// its prompt starts with (never the block of the last prompt token, whose logits the caller
    /// needs) and returns how many prompt tokens are already cached.
    pub fn add_sequence(&mut self, id: SeqId, prompt: &[u32]) -> Result<usize> {
        if self.seqs.contains_key(&id) {
            return Err(invalid("PagedKvCache::add_sequence", format!("sequence {id} exists")));
        }
        let mut seq = SeqBlocks::default();
        if self.cfg.prefix_caching {
            let bs = self.cfg.block_size;
            for chunk in prompt[..prompt.len().saturating_sub(1)].chunks_exact(bs) {
                let h = block_hash(seq.hashes.last().copied(), chunk);
                let Some(&b) = self.by_hash.get(&h) else { break };
                self.retain(b);
                seq.blocks.push(b);
                seq.hashes.push(h);
                seq.tokens.extend_from_slice(chunk);
            }
        }
        let cached = seq.tokens.len();
        self.seqs.insert(id, seq);
        Ok(cached)
    }

    /// Makes room for `n` more tokens of `id`: allocates blocks, and copies a shared last block
    /// before it is written. Returns false (allocating nothing) when the pool has too few blocks.
    pub fn reserve(&mut self, id: SeqId, n: usize) -> Result<bool> {
        let bs = self.cfg.block_size;
        let seq = self.seqs.get(&id).ok_or_else(|| invalid("PagedKvCache::reserve", format!("no sequence {id}")))?;
        let len = seq.tokens.len();
        let need = (len + n).div_ceil(bs).saturating_sub(seq.blocks.len());
        // A partly filled last block that others share is copied before this sequence writes.
        let cow = n > 0 && !len.is_multiple_of(bs) && seq.blocks.last().is_some_and(|&b| self.refcount[b] > 1);
        if need + usize::from(cow) > self.blocks_available() {
            return Ok(false);
        }
        if cow {
            let (i, old) = (seq.blocks.len() - 1, seq.blocks[seq.blocks.len() - 1]);
            let new = self.alloc().ok_or_else(|| invalid("PagedKvCache::reserve", "pool exhausted".into()))?;
            self.copy_block(old, new)?;
            self.release(old);
            if let Some(s) = self.seqs.get_mut(&id) {
                s.blocks[i] = new;
            }
        }
        for _ in 0..need {
            let b = self.alloc().ok_or_else(|| invalid("PagedKvCache::reserve", "pool exhausted".into()))?;
            if let Some(s) = self.seqs.get_mut(&id) {
                s.blocks.push(b);
            }
        }
        Ok(true)
    }

    fn copy_block(&self, from: usize, to: usize) -> Result<()> {
        let bs = self.cfg.block_size;
        no_grad(|| {
            for (k, v) in &self.layers {
                k.narrow(0, to * bs, bs)?.assign_(&k.narrow(0, from * bs, bs)?)?;
                v.narrow(0, to * bs, bs)?.assign_(&v.narrow(0, from * bs, bs)?)?;
            }
            Ok(())
        })
    }

    /// Records that `tokens` were written after `id`'s cached ones (their slots came from
    /// [`PagedKvCache::batch`]); full blocks become reusable prefixes.
    pub fn commit(&mut self, id: SeqId, tokens: &[u32]) -> Result<()> {
        let bs = self.cfg.block_size;
        let prefix = self.cfg.prefix_caching;
        let seq = self.seqs.get_mut(&id).ok_or_else(|| invalid("PagedKvCache::commit", format!("no sequence {id}")))?;
        if seq.tokens.len() + tokens.len() > seq.blocks.len() * bs {
            return Err(invalid(
                "PagedKvCache::commit",
                format!(
                    "{} + {} tokens in {} reserved blocks of {bs}",
                    seq.tokens.len(),
                    tokens.len(),
                    seq.blocks.len()
                ),
            ));
        }
        seq.tokens.extend_from_slice(tokens);
        let mut newly = vec![];
        while prefix && seq.hashes.len() < seq.tokens.len() / bs {
            let i = seq.hashes.len();
            let h = block_hash(seq.hashes.last().copied(), &seq.tokens[i * bs..(i + 1) * bs]);
            seq.hashes.push(h);
            newly.push((seq.blocks[i], h));
        }
        for (b, h) in newly {
            if self.hash_of[b].is_none() && !self.by_hash.contains_key(&h) {
                self.hash_of[b] = Some(h);
                self.by_hash.insert(h, b);
            }
        }
        Ok(())
    }

    /// Forgets the last tokens of `id` beyond `len` (speculative rollback); emptied blocks are
    /// released.
    pub fn truncate(&mut self, id: SeqId, len: usize) -> Result<()> {
        let bs = self.cfg.block_size;
        let seq =
            self.seqs.get_mut(&id).ok_or_else(|| invalid("PagedKvCache::truncate", format!("no sequence {id}")))?;
        if len > seq.tokens.len() {
            return Err(invalid("PagedKvCache::truncate", format!("cannot keep {len} of {} tokens", seq.tokens.len())));
        }
        if len < seq.dropped * bs {
            return Err(invalid(
                "PagedKvCache::truncate",
                format!("tokens before {} left the sliding window and were released", seq.dropped * bs),
            ));
        }
        seq.tokens.truncate(len);
        seq.hashes.truncate(len / bs);
        let drop: Vec<usize> = seq.blocks.drain(len.div_ceil(bs)..).collect();
        // A kept block that is now partly filled will be written again: it stops being a
        // cached prefix (when shared, the write copies it first instead).
        let partial = seq.blocks.last().copied().filter(|_| !len.is_multiple_of(bs));
        drop.into_iter().for_each(|b| self.release(b));
        if let Some(b) = partial.filter(|&b| self.refcount[b] == 1) {
            if let Some(h) = self.hash_of[b].take() {
                self.by_hash.remove(&h);
            }
        }
        Ok(())
    }

    /// A new sequence `child` sharing all of `parent`'s blocks (copy-on-write).
    pub fn fork(&mut self, parent: SeqId, child: SeqId) -> Result<()> {
        if self.seqs.contains_key(&child) {
            return Err(invalid("PagedKvCache::fork", format!("sequence {child} exists")));
        }
        let seq = self
            .seqs
            .get(&parent)
            .cloned()
            .ok_or_else(|| invalid("PagedKvCache::fork", format!("no sequence {parent}")))?;
        seq.blocks[seq.dropped..].iter().for_each(|&b| self.retain(b));
        self.seqs.insert(child, seq);
        Ok(())
    }

    /// Releases `id`'s blocks (cached prefixes stay reusable until evicted). Unknown ids are
    /// ignored, so a cancelled sequence may be freed twice.
    pub fn free(&mut self, id: SeqId) {
        if let Some(seq) = self.seqs.remove(&id) {
            seq.blocks.into_iter().skip(seq.dropped).for_each(|b| self.release(b));
        }
    }

    /// Releases the blocks of `id` that hold only tokens before position `pos` — with a sliding
    /// window of `w`, `pos` = (next query position) + 1 − w: no later query reads them. Their
    /// table entries stay (never read); cached prefixes among them stay reusable until evicted.
    /// Returns how many blocks were released.
    pub fn release_before(&mut self, id: SeqId, pos: usize) -> Result<usize> {
        let bs = self.cfg.block_size;
        let seq = self
            .seqs
            .get_mut(&id)
            .ok_or_else(|| invalid("PagedKvCache::release_before", format!("no sequence {id}")))?;
        let upto = (pos / bs).min(seq.blocks.len());
        if upto <= seq.dropped {
            return Ok(0);
        }
        let gone: Vec<usize> = seq.blocks[seq.dropped..upto].to_vec();
        seq.dropped = upto;
        gone.iter().for_each(|&b| self.release(b));
        Ok(gone.len())
    }

    /// The metadata of one batched step: for each `(id, n)`, the next `n` tokens of sequence `id`
    /// (whose blocks are reserved), in order. Query tokens see their sequence up to themselves.
    pub fn batch(&self, items: &[(SeqId, usize)], device: &Device) -> Result<PagedBatch> {
        let bs = self.cfg.block_size;
        let mut rows = Vec::with_capacity(items.len());
        for &(id, n) in items {
            let seq = self.seqs.get(&id).ok_or_else(|| invalid("PagedKvCache::batch", format!("no sequence {id}")))?;
            if seq.tokens.len() + n > seq.blocks.len() * bs {
                return Err(invalid(
                    "PagedKvCache::batch",
                    format!("sequence {id}: {n} tokens beyond its reserved blocks"),
                ));
            }
            rows.push(seq);
        }
        let mb = rows.iter().map(|s| s.blocks.len()).max().unwrap_or(0).max(1);
        let mut tables = vec![0i64; rows.len() * mb];
        let (mut seq_of, mut lens, mut slots, mut pos) = (vec![], vec![], vec![], vec![]);
        for (s, (seq, &(_, n))) in rows.iter().zip(items).enumerate() {
            for (j, &b) in seq.blocks.iter().enumerate() {
                tables[s * mb + j] = b as i64;
            }
            for p in seq.tokens.len()..seq.tokens.len() + n {
                seq_of.push(s as i64);
                lens.push(p as i64 + 1);
                slots.push((seq.blocks[p / bs] * bs + p % bs) as i64);
                pos.push(p as i64);
            }
        }
        let n = seq_of.len();
        let t = |v: Vec<i64>| Tensor::from_vec(v, &[n], device);
        Ok(PagedBatch {
            block_tables: Tensor::from_vec(tables, &[rows.len(), mb], device)?,
            token_seq: t(seq_of)?,
            token_len: t(lens)?,
            slots: t(slots)?,
            positions: t(pos)?,
            block_size: bs,
        })
    }
}
