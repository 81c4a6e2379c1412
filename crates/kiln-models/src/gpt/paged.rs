//! Batched decoding over a [`PagedKvCache`]: one forward pass for a ragged batch of tokens from
//! many sequences (vLLM's model runner; seed 003 "continuous batching"). The weight matrices see
//! all N tokens at once, so a decode step for S sequences is one (N, C)·(C, ·) GEMM per
//! projection instead of S matrix-vector products; attention reads each sequence's own blocks.

use super::{Block, Gpt};
use kiln_core::ops::PagedBatch;
use kiln_core::{no_grad, DType, Device, Error, Result, Tensor};
use kiln_nn::attention::{PagedKvCache, PagedKvConfig};
use kiln_nn::position::RotaryEmbedding;

impl Block {
    /// `x + attn(ln_1(x))`, then `+ mlp(ln_2(x))`, for a ragged batch `x` (N, C).
    fn forward_paged(
        &self,
        x: &Tensor,
        rope: Option<&RotaryEmbedding>,
        kv: (&Tensor, &Tensor),
        batch: &PagedBatch,
    ) -> Result<Tensor> {
        let x = x.add(&self.attn.forward_paged(&self.ln_1.forward(x)?, rope, kv, batch)?)?;
        x.add(&self.mlp.forward(&self.ln_2.forward(&x)?)?)
    }
}

impl Gpt {
    /// A [`PagedKvCache`] shaped for this model: `num_blocks` blocks of `block_size` tokens.
    pub fn new_paged_cache(
        &self,
        num_blocks: usize,
        block_size: usize,
        dtype: DType,
        prefix_caching: bool,
        device: &Device,
    ) -> Result<PagedKvCache> {
        let c = &self.cfg;
        let cfg = PagedKvConfig {
            layers: c.n_layer,
            kv_heads: c.n_kv_head,
            head_dim: c.head_dim(),
            num_blocks,
            block_size,
            dtype,
            prefix_caching,
        };
        PagedKvCache::new(cfg, device)
    }

    /// Logits (R, V) of rows `logits_rows` (R) of a ragged batch: `tokens` (N) i64 are the new
    /// tokens of the batch's sequences in the order [`PagedKvCache::batch`] listed them; their
    /// keys and values are written to `cache` on the way. Inference only.
    pub fn forward_paged(
        &self,
        tokens: &Tensor,
        batch: &PagedBatch,
        cache: &PagedKvCache,
        logits_rows: &Tensor,
    ) -> Result<Tensor> {
        let n = batch.positions.dims()[0];
        if tokens.dims() != [n] {
            return Err(Error::ShapeMismatch { op: "Gpt::forward_paged", lhs: tokens.dims().to_vec(), rhs: vec![n] });
        }
        if cache.config().layers != self.h.len() {
            return Err(Error::Invalid {
                op: "Gpt::forward_paged",
                msg: format!("a cache of {} layers for a model of {}", cache.config().layers, self.h.len()),
            });
        }
        no_grad(|| {
            let mut x = self.wte.forward(tokens)?; // (N,C)
            if let Some(wpe) = &self.wpe {
                x = x.add(&wpe.forward(&batch.positions)?)?;
            }
            for (i, blk) in self.h.iter().enumerate() {
                x = blk.forward_paged(&x, self.rope.as_ref(), cache.layer(i)?, batch)?;
            }
            // Only the rows that need a next token go through the final norm and the head.
            self.head(&self.ln_f.forward(&x.index_select(0, logits_rows)?)?)
        })
    }
}
