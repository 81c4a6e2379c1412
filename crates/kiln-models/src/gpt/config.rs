//! [`GptConfig`]: the shape of a decoder-only model, serialised as `config.json` with Hugging
//! Face's GPT-2 key names (`n_embd`, `n_layer`, …) plus the switches that turn it into LLaMA.

use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// How token positions enter the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PositionKind {
    /// A learned (n_positions, C) table added to the token embeddings (GPT-2).
    Learned,
    /// Rotary embeddings on queries and keys (LLaMA).
    Rope,
}

/// Which normalisation the blocks use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// LayerNorm (GPT-2).
    LayerNorm,
    /// RMSNorm (LLaMA).
    RmsNorm,
}

/// Which feed-forward block the layers use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MlpKind {
    /// `c_proj(gelu_tanh(c_fc(x)))` (GPT-2).
    Gelu,
    /// `down(silu(gate(x)) ⊙ up(x))` (LLaMA).
    SwiGlu,
}

/// A decoder-only transformer's hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GptConfig {
    /// Vocabulary size V.
    pub vocab_size: usize,
    /// Longest context T_max.
    pub n_positions: usize,
    /// Width C.
    pub n_embd: usize,
    /// Blocks L.
    pub n_layer: usize,
    /// Query heads H.
    pub n_head: usize,
    /// Key/value heads Hkv (= H for multi-head attention).
    pub n_kv_head: usize,
    /// Hidden width of the feed-forward block.
    pub n_inner: usize,
    /// Position scheme.
    pub position: PositionKind,
    /// Norm type.
    pub norm: NormKind,
    /// Feed-forward type.
    pub mlp: MlpKind,
    /// Biases on linear layers and norms.
    pub bias: bool,
    /// Share the token embedding with the output head.
    pub tie_word_embeddings: bool,
    /// Norm epsilon.
    pub layer_norm_epsilon: f64,
    /// RoPE frequency base.
    pub rope_theta: f64,
    /// Dropout on embeddings, attention probabilities and residual branches (training only).
    pub dropout: f64,
    /// Sliding-window attention (Mistral): each token attends to itself and the `w − 1` tokens
    /// before it. `None`: the whole causal prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sliding_window: Option<usize>,
}

impl GptConfig {
    /// GPT-2 small: 12 layers, 12 heads, 768 wide, V = 50257, 1024 positions (124,439,808
    /// parameters with the tied head).
    pub fn gpt2_small() -> GptConfig {
        GptConfig::gpt2(50257, 1024, 768, 12, 12)
    }

    /// A GPT-2-style model of the given size (n_inner = 4C).
    pub fn gpt2(vocab_size: usize, n_positions: usize, n_embd: usize, n_layer: usize, n_head: usize) -> GptConfig {
        GptConfig {
            vocab_size,
            n_positions,
            n_embd,
            n_layer,
            n_head,
            n_kv_head: n_head,
            n_inner: 4 * n_embd,
            position: PositionKind::Learned,
            norm: NormKind::LayerNorm,
            mlp: MlpKind::Gelu,
            bias: true,
            tie_word_embeddings: true,
            layer_norm_epsilon: 1e-5,
            rope_theta: 10_000.0,
            dropout: 0.0,
            sliding_window: None,
        }
    }

    /// A LLaMA-style model: RoPE, RMSNorm, SwiGLU, no biases, `n_kv_head` kv heads.
    pub fn llama(
        vocab_size: usize,
        n_positions: usize,
        n_embd: usize,
        n_layer: usize,
        n_head: usize,
        n_kv_head: usize,
        n_inner: usize,
    ) -> GptConfig {
        GptConfig {
            n_kv_head,
            n_inner,
            position: PositionKind::Rope,
            norm: NormKind::RmsNorm,
            mlp: MlpKind::SwiGlu,
            bias: false,
            tie_word_embeddings: false,
            ..GptConfig::gpt2(vocab_size, n_positions, n_embd, n_layer, n_head)
        }
    }

    /// Head dim D = C / H.
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head.max(1)
    }

    /// Checks every size and ratio; the error names the offending field.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Invalid { op: "GptConfig", msg });
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("n_positions", self.n_positions),
            ("n_embd", self.n_embd),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_kv_head", self.n_kv_head),
            ("n_inner", self.n_inner),
        ] {
            if v == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        // Far above any real model, low enough that size arithmetic cannot overflow: a config
        // beyond them is corrupt or hostile, and is refused before anything is allocated.
        for (name, v, max) in [
            ("vocab_size", self.vocab_size, 1 << 24),
            ("n_positions", self.n_positions, 1 << 24),
            ("n_embd", self.n_embd, 1 << 17),
            ("n_inner", self.n_inner, 1 << 19),
            ("n_layer", self.n_layer, 1 << 12),
            ("n_head", self.n_head, 1 << 12),
        ] {
            if v > max {
                return bad(format!("{name} {v} exceeds kiln's limit of {max}"));
            }
        }
        if self.sliding_window == Some(0) {
            return bad("sliding_window must be positive".into());
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return bad(format!("n_head {} does not divide n_embd {}", self.n_head, self.n_embd));
        }
        if !self.n_head.is_multiple_of(self.n_kv_head) {
            return bad(format!("n_kv_head {} does not divide n_head {}", self.n_kv_head, self.n_head));
        }
        if self.position == PositionKind::Rope && !self.head_dim().is_multiple_of(2) {
            return bad(format!("RoPE needs an even head dim, got {}", self.head_dim()));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} is not in [0, 1)", self.dropout));
        }
        if !(self.layer_norm_epsilon >= 0.0 && self.rope_theta > 0.0) {
            return bad("layer_norm_epsilon must be ≥ 0 and rope_theta > 0".into());
        }
        Ok(())
    }

    /// Parameter count from the shapes alone (llm.c's size table), equal to what
    /// [`super::Gpt::new`] allocates.
    pub fn num_params(&self) -> usize {
        let (c, v, f, l) = (self.n_embd, self.vocab_size, self.n_inner, self.n_layer);
        let d = self.head_dim();
        let b = |n: usize| if self.bias { n } else { 0 };
        let norm = c + if self.norm == NormKind::LayerNorm { b(c) } else { 0 };
        let qkv = (self.n_head + 2 * self.n_kv_head) * d;
        let attn = c * qkv + b(qkv) + self.n_head * d * c + b(c);
        let mlp = match self.mlp {
            MlpKind::Gelu => c * f + b(f) + f * c + b(c),
            MlpKind::SwiGlu => 3 * c * f,
        };
        let pos = if self.position == PositionKind::Learned { self.n_positions * c } else { 0 };
        let head = if self.tie_word_embeddings { 0 } else { v * c };
        v * c + pos + l * (2 * norm + attn + mlp) + norm + head
    }
}
