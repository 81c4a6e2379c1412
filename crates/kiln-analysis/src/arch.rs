//! [`Arch`]: a transformer described by exactly what the accounting needs — sizes, and the
//! switches that change which tensors exist (position scheme, norm, feed-forward, biases, tied
//! head, token types, pooler).
//!
//! Three families, all as kiln builds them:
//! - GPT-2-style decoders (`kiln_models::gpt`, Radford et al. 2019): learned positions, LayerNorm,
//!   GELU MLP (width F, usually 4C), biases, head tied to the token embedding;
//! - LLaMA-style decoders (Touvron et al. 2023; seed 003 §2): RoPE, RMSNorm, SwiGLU, no biases,
//!   grouped-query attention with Hkv key/value heads (Hkv = H: MHA, Hkv = 1: MQA), tied or untied
//!   head;
//! - BERT encoders (`kiln_models::bert`, Devlin et al. 2019; book ch. 13): learned positions,
//!   token-type embeddings, a LayerNorm after the embeddings, post-LN layers, no LM head, an
//!   optional pooler.
//!
//! Any decoder may be a **mixture of experts** ([`Moe`], Mixtral: Jiang et al. 2024; seed 001
//! "MoE"): each layer's feed-forward is E experts of width F and a router C → E, and each token
//! runs through its top k experts — total parameters grow with E, active ones (and FLOPs per
//! token) with k.
//!
//! Letters (STYLE.md): V vocab, P positions, C width, L layers, H heads, Hkv kv heads, D = C/H
//! head dim, F feed-forward width, E experts, k experts per token.

use crate::error::{AnalysisError, Result};
use kiln_models::bert::BertConfig;
use kiln_models::gpt::GptConfig;
pub use kiln_models::gpt::{MlpKind, NormKind, PositionKind};
use serde::{Deserialize, Serialize};

/// Decoder-only (causal LM with a head) or encoder-only (BERT, no head).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// `kiln_models::gpt::Gpt`: embeddings, L pre-norm blocks, final norm, LM head.
    Decoder,
    /// `kiln_models::bert::Bert`: embeddings + LayerNorm, L post-norm layers, optional pooler.
    Encoder,
}

/// A transformer's shape, for accounting. Build one from a preset ([`Arch::preset`]), a kiln
/// config (`From<&GptConfig>`, `From<&BertConfig>`), a config file ([`Arch::from_config_file`]),
/// or the constructors [`Arch::gpt2`], [`Arch::llama`], [`Arch::bert`]; check it with
/// [`Arch::validate`] (every analysis does).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Arch {
    /// A label for reports (the preset name, or a description).
    pub name: String,
    /// Decoder or encoder.
    pub family: Family,
    /// Vocabulary size V.
    pub vocab_size: u64,
    /// Longest context P (rows of the learned position table; RoPE's trained length).
    pub max_positions: u64,
    /// Width C.
    pub d_model: u64,
    /// Layers L.
    pub n_layers: u64,
    /// Query heads H (divides C; head dim D = C/H).
    pub n_heads: u64,
    /// Key/value heads Hkv (divides H; = H for multi-head attention).
    pub n_kv_heads: u64,
    /// Feed-forward width F.
    pub d_ff: u64,
    /// Learned position table or RoPE.
    pub position: PositionKind,
    /// LayerNorm or RMSNorm.
    pub norm: NormKind,
    /// GELU MLP (two matrices) or SwiGLU (three).
    pub mlp: MlpKind,
    /// Biases on the attention projections, the GELU MLP and LayerNorm (SwiGLU and RMSNorm
    /// have none in kiln, whatever this says).
    pub bias: bool,
    /// Decoders: the LM head shares the token embedding (no (V, C) head matrix).
    pub tied_head: bool,
    /// Encoders: rows of the token-type (segment) table; 0 for decoders.
    pub type_vocab_size: u64,
    /// Encoders: a pooler `tanh(W_p·x[CLS] + b_p)` (C² + C parameters); false for decoders.
    pub pooler: bool,
    /// A mixture-of-experts feed-forward in every layer; `None`: dense.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moe: Option<Moe>,
    /// Sliding-window attention (Mistral): each token sees the last `w` keys, so a KV cache
    /// needs only those; `None`: the whole prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<u64>,
}

/// A mixture-of-experts layer: `experts` feed-forward experts (each the architecture's MLP of
/// width F) and a bias-free router C → E; each token runs through `top_k` of them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moe {
    /// Experts per layer E.
    pub experts: u64,
    /// Experts each token uses k (1 ≤ k ≤ E).
    pub top_k: u64,
}

/// Upper limits (kiln's own, `GptConfig::validate`): far above any real model, low enough that
/// no size product overflows.
const LIMITS: [(&str, u64); 7] = [
    ("vocab_size", 1 << 24),
    ("max_positions", 1 << 24),
    ("d_model", 1 << 17),
    ("d_ff", 1 << 19),
    ("n_layers", 1 << 12),
    ("n_heads", 1 << 12),
    ("n_kv_heads", 1 << 12),
];

impl Arch {
    /// A GPT-2-style decoder: learned positions, LayerNorm, GELU MLP with F = 4C, biases, tied
    /// head (`GptConfig::gpt2`).
    pub fn gpt2(name: &str, vocab_size: u64, max_positions: u64, d_model: u64, n_layers: u64, n_heads: u64) -> Arch {
        Arch {
            name: name.to_string(),
            family: Family::Decoder,
            vocab_size,
            max_positions,
            d_model,
            n_layers,
            n_heads,
            n_kv_heads: n_heads,
            d_ff: d_model.saturating_mul(4),
            position: PositionKind::Learned,
            norm: NormKind::LayerNorm,
            mlp: MlpKind::Gelu,
            bias: true,
            tied_head: true,
            type_vocab_size: 0,
            pooler: false,
            moe: None,
            sliding_window: None,
        }
    }

    /// A LLaMA-style decoder: RoPE, RMSNorm, SwiGLU of width F, no biases, `n_kv_heads` kv
    /// heads, head tied or not (`GptConfig::llama`).
    #[allow(clippy::too_many_arguments)]
    pub fn llama(
        name: &str,
        vocab_size: u64,
        max_positions: u64,
        d_model: u64,
        n_layers: u64,
        n_heads: u64,
        n_kv_heads: u64,
        d_ff: u64,
        tied_head: bool,
    ) -> Arch {
        Arch {
            n_kv_heads,
            d_ff,
            position: PositionKind::Rope,
            norm: NormKind::RmsNorm,
            mlp: MlpKind::SwiGlu,
            bias: false,
            tied_head,
            ..Arch::gpt2(name, vocab_size, max_positions, d_model, n_layers, n_heads)
        }
    }

    /// A BERT encoder: learned positions, `type_vocab_size` token types, LayerNorm, GELU MLP of
    /// width F, biases, with or without the pooler (`BertConfig::new`).
    #[allow(clippy::too_many_arguments)]
    pub fn bert(
        name: &str,
        vocab_size: u64,
        max_positions: u64,
        d_model: u64,
        n_layers: u64,
        n_heads: u64,
        d_ff: u64,
        type_vocab_size: u64,
        pooler: bool,
    ) -> Arch {
        Arch {
            family: Family::Encoder,
            d_ff,
            tied_head: false,
            type_vocab_size,
            pooler,
            ..Arch::gpt2(name, vocab_size, max_positions, d_model, n_layers, n_heads)
        }
    }

    /// The same architecture with a mixture of `experts` experts, `top_k` per token.
    pub fn with_moe(mut self, experts: u64, top_k: u64) -> Arch {
        self.moe = Some(Moe { experts, top_k });
        self
    }

    /// Experts per layer E (1 when dense).
    pub fn experts(&self) -> u64 {
        self.moe.map_or(1, |m| m.experts)
    }

    /// Experts each token runs through k (1 when dense).
    pub fn experts_per_token(&self) -> u64 {
        self.moe.map_or(1, |m| m.top_k)
    }

    /// The same architecture with (or without) the pooler.
    pub fn with_pooler(mut self, pooler: bool) -> Arch {
        self.pooler = pooler;
        self
    }

    /// The same architecture under another name.
    pub fn named(mut self, name: &str) -> Arch {
        self.name = name.to_string();
        self
    }

    /// Head dim D = C / H.
    pub fn head_dim(&self) -> u64 {
        self.d_model / self.n_heads.max(1)
    }

    /// Width of the queries, H·D (= C).
    pub fn q_dim(&self) -> u64 {
        self.n_heads.saturating_mul(self.head_dim())
    }

    /// Width of the keys (and of the values), Hkv·D.
    pub fn kv_dim(&self) -> u64 {
        self.n_kv_heads.saturating_mul(self.head_dim())
    }

    /// True when the textbook's closed forms apply unchanged: multi-head attention (Hkv = H)
    /// and a GELU MLP of width F = 4C.
    pub fn is_textbook_layer(&self) -> bool {
        self.n_kv_heads == self.n_heads && self.mlp == MlpKind::Gelu && self.d_ff == self.d_model.saturating_mul(4)
    }

    /// Checks every size and ratio: all sizes ≥ 1 and below kiln's limits, H divides C, Hkv
    /// divides H, RoPE has an even head dim, decoders have no token types or pooler and encoders
    /// at least one token type. The error names the architecture and the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, msg: String| {
            Err(AnalysisError::InvalidArch { arch: self.name.clone(), field: field.to_string(), msg })
        };
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("max_positions", self.max_positions),
            ("d_model", self.d_model),
            ("n_layers", self.n_layers),
            ("n_heads", self.n_heads),
            ("n_kv_heads", self.n_kv_heads),
            ("d_ff", self.d_ff),
        ];
        for (field, v) in sizes {
            if v == 0 {
                return bad(field, "must be at least 1, got 0".into());
            }
            if let Some((_, max)) = LIMITS.iter().find(|(f, _)| *f == field) {
                if v > *max {
                    return bad(field, format!("{v} exceeds kiln's limit of {max}"));
                }
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return bad("n_heads", format!("{} heads do not divide d_model {}", self.n_heads, self.d_model));
        }
        if !self.n_heads.is_multiple_of(self.n_kv_heads) {
            return bad("n_kv_heads", format!("{} kv heads do not divide {} heads", self.n_kv_heads, self.n_heads));
        }
        if self.sliding_window == Some(0) {
            return bad("sliding_window", "a window must hold at least one token".into());
        }
        if let Some(m) = self.moe {
            if self.family == Family::Encoder {
                return bad("moe", "kiln's encoders have dense feed-forwards".into());
            }
            if m.experts == 0 || m.experts > 1 << 12 {
                return bad("moe", format!("{} experts (must be 1..={})", m.experts, 1 << 12));
            }
            if m.top_k == 0 || m.top_k > m.experts {
                return bad("moe", format!("top_k {} must be between 1 and the {} experts", m.top_k, m.experts));
            }
        }
        if self.position == PositionKind::Rope && !self.head_dim().is_multiple_of(2) {
            return bad("n_heads", format!("RoPE needs an even head dim, got {}", self.head_dim()));
        }
        match self.family {
            Family::Decoder if self.type_vocab_size != 0 => {
                bad("type_vocab_size", "decoders have no token-type table (must be 0)".into())
            }
            Family::Decoder if self.pooler => bad("pooler", "decoders have no pooler".into()),
            Family::Encoder if self.type_vocab_size == 0 => {
                bad("type_vocab_size", "encoders need at least one token type".into())
            }
            Family::Encoder if self.type_vocab_size > 1 << 24 => {
                bad("type_vocab_size", format!("{} exceeds kiln's limit of {}", self.type_vocab_size, 1u64 << 24))
            }
            _ => Ok(()),
        }
    }

    /// Checks a sequence length against the architecture: at least 1, and at most P when
    /// positions are a learned table (RoPE models may be analysed past their trained length).
    pub fn check_seq(&self, what: &'static str, seq: u64) -> Result<()> {
        if seq == 0 {
            return Err(AnalysisError::InvalidInput { what, msg: "must be at least 1".into() });
        }
        if self.position == PositionKind::Learned && seq > self.max_positions {
            return Err(AnalysisError::InvalidInput {
                what,
                msg: format!("{seq} exceeds the {} rows of {}'s learned position table", self.max_positions, self.name),
            });
        }
        Ok(())
    }
}

impl From<&GptConfig> for Arch {
    /// The decoder kiln's `Gpt::new(cfg, …)` builds (`n_inner` is F, `n_positions` is P).
    fn from(c: &GptConfig) -> Arch {
        let kind = match (c.position, c.mlp) {
            (PositionKind::Learned, MlpKind::Gelu) => "gpt2-style",
            (PositionKind::Rope, MlpKind::SwiGlu) => "llama-style",
            _ => "decoder",
        };
        Arch {
            name: format!("{kind} L{} C{} H{}/{}", c.n_layer, c.n_embd, c.n_head, c.n_kv_head),
            family: Family::Decoder,
            vocab_size: c.vocab_size as u64,
            max_positions: c.n_positions as u64,
            d_model: c.n_embd as u64,
            n_layers: c.n_layer as u64,
            n_heads: c.n_head as u64,
            n_kv_heads: c.n_kv_head as u64,
            d_ff: c.n_inner as u64,
            position: c.position,
            norm: c.norm,
            mlp: c.mlp,
            bias: c.bias,
            tied_head: c.tie_word_embeddings,
            type_vocab_size: 0,
            pooler: false,
            moe: None,
            sliding_window: c.sliding_window.map(|w| w as u64),
        }
    }
}

impl From<GptConfig> for Arch {
    /// See `From<&GptConfig>`.
    fn from(c: GptConfig) -> Arch {
        Arch::from(&c)
    }
}

impl From<&BertConfig> for Arch {
    /// The encoder kiln's `Bert::new(cfg, pooler = true, …)` builds; HF's `BertModel` has the
    /// pooler by default (bert-base-uncased's 109,482,240 parameters include it). Use
    /// [`Arch::with_pooler`]`(false)` for a checkpoint without `pooler.dense`.
    fn from(c: &BertConfig) -> Arch {
        Arch::bert(
            &format!("bert-style L{} C{} H{}", c.num_hidden_layers, c.hidden_size, c.num_attention_heads),
            c.vocab_size as u64,
            c.max_position_embeddings as u64,
            c.hidden_size as u64,
            c.num_hidden_layers as u64,
            c.num_attention_heads as u64,
            c.intermediate_size as u64,
            c.type_vocab_size as u64,
            true,
        )
    }
}

impl From<BertConfig> for Arch {
    /// See `From<&BertConfig>`.
    fn from(c: BertConfig) -> Arch {
        Arch::from(&c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_checked() {
        let mut a = Arch::gpt2("t", 10, 8, 12, 1, 5);
        assert!(a.validate().unwrap_err().to_string().contains("do not divide d_model"));
        a.n_heads = 4;
        a.n_kv_heads = 3;
        assert!(a.validate().unwrap_err().to_string().contains("kv heads do not divide"));
        a.n_kv_heads = 2;
        a.validate().unwrap();
        a.d_ff = 0;
        assert!(a.validate().unwrap_err().to_string().contains("d_ff: must be at least 1"));
    }
}
