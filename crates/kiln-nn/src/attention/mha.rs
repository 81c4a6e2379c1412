//! [`MultiHeadAttention`] with grouped-query attention (book ch. 8 "multi-head attention";
//! seed 001 "MHA/MQA/GQA"; Ainslie et al. 2023).
//!
//! ```text
//! x (B,T,C) ─ c_attn ─▶ q (B,H,T,D), k, v (B,Hkv,T,D) ─ RoPE? ─ [KvCache] ─▶
//!   softmax(q·kᵀ/√D + causal) v  (fused FlashAttention kernel) ─▶ (B,T,C) ─ c_proj ─▶ out
//! ```
//! `Hkv = H` is multi-head attention, `Hkv = 1` multi-query, anything between grouped-query.

use super::KvCache;
use crate::position::RotaryEmbedding;
use crate::Linear;
use kiln_core::module::{join, Module};
use kiln_core::ops::{AttentionOpts, PagedBatch};
use kiln_core::{Device, Error, Result, Tensor};

/// Shape of an attention layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionConfig {
    /// Model width C.
    pub dim: usize,
    /// Query heads H.
    pub n_heads: usize,
    /// Key/value heads Hkv (divides H).
    pub n_kv_heads: usize,
    /// Biases on the projections (GPT-2 yes, LLaMA no).
    pub bias: bool,
    /// Causal (decoder) or bidirectional (encoder).
    pub causal: bool,
    /// Dropout on attention probabilities during training.
    pub dropout: f64,
    /// Sliding window (Mistral; causal only): a query attends to its own key and the `w − 1`
    /// before it. `None`: every earlier key.
    pub window: Option<usize>,
}

impl AttentionConfig {
    /// Checks divisibility: C by H, H by Hkv.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Invalid { op: "AttentionConfig", msg });
        if self.n_heads == 0 || !self.dim.is_multiple_of(self.n_heads) {
            return bad(format!("n_heads {} does not divide dim {}", self.n_heads, self.dim));
        }
        if self.n_kv_heads == 0 || !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad(format!("n_kv_heads {} does not divide n_heads {}", self.n_kv_heads, self.n_heads));
        }
        if self.window == Some(0) {
            return bad("a sliding window must hold at least one key".into());
        }
        Ok(())
    }

    /// Head dim D = C / H.
    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads.max(1)
    }
}

/// Self-attention with a fused QKV projection `c_attn` (C → (H + 2·Hkv)·D) and output
/// projection `c_proj`, GPT-2's names.
#[derive(Clone, Debug)]
pub struct MultiHeadAttention {
    /// The layer's shape.
    pub cfg: AttentionConfig,
    /// Fused query/key/value projection.
    pub c_attn: Linear,
    /// Output projection.
    pub c_proj: Linear,
}

impl MultiHeadAttention {
    /// Random `N(0, std²)` projections (`proj_std` for the residual output projection).
    pub fn new(
        cfg: AttentionConfig,
        std: f64,
        proj_std: f64,
        seed: u64,
        device: &Device,
    ) -> Result<MultiHeadAttention> {
        cfg.validate()?;
        let d = cfg.head_dim();
        let qkv = (cfg.n_heads + 2 * cfg.n_kv_heads) * d;
        Ok(MultiHeadAttention {
            c_attn: Linear::new(cfg.dim, qkv, cfg.bias, std, seed, device)?,
            c_proj: Linear::new(cfg.n_heads * d, cfg.dim, cfg.bias, proj_std, seed.wrapping_add(1), device)?,
            cfg,
        })
    }

    /// Attends over `x` (B, T, C), rotating q/k with `rope` when given, appending to `cache` when
    /// given (the new tokens then follow the cached ones). `dropout_seed` is used only when
    /// `train` and dropout > 0.
    pub fn forward(
        &self,
        x: &Tensor,
        rope: Option<&RotaryEmbedding>,
        cache: Option<&mut KvCache>,
        train: bool,
        dropout_seed: u64,
    ) -> Result<Tensor> {
        let (h, hkv, d) = (self.cfg.n_heads, self.cfg.n_kv_heads, self.cfg.head_dim());
        if x.rank() != 3 || x.dims()[2] != self.cfg.dim {
            return Err(Error::ShapeMismatch {
                op: "MultiHeadAttention",
                lhs: x.dims().to_vec(),
                rhs: vec![self.cfg.dim],
            });
        }
        let (b, t) = (x.dims()[0], x.dims()[1]);
        let qkv = self.c_attn.forward(x)?; // (B,T,(H+2Hkv)·D)
        let opts = AttentionOpts {
            causal: self.cfg.causal,
            scale: None,
            dropout_p: if train { self.cfg.dropout } else { 0.0 },
            seed: dropout_seed,
            // the fused kernel applies the window itself (and skips the key tiles outside it)
            window: self.cfg.window.filter(|_| self.cfg.causal),
        };
        if rope.is_none() && cache.is_none() {
            // no rotation, no cache: attend straight from the packed projection (one node)
            return self.c_proj.forward(&Tensor::packed_attention(&qkv, h, hkv, None, &opts)?);
        }
        let parts = qkv.split(&[h * d, hkv * d, hkv * d], -1)?;
        let heads = |p: &Tensor, n: usize| p.reshape(&[b, t, n, d])?.transpose(1, 2); // (B,n,T,D)
        let (mut q, mut k, v) = (heads(&parts[0], h)?, heads(&parts[1], hkv)?, heads(&parts[2], hkv)?);
        let offset = cache.as_ref().map_or(0, |c| c.position());
        if let Some(r) = rope {
            q = r.forward(&q, offset)?;
            k = r.forward(&k, offset)?;
        }
        let (k, v) = match cache {
            Some(c) => c.append(&k, &v)?,
            None => (k, v),
        };
        let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None, &opts)?; // (B,H,T,D)
        self.c_proj.forward(&y.transpose(1, 2)?.reshape(&[b, t, h * d])?)
    }
}

impl MultiHeadAttention {
    /// Attends for a ragged batch `x` (N, C) of tokens from many sequences over the paged
    /// cache `kv` (this layer's keys and values, (slots, Hkv, D)): projects, rotates each token
    /// at its own position, writes the new keys and values to their slots, then runs
    /// [`Tensor::paged_attention`]. Inference only.
    pub fn forward_paged(
        &self,
        x: &Tensor,
        rope: Option<&RotaryEmbedding>,
        kv: (&Tensor, &Tensor),
        batch: &PagedBatch,
    ) -> Result<Tensor> {
        let (h, hkv, d) = (self.cfg.n_heads, self.cfg.n_kv_heads, self.cfg.head_dim());
        if x.rank() != 2 || x.dims()[1] != self.cfg.dim {
            return Err(Error::ShapeMismatch {
                op: "MultiHeadAttention::forward_paged",
                lhs: x.dims().to_vec(),
                rhs: vec![self.cfg.dim],
            });
        }
        let n = x.dims()[0];
        let qkv = self.c_attn.forward(x)?; // (N,(H+2Hkv)·D)
        let parts = qkv.split(&[h * d, hkv * d, hkv * d], -1)?;
        let (mut q, mut k, v) =
            (parts[0].reshape(&[n, h, d])?, parts[1].reshape(&[n, hkv, d])?, parts[2].reshape(&[n, hkv, d])?);
        if let Some(r) = rope {
            q = r.forward_at(&q, &batch.positions)?;
            k = r.forward_at(&k, &batch.positions)?;
        }
        kv.0.paged_write_(&batch.slots, &k)?;
        kv.1.paged_write_(&batch.slots, &v)?;
        let window = self.cfg.window.filter(|_| self.cfg.causal);
        let y = Tensor::paged_attention(&q, kv.0, kv.1, batch, None, window)?; // (N,H,D)
        self.c_proj.forward(&y.reshape(&[n, h * d])?)
    }
}

impl Module for MultiHeadAttention {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.c_attn.visit_params(&join(prefix, "c_attn"), f);
        self.c_proj.visit_params(&join(prefix, "c_proj"), f);
    }
}
