//! Decoder-only transformer: GPT-2 (Radford et al. 2019; book ch. 14) and LLaMA (Touvron et al.
//! 2023; seed 003) from one [`GptConfig`].
//!
//! ```text
//! tokens (B,T) ─ wte (+ wpe) ─▶ x (B,T,C)
//!   repeat L:  x = x + attn(norm_1(x))        (causal, RoPE for LLaMA, optional KvCache)
//!              x = x + mlp(norm_2(x))         (GELU MLP or SwiGLU)
//! norm_f(x) ─ lm_head (tied to wte for GPT-2) ─▶ logits (B,T,V)
//! ```

mod config;
mod gguf;
mod gptq;
mod hf;
mod inspect;
mod paged;
mod quantized;

pub use config::{GptConfig, MlpKind, NormKind, PositionKind};
pub use gguf::{config_from_gguf, hf_tensors_from_gguf};
pub(crate) use hf::check_size;
pub use hf::{load_hf_tensors, HF_MODEL_TYPES};
pub use inspect::GptTrace;
pub use quantized::{load_quantized, save_quantized};

use kiln_core::module::{join, Module};
use kiln_core::{DType, Device, Error, Result, Tensor};
use kiln_nn::attention::{AttentionConfig, KvCache, MultiHeadAttention};
use kiln_nn::ffn::{Activation, Mlp, SwiGlu};
use kiln_nn::norm::{LayerNorm, RmsNorm};
use kiln_nn::position::RotaryEmbedding;
use kiln_nn::{Embedding, Linear};

/// GPT-2's init: N(0, 0.02²), residual projections scaled by 1/√(2L).
const INIT_STD: f64 = 0.02;

/// LayerNorm or RMSNorm.
#[derive(Clone, Debug)]
pub enum Norm {
    /// GPT-2.
    Layer(LayerNorm),
    /// LLaMA.
    Rms(RmsNorm),
}

impl Norm {
    fn new(cfg: &GptConfig, device: &Device) -> Result<Norm> {
        Ok(match cfg.norm {
            NormKind::LayerNorm => Norm::Layer(LayerNorm::new(cfg.n_embd, cfg.bias, cfg.layer_norm_epsilon, device)?),
            NormKind::RmsNorm => Norm::Rms(RmsNorm::new(cfg.n_embd, cfg.layer_norm_epsilon, device)?),
        })
    }

    /// Normalises the last dim.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Norm::Layer(n) => n.forward(x),
            Norm::Rms(n) => n.forward(x),
        }
    }
}

impl Module for Norm {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        match self {
            Norm::Layer(n) => n.visit_params(prefix, f),
            Norm::Rms(n) => n.visit_params(prefix, f),
        }
    }
}

/// GELU MLP or SwiGLU.
#[derive(Clone, Debug)]
pub enum FeedForward {
    /// GPT-2.
    Mlp(Mlp),
    /// LLaMA.
    SwiGlu(SwiGlu),
}

impl FeedForward {
    /// The block on `x` (…, C).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            FeedForward::Mlp(m) => m.forward(x),
            FeedForward::SwiGlu(m) => m.forward(x),
        }
    }
}

impl Module for FeedForward {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        match self {
            FeedForward::Mlp(m) => m.visit_params(prefix, f),
            FeedForward::SwiGlu(m) => m.visit_params(prefix, f),
        }
    }
}

/// One pre-norm transformer block.
#[derive(Clone, Debug)]
pub struct Block {
    /// Norm before attention.
    pub ln_1: Norm,
    /// Causal self-attention.
    pub attn: MultiHeadAttention,
    /// Norm before the feed-forward block.
    pub ln_2: Norm,
    /// Feed-forward block.
    pub mlp: FeedForward,
}

impl Block {
    fn new(cfg: &GptConfig, layer: usize, seed: u64, device: &Device) -> Result<Block> {
        let proj_std = INIT_STD / (2.0 * cfg.n_layer as f64).sqrt();
        let s = seed.wrapping_add(1000 * layer as u64);
        let attn_cfg = AttentionConfig {
            dim: cfg.n_embd,
            n_heads: cfg.n_head,
            n_kv_heads: cfg.n_kv_head,
            bias: cfg.bias,
            causal: true,
            dropout: cfg.dropout,
            window: cfg.sliding_window,
        };
        let mlp = match cfg.mlp {
            MlpKind::Gelu => FeedForward::Mlp(Mlp::new(
                cfg.n_embd,
                cfg.n_inner,
                Activation::GeluTanh,
                cfg.bias,
                (INIT_STD, proj_std),
                s + 2,
                device,
            )?),
            MlpKind::SwiGlu => FeedForward::SwiGlu(SwiGlu::new(cfg.n_embd, cfg.n_inner, INIT_STD, s + 2, device)?),
        };
        Ok(Block {
            ln_1: Norm::new(cfg, device)?,
            attn: MultiHeadAttention::new(attn_cfg, INIT_STD, proj_std, s, device)?,
            ln_2: Norm::new(cfg, device)?,
            mlp,
        })
    }

    /// `x + attn(ln_1(x))`, then `+ mlp(ln_2(x))`, with residual dropout when training.
    fn forward(
        &self,
        x: &Tensor,
        rope: Option<&RotaryEmbedding>,
        cache: Option<&mut KvCache>,
        drop: Dropout,
    ) -> Result<Tensor> {
        let a = self.attn.forward(&self.ln_1.forward(x)?, rope, cache, drop.train, drop.seed)?;
        let x = x.add(&a.dropout(drop.p, drop.seed.wrapping_add(1), drop.train)?)?;
        let m = self.mlp.forward(&self.ln_2.forward(&x)?)?;
        x.add(&m.dropout(drop.p, drop.seed.wrapping_add(2), drop.train)?)
    }
}

impl Module for Block {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.ln_1.visit_params(&join(prefix, "ln_1"), f);
        self.attn.visit_params(&join(prefix, "attn"), f);
        self.ln_2.visit_params(&join(prefix, "ln_2"), f);
        self.mlp.visit_params(&join(prefix, "mlp"), f);
    }
}

/// Dropout settings of one forward pass.
#[derive(Clone, Copy, Debug)]
struct Dropout {
    p: f64,
    train: bool,
    seed: u64,
}

/// A decoder-only transformer.
#[derive(Clone, Debug)]
pub struct Gpt {
    /// Its configuration.
    pub cfg: GptConfig,
    /// Token embeddings (V, C).
    pub wte: Embedding,
    /// Learned positions (n_positions, C), GPT-2 only.
    pub wpe: Option<Embedding>,
    /// The blocks.
    pub h: Vec<Block>,
    /// Final norm.
    pub ln_f: Norm,
    /// Output head (V, C); `None` when tied to `wte`.
    pub lm_head: Option<Linear>,
    rope: Option<RotaryEmbedding>,
}

impl Gpt {
    /// A randomly initialised model (GPT-2's init; `seed` makes it reproducible).
    pub fn new(cfg: GptConfig, seed: u64, device: &Device) -> Result<Gpt> {
        cfg.validate()?;
        let wpe = match cfg.position {
            PositionKind::Learned => {
                Some(Embedding::new(cfg.n_positions, cfg.n_embd, INIT_STD, seed.wrapping_add(1), device)?)
            }
            PositionKind::Rope => None,
        };
        let rope = match cfg.position {
            PositionKind::Rope => {
                Some(RotaryEmbedding::new(cfg.head_dim(), cfg.n_positions, cfg.rope_theta, DType::F32, device)?)
            }
            PositionKind::Learned => None,
        };
        let h = (0..cfg.n_layer).map(|i| Block::new(&cfg, i, seed.wrapping_add(10), device)).collect::<Result<_>>()?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(Linear::new(cfg.n_embd, cfg.vocab_size, false, INIT_STD, seed.wrapping_add(2), device)?)
        };
        Ok(Gpt {
            wte: Embedding::new(cfg.vocab_size, cfg.n_embd, INIT_STD, seed, device)?,
            wpe,
            h,
            ln_f: Norm::new(&cfg, device)?,
            lm_head,
            rope,
            cfg,
        })
    }

    /// One empty [`KvCache`] per layer for `batch` sequences of up to `max_len` tokens. With a
    /// sliding window `w` they are rolling buffers ([`KvCache::with_window`]): a caller that feeds
    /// its input in chunks of at most `max_len − (w − 1)` tokens (as `kiln_infer`'s `generate`
    /// does with [`PREFILL_CHUNK`]) may ask for fewer slots than the sequence is long.
    pub fn new_caches(&self, batch: usize, max_len: usize, device: &Device) -> Result<Vec<KvCache>> {
        let c = &self.cfg;
        let cap = max_len.min(c.n_positions);
        (0..c.n_layer)
            .map(|_| {
                let kv = KvCache::new(batch, c.n_kv_head, cap, c.head_dim(), DType::F32, device)?;
                Ok(match c.sliding_window {
                    Some(w) => kv.with_window(w),
                    None => kv,
                })
            })
            .collect()
    }

    /// Logits (B, T, V) for `tokens` (B, T) of dtype `I64`. With `caches`, the tokens continue
    /// the cached sequence (positions start at the cached length). `train` enables dropout,
    /// seeded by `seed` so a training step is reproducible.
    pub fn forward(&self, tokens: &Tensor, caches: Option<&mut [KvCache]>, train: bool, seed: u64) -> Result<Tensor> {
        self.head(&self.hidden(tokens, caches, train, seed)?)
    }

    /// Logits (B, 1, V) of the last position only (inference: a prompt's prefill needs just the
    /// next token's distribution, so the (T, C)·(C, V) head product shrinks to one row).
    pub fn forward_last(&self, tokens: &Tensor, caches: Option<&mut [KvCache]>) -> Result<Tensor> {
        let x = self.hidden(tokens, caches, false, 0)?; // (B,T,C)
        let t = x.dims()[1];
        self.head(&x.narrow(1, t.saturating_sub(1), t.min(1))?)
    }

    /// Every weight matrix kept quantized in memory (see `Gpt::from_gguf_quantized`).
    pub fn quantized_matrices(&self) -> Vec<&dyn kiln_core::quant::QuantMatrix> {
        let mut lins = vec![];
        for blk in &self.h {
            lins.extend([&blk.attn.c_attn, &blk.attn.c_proj]);
            match &blk.mlp {
                FeedForward::Mlp(m) => lins.extend([&m.fc, &m.proj]),
                FeedForward::SwiGlu(s) => lins.extend([&s.gate, &s.up, &s.down]),
            }
        }
        lins.extend(self.lm_head.iter());
        let mut out: Vec<&dyn kiln_core::quant::QuantMatrix> =
            lins.into_iter().filter_map(|l| l.quant.as_deref()).collect();
        out.extend(self.wte.quant.as_deref());
        out
    }

    /// The output head: (…, C) → logits (…, V).
    pub fn head(&self, x: &Tensor) -> Result<Tensor> {
        match &self.lm_head {
            Some(head) => head.forward(x),
            None => self.wte.attend(x),
        }
    }

    /// Checks that `tokens` is (B, T) and positions `offset .. offset + T` fit the context.
    pub(super) fn check_tokens(&self, tokens: &Tensor, offset: usize) -> Result<()> {
        if tokens.rank() != 2 {
            return Err(Error::BadShape {
                op: "Gpt::forward",
                shape: tokens.dims().to_vec(),
                msg: "tokens must be (B, T)".into(),
            });
        }
        let t = tokens.dims()[1];
        if offset + t > self.cfg.n_positions {
            return Err(Error::Invalid {
                op: "Gpt::forward",
                msg: format!("{} positions exceed the model's context of {}", offset + t, self.cfg.n_positions),
            });
        }
        Ok(())
    }

    /// The blocks' input for `tokens` (B, T) starting at position `offset`: token embeddings
    /// (+ learned positions), with dropout when training. (B, T, C)
    pub(super) fn embed(&self, tokens: &Tensor, offset: usize, train: bool, seed: u64) -> Result<Tensor> {
        let t = tokens.dims().get(1).copied().unwrap_or(0);
        let x = self.wte.forward(tokens)?; // (B,T,C)
        let x = match &self.wpe {
            Some(wpe) => {
                let pos = Tensor::from_vec((offset as i64..(offset + t) as i64).collect(), &[1, t], tokens.device())?;
                x.add(&wpe.forward(&pos)?)?
            }
            None => x,
        };
        x.dropout(if train { self.cfg.dropout } else { 0.0 }, seed, train)
    }

    /// Block `i` at inference (no cache, no dropout): (B, T, C) → (B, T, C).
    pub(super) fn block(&self, i: usize, x: &Tensor) -> Result<Tensor> {
        let blk = self
            .h
            .get(i)
            .ok_or_else(|| Error::Invalid { op: "Gpt::block", msg: format!("block {i} of {}", self.h.len()) })?;
        blk.forward(x, self.rope.as_ref(), None, Dropout { p: 0.0, train: false, seed: 0 })
    }

    /// The final hidden states (B, T, C) (after the last norm) for `tokens`; see [`Gpt::forward`].
    pub fn hidden(&self, tokens: &Tensor, caches: Option<&mut [KvCache]>, train: bool, seed: u64) -> Result<Tensor> {
        let offset = caches.as_ref().and_then(|c| c.first()).map_or(0, |c| c.position());
        self.check_tokens(tokens, offset)?;
        if let Some(c) = &caches {
            if c.len() != self.h.len() {
                return Err(Error::Invalid {
                    op: "Gpt::forward",
                    msg: format!("{} caches for {} layers", c.len(), self.h.len()),
                });
            }
        }
        let mut x = self.embed(tokens, offset, train, seed)?; // (B,T,C)
        let p = if train { self.cfg.dropout } else { 0.0 };
        match caches {
            Some(cs) => {
                for (i, (blk, c)) in self.h.iter().zip(cs.iter_mut()).enumerate() {
                    x =
                        blk.forward(&x, self.rope.as_ref(), Some(c), Dropout { p, train, seed: layer_seed(seed, i) })?;
                }
            }
            None => {
                for (i, blk) in self.h.iter().enumerate() {
                    x = blk.forward(&x, self.rope.as_ref(), None, Dropout { p, train, seed: layer_seed(seed, i) })?;
                }
            }
        }
        self.ln_f.forward(&x)
    }
}

/// Tokens per forward when a sliding-window model's prompt is fed to rolling caches in pieces.
pub const PREFILL_CHUNK: usize = 512;

fn layer_seed(seed: u64, layer: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(16 * (layer as u64 + 1))
}

impl Module for Gpt {
    /// HF/nanoGPT names: `transformer.wte.weight`, `transformer.h.0.attn.c_attn.weight`, …
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        let tr = join(prefix, "transformer");
        self.wte.visit_params(&join(&tr, "wte"), f);
        if let Some(wpe) = &self.wpe {
            wpe.visit_params(&join(&tr, "wpe"), f);
        }
        self.h.visit_params(&join(&tr, "h"), f);
        self.ln_f.visit_params(&join(&tr, "ln_f"), f);
        if let Some(head) = &self.lm_head {
            head.visit_params(&join(prefix, "lm_head"), f);
        }
    }
}
