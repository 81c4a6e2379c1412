//! BERT encoders (Devlin et al. 2019; book ch. 14 "encoder-only models") from one
//! [`BertConfig`], loadable from Hugging Face checkpoints (see [`Bert::from_dir`]).
//!
//! ```text
//! ids, token types (B,S) ─ word + position + token-type embeddings ─ LayerNorm ─▶ x (B,S,C)
//!   repeat L (post-LN):  x = LN₁(x + W_o·Attn(x) + b_o)       Attn: softmax(QKᵀ/√D + M) V per head,
//!                                                               M (B,1,1,S) = 0 (token) / −∞ (padding)
//!                        x = LN₂(x + W₂·act(W₁x + b₁) + b₂)
//! last hidden state x (B,S,C);  pooler: tanh(W_p·x[:, 0] + b_p) (B,C)
//! ```
//!
//! The query, key and value projections are stored as one fused (3C, C) weight so a layer does
//! one large GEMM for all three; the heads are read straight from the packed (B, S, 3C) output by
//! the fused attention kernel, which also applies the padding mask. HF's separate
//! `query`/`key`/`value` tensors are row blocks of it (see [`Bert::hf_weight_table`]).
//! Inference only: dropout is never applied.

mod config;
mod load;

pub use config::{BertConfig, HiddenAct};
pub use load::read_checkpoint;

use kiln_core::backend::CmpOp;
use kiln_core::module::{join, Module};
use kiln_core::ops::AttentionOpts;
use kiln_core::{DType, Device, Error, Result, Tensor};
use kiln_nn::norm::LayerNorm;
use kiln_nn::{Embedding, Init, Linear};

/// BERT's initialisation: N(0, 0.02²) weights, zero biases, unit LayerNorm gains.
const INIT_STD: f64 = 0.02;

/// A weight of `shape`: N(0, 0.02²) when `random`, zeros otherwise (to be overwritten by a
/// checkpoint, without drawing random numbers).
fn weight(shape: &[usize], random: bool, seed: u64, device: &Device) -> Result<Tensor> {
    let init = if random { Init::Normal { std: INIT_STD } } else { Init::Zeros };
    init.make(shape, seed, device)
}

fn linear(d_in: usize, d_out: usize, random: bool, seed: u64, device: &Device) -> Result<Linear> {
    Ok(Linear {
        weight: weight(&[d_out, d_in], random, seed, device)?,
        bias: Some(Init::Zeros.make(&[d_out], 0, device)?),
        quant: None,
        calibration: None,
    })
}

/// Word, absolute-position and token-type embeddings, summed and normalised.
///
/// # Shapes
/// `word_embeddings` (V, C), `position_embeddings` (P, C), `token_type_embeddings` (T_types, C);
/// ids (B, S) → (B, S, C).
#[derive(Clone, Debug)]
pub struct BertEmbeddings {
    /// Token table (V, C).
    pub word_embeddings: Embedding,
    /// Learned absolute positions (P, C).
    pub position_embeddings: Embedding,
    /// Segment table (T_types, C).
    pub token_type_embeddings: Embedding,
    /// Normalises the sum.
    pub layer_norm: LayerNorm,
}

impl BertEmbeddings {
    fn new(cfg: &BertConfig, random: bool, seed: u64, device: &Device) -> Result<BertEmbeddings> {
        let c = cfg.hidden_size;
        let table = |rows: usize, s: u64| weight(&[rows, c], random, s, device).map(Embedding::from_weight);
        Ok(BertEmbeddings {
            word_embeddings: table(cfg.vocab_size, seed)?,
            position_embeddings: table(cfg.max_position_embeddings, seed.wrapping_add(1))?,
            token_type_embeddings: table(cfg.type_vocab_size, seed.wrapping_add(2))?,
            layer_norm: LayerNorm::new(c, true, cfg.layer_norm_eps, device)?,
        })
    }

    /// `LN(word[ids] + position[0..S] + token_type[types])`; types default to 0 everywhere.
    pub fn forward(&self, ids: &Tensor, token_type_ids: Option<&Tensor>) -> Result<Tensor> {
        let s = ids.dim(1)?;
        let x = self.word_embeddings.forward(ids)?; // (B,S,C)
        let x = x.add(&self.position_embeddings.weight.narrow(0, 0, s)?)?; // + (S,C)
        let x = match token_type_ids {
            Some(tt) => x.add(&self.token_type_embeddings.forward(tt)?)?,
            None => x.add(&self.token_type_embeddings.weight.narrow(0, 0, 1)?)?, // + (1,C)
        };
        self.layer_norm.forward(&x)
    }
}

impl Module for BertEmbeddings {
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.word_embeddings.visit_params(&join(prefix, "word_embeddings"), f);
        self.position_embeddings.visit_params(&join(prefix, "position_embeddings"), f);
        self.token_type_embeddings.visit_params(&join(prefix, "token_type_embeddings"), f);
        self.layer_norm.visit_params(&join(prefix, "LayerNorm"), f);
    }
}

/// One post-LN encoder layer: bidirectional self-attention, then the feed-forward block, each
/// followed by residual + LayerNorm.
///
/// # Shapes
/// `qkv` (3C, C); `attn_out` (C, C); `intermediate` (F, C); `output` (C, F); x (B, S, C) → (B, S, C).
#[derive(Clone, Debug)]
pub struct BertLayer {
    /// Fused query/key/value projection C → 3C: rows `[0, C)` query, `[C, 2C)` key, `[2C, 3C)` value.
    pub qkv: Linear,
    /// Attention output projection (`attention.output.dense`).
    pub attn_out: Linear,
    /// Norm after the attention residual (`attention.output.LayerNorm`).
    pub attn_norm: LayerNorm,
    /// First feed-forward projection C → F (`intermediate.dense`).
    pub intermediate: Linear,
    /// Second feed-forward projection F → C (`output.dense`).
    pub output: Linear,
    /// Norm after the feed-forward residual (`output.LayerNorm`).
    pub output_norm: LayerNorm,
}

impl BertLayer {
    fn new(cfg: &BertConfig, random: bool, seed: u64, device: &Device) -> Result<BertLayer> {
        let (c, f, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        Ok(BertLayer {
            qkv: linear(c, 3 * c, random, seed, device)?,
            attn_out: linear(c, c, random, seed.wrapping_add(1), device)?,
            attn_norm: LayerNorm::new(c, true, eps, device)?,
            intermediate: linear(c, f, random, seed.wrapping_add(2), device)?,
            output: linear(f, c, random, seed.wrapping_add(3), device)?,
            output_norm: LayerNorm::new(c, true, eps, device)?,
        })
    }

    /// `a = LN₁(x + attn_out(Attn(x)))`, then `LN₂(a + output(act(intermediate(a))))`; `bias` is
    /// the additive (B, 1, 1, S) padding mask.
    fn forward(&self, x: &Tensor, heads: usize, act: HiddenAct, bias: Option<&Tensor>) -> Result<Tensor> {
        let qkv = self.qkv.forward(x)?; // (B,S,3C)
        let ctx = Tensor::packed_attention(&qkv, heads, heads, bias, &AttentionOpts::new())?; // (B,S,C)
        let a = self.attn_norm.forward(&self.attn_out.forward(&ctx)?.add(x)?)?;
        let h = act.activation().apply(&self.intermediate.forward(&a)?)?;
        self.output_norm.forward(&self.output.forward(&h)?.add(&a)?)
    }
}

impl Module for BertLayer {
    /// kiln names: `attention.self.qkv.{weight,bias}` (fused), the rest as in HF.
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.qkv.visit_params(&join(prefix, "attention.self.qkv"), f);
        self.attn_out.visit_params(&join(prefix, "attention.output.dense"), f);
        self.attn_norm.visit_params(&join(prefix, "attention.output.LayerNorm"), f);
        self.intermediate.visit_params(&join(prefix, "intermediate.dense"), f);
        self.output.visit_params(&join(prefix, "output.dense"), f);
        self.output_norm.visit_params(&join(prefix, "output.LayerNorm"), f);
    }
}

/// The additive attention mask of a padded batch: `attention_mask` (B, S) with 1 (or any
/// non-zero) for real tokens and 0 for padding, of any dtype → (B, 1, 1, S) `F32` holding 0 for
/// tokens and −∞ for padding, so `softmax(QKᵀ/√D + M)` gives padded keys weight exactly 0.
pub fn attention_bias(attention_mask: &Tensor) -> Result<Tensor> {
    if attention_mask.rank() != 2 {
        return Err(Error::BadShape {
            op: "attention_bias",
            shape: attention_mask.dims().to_vec(),
            msg: "the attention mask must be (B, S)".into(),
        });
    }
    let (b, s) = (attention_mask.dims()[0], attention_mask.dims()[1]);
    let dev = attention_mask.device();
    let pad = attention_mask.to_dtype(DType::F32)?.cmp_scalar(0.0, CmpOp::Eq)?; // U8 (B,S)
    let ninf = Tensor::full(&[], f64::NEG_INFINITY, DType::F32, dev)?;
    let zero = Tensor::zeros(&[], DType::F32, dev)?;
    pad.where_cond(&ninf, &zero)?.reshape(&[b, 1, 1, s])
}

/// A BERT encoder with an optional pooler.
#[derive(Clone, Debug)]
pub struct Bert {
    /// Its configuration.
    pub cfg: BertConfig,
    /// The embedding block.
    pub embeddings: BertEmbeddings,
    /// The encoder layers.
    pub layers: Vec<BertLayer>,
    /// `pooler.dense` (C, C) when the checkpoint has one.
    pub pooler: Option<Linear>,
}

impl Bert {
    /// A randomly initialised model (BERT's init, N(0, 0.02²); `seed` makes it reproducible),
    /// with a pooler when `pooler`.
    pub fn new(cfg: BertConfig, pooler: bool, seed: u64, device: &Device) -> Result<Bert> {
        Bert::build(cfg, pooler, true, seed, device)
    }

    /// A model of `cfg`'s shape: random (`random`) or all-zero weights.
    fn build(cfg: BertConfig, pooler: bool, random: bool, seed: u64, device: &Device) -> Result<Bert> {
        cfg.validate()?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| BertLayer::new(&cfg, random, seed.wrapping_add(10 + 10 * i as u64), device))
            .collect::<Result<_>>()?;
        let c = cfg.hidden_size;
        let pooler = if pooler { Some(linear(c, c, random, seed.wrapping_add(5), device)?) } else { None };
        Ok(Bert { embeddings: BertEmbeddings::new(&cfg, random, seed, device)?, layers, pooler, cfg })
    }

    /// Width C of the hidden states.
    pub fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }

    /// The last hidden state (B, S, C) for `ids` (B, S) of dtype `I64`.
    ///
    /// `attention_mask` (B, S), any dtype: 1 for real tokens, 0 for padding (turned into the
    /// additive mask of [`attention_bias`]); `None` attends to every position. Padded positions
    /// still get (meaningless) hidden states; pool with the mask. `token_type_ids` (B, S) `I64`
    /// defaults to all 0. Positions are `0..S` in every row (HF's absolute positions).
    pub fn forward(
        &self,
        ids: &Tensor,
        attention_mask: Option<&Tensor>,
        token_type_ids: Option<&Tensor>,
    ) -> Result<Tensor> {
        if ids.rank() != 2 {
            return Err(Error::BadShape {
                op: "Bert::forward",
                shape: ids.dims().to_vec(),
                msg: "ids must be (B, S)".into(),
            });
        }
        let s = ids.dims()[1];
        if s > self.cfg.max_position_embeddings {
            return Err(Error::Invalid {
                op: "Bert::forward",
                msg: format!("{s} tokens exceed max_position_embeddings {}", self.cfg.max_position_embeddings),
            });
        }
        for (what, t) in [("attention_mask", attention_mask), ("token_type_ids", token_type_ids)] {
            if let Some(t) = t.filter(|t| t.dims() != ids.dims()) {
                return Err(Error::Invalid {
                    op: "Bert::forward",
                    msg: format!("{what} has shape {:?}, the ids {:?}", t.dims(), ids.dims()),
                });
            }
        }
        let bias = attention_mask.map(attention_bias).transpose()?;
        let mut x = self.embeddings.forward(ids, token_type_ids)?;
        for layer in &self.layers {
            x = layer.forward(&x, self.cfg.num_attention_heads, self.cfg.hidden_act, bias.as_ref())?;
        }
        Ok(x)
    }

    /// HF's `pooler_output`: `tanh(pooler(hidden[:, 0]))` (B, C) from the last hidden state
    /// (B, S, C). Fails when the model has no pooler.
    pub fn pooler_output(&self, hidden: &Tensor) -> Result<Tensor> {
        let pooler = self.pooler.as_ref().ok_or_else(|| Error::Invalid {
            op: "Bert::pooler_output",
            msg: "this model has no pooler (the checkpoint has no pooler.dense)".into(),
        })?;
        if hidden.rank() != 3 {
            return Err(Error::BadShape {
                op: "Bert::pooler_output",
                shape: hidden.dims().to_vec(),
                msg: "expected the (B, S, C) hidden state".into(),
            });
        }
        pooler.forward(&hidden.narrow(1, 0, 1)?.squeeze(1)?)?.tanh()
    }
}

impl Module for Bert {
    /// kiln names (HF's, with each layer's fused `attention.self.qkv`): `embeddings.…`,
    /// `encoder.layer.{i}.…`, `pooler.dense.…`.
    fn visit_params(&self, prefix: &str, f: &mut dyn FnMut(&str, &Tensor)) {
        self.embeddings.visit_params(&join(prefix, "embeddings"), f);
        self.layers.visit_params(&join(prefix, "encoder.layer"), f);
        self.pooler.visit_params(&join(prefix, "pooler.dense"), f);
    }
}
