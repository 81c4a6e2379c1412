//! [`BertConfig`]: the shape of a BERT encoder, read from a Hugging Face `config.json` with HF's
//! key names (`hidden_size`, `num_hidden_layers`, …). Keys kiln does not use (dropout rates,
//! `initializer_range`, `architectures`, …) are ignored; keys HF gives defaults to get the same
//! defaults here.

use kiln_core::{Error, Result};
use kiln_nn::ffn::Activation;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The feed-forward non-linearity (`hidden_act`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HiddenAct {
    /// Exact GELU, `x·Φ(x) = ½x(1 + erf(x/√2))` (BERT, MiniLM).
    #[serde(rename = "gelu")]
    Gelu,
    /// GELU's tanh approximation, `½x(1 + tanh(√(2/π)(x + 0.044715x³)))`.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh", alias = "gelu_fast")]
    GeluNew,
    /// `max(0, x)`.
    #[serde(rename = "relu")]
    Relu,
}

impl HiddenAct {
    /// The kiln-nn activation that computes it.
    pub fn activation(self) -> Activation {
        match self {
            HiddenAct::Gelu => Activation::Gelu,
            HiddenAct::GeluNew => Activation::GeluTanh,
            HiddenAct::Relu => Activation::Relu,
        }
    }
}

fn default_act() -> HiddenAct {
    HiddenAct::Gelu
}
fn default_eps() -> f64 {
    1e-12
}
fn default_max_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_position_type() -> String {
    "absolute".into()
}

/// A BERT encoder's hyper-parameters, with Hugging Face's `BertConfig` key names.
///
/// The five shape keys are required; the others default to HF's values (GELU, ε = 1e-12, 512
/// positions, 2 token types, pad id 0, absolute positions).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    /// Vocabulary size V (rows of `word_embeddings`).
    pub vocab_size: usize,
    /// Width C.
    pub hidden_size: usize,
    /// Encoder layers L.
    pub num_hidden_layers: usize,
    /// Attention heads H (divides C; head dim D = C/H).
    pub num_attention_heads: usize,
    /// Width of the feed-forward block (usually 4C).
    pub intermediate_size: usize,
    /// Feed-forward non-linearity.
    #[serde(default = "default_act")]
    pub hidden_act: HiddenAct,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Rows of the learned absolute position table: the longest input.
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    /// Rows of the token-type (segment) table.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// Id used to pad batches (also the padding id of the tokenizer).
    #[serde(default)]
    pub pad_token_id: usize,
    /// Only `"absolute"` (learned positions) is supported.
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    /// HF's model family; when present it must be `"bert"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_type: Option<String>,
}

impl BertConfig {
    /// A config with HF's defaults for everything but the shape.
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        intermediate_size: usize,
    ) -> BertConfig {
        BertConfig {
            vocab_size,
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            intermediate_size,
            hidden_act: HiddenAct::Gelu,
            layer_norm_eps: default_eps(),
            max_position_embeddings: default_max_positions(),
            type_vocab_size: default_type_vocab(),
            pad_token_id: 0,
            position_embedding_type: default_position_type(),
            model_type: Some("bert".into()),
        }
    }

    /// Reads and validates a Hugging Face `config.json`; errors name the file and the problem.
    pub fn from_file(path: &Path) -> Result<BertConfig> {
        let bad = |msg: String| Error::Invalid { op: "BertConfig", msg: format!("{}: {msg}", path.display()) };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let cfg: BertConfig = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        cfg.validate().map_err(|e| bad(e.to_string()))?;
        Ok(cfg)
    }

    /// Head dim D = C / H.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Checks every size and ratio; the error names the offending key.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::Invalid { op: "BertConfig", msg });
        if let Some(t) = self.model_type.as_deref().filter(|t| *t != "bert") {
            return bad(format!("model_type {t:?} is not supported (BERT encoders only)"));
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
            ("type_vocab_size", self.type_vocab_size),
        ] {
            if v == 0 {
                return bad(format!("{name} must be positive"));
            }
            // far above any real encoder, low enough that size arithmetic cannot overflow
            let max = if name == "num_hidden_layers" || name == "num_attention_heads" { 1 << 12 } else { 1 << 24 };
            if v > max {
                return bad(format!("{name} {v} exceeds kiln's limit of {max}"));
            }
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "num_attention_heads {} does not divide hidden_size {}",
                self.num_attention_heads, self.hidden_size
            ));
        }
        if self.pad_token_id >= self.vocab_size {
            return bad(format!("pad_token_id {} is outside the vocabulary of {}", self.pad_token_id, self.vocab_size));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps >= 0.0) {
            return bad(format!("layer_norm_eps {} must be finite and ≥ 0", self.layer_norm_eps));
        }
        if self.position_embedding_type != "absolute" {
            return bad(format!(
                "position_embedding_type {:?} is not supported (only \"absolute\")",
                self.position_embedding_type
            ));
        }
        Ok(())
    }

    /// Parameter count from the shapes alone (with the pooler when `pooler`): embeddings
    /// `(V + P + T_types)·C + 2C`, per layer `4C² + 4C` (attention) `+ 2C` (norm)
    /// `+ 2·C·F + F + C` (feed-forward) `+ 2C` (norm), pooler `C² + C`.
    pub fn num_params(&self, pooler: bool) -> usize {
        let (c, f) = (self.hidden_size, self.intermediate_size);
        let emb = (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * c + 2 * c;
        let layer = 4 * c * c + 4 * c + 2 * c + 2 * c * f + f + c + 2 * c;
        emb + self.num_hidden_layers * layer + if pooler { c * c + c } else { 0 }
    }
}
