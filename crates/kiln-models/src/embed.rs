//! Sentence embeddings (Reimers & Gurevych 2019, "Sentence-BERT"): a [`Bert`] encoder, a pooling
//! of its last hidden state over each sentence's real tokens, and an optional L2 normalisation —
//! the pipeline a sentence-transformers model directory describes in `modules.json`.
//!
//! ```text
//! token ids (B,S), mask (B,S) ─ Bert ─▶ h (B,S,C) ─ pool over tokens with mask = 1 ─▶ e (B,C·k)
//!   mean:          Σₛ mₛhₛ / max(Σₛ mₛ, 1e-9)         cls: h₀
//!   max:           maxₛ (hₛ if mₛ = 1 else −1e9)        mean_sqrt_len: Σₛ mₛhₛ / √(Σₛ mₛ)
//! ─ normalise (when 2_Normalize is listed): e / max(‖e‖₂, 1e-12) ─▶ embedding
//! ```
//!
//! Tokenisation lives in `kiln-data` (`HfTokenizer`); this module takes token ids. Batches are
//! formed from sentences of similar length (sorted, longest first, as sentence-transformers
//! does), so little compute goes to padding; the padding mask is applied inside attention.

use crate::bert::Bert;
use kiln_core::{no_grad, DType, Device, Error, Result, Tensor};
use serde::Deserialize;
use std::path::{Path, PathBuf};

const OP: &str = "SentenceEmbedder";

fn bad(msg: String) -> Error {
    Error::Invalid { op: OP, msg }
}

/// How token vectors become one sentence vector (sentence-transformers' `pooling_mode_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The first token's vector (`[CLS]`).
    Cls,
    /// Element-wise maximum over real tokens.
    Max,
    /// Mean over real tokens.
    Mean,
    /// Sum over real tokens divided by √(token count).
    MeanSqrtLen,
}

/// `1_Pooling/config.json`.
#[derive(Deserialize)]
struct PoolingFile {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

/// One entry of `modules.json`.
#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// `sentence_bert_config.json`.
#[derive(Deserialize)]
struct StConfig {
    max_seq_length: Option<usize>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| bad(format!("{}: {e}", path.display())))
}

/// Reads a pooling config; the modes come out in sentence-transformers' concatenation order.
fn read_pooling(path: &Path) -> Result<Vec<Pooling>> {
    let p: PoolingFile = read_json(path)?;
    if p.pooling_mode_weightedmean_tokens || p.pooling_mode_lasttoken {
        return Err(bad(format!("{}: weighted-mean and last-token pooling are not supported", path.display())));
    }
    let modes: Vec<Pooling> = [
        (p.pooling_mode_cls_token, Pooling::Cls),
        (p.pooling_mode_max_tokens, Pooling::Max),
        (p.pooling_mode_mean_tokens, Pooling::Mean),
        (p.pooling_mode_mean_sqrt_len_tokens, Pooling::MeanSqrtLen),
    ]
    .into_iter()
    .filter_map(|(on, m)| on.then_some(m))
    .collect();
    if modes.is_empty() {
        return Err(bad(format!("{}: no pooling mode is enabled", path.display())));
    }
    Ok(modes)
}

/// Pools the last hidden state `hidden` (B, S, C) over the real tokens of `mask` (B, S; 1 for a
/// token, 0 for padding; any dtype) with each of `modes` (see the module docs), concatenating
/// the results: (B, C·modes.len()).
pub fn pool(hidden: &Tensor, mask: &Tensor, modes: &[Pooling]) -> Result<Tensor> {
    if hidden.rank() != 3 || mask.dims()[..] != hidden.dims()[..2] {
        return Err(Error::ShapeMismatch { op: "pool", lhs: hidden.dims().to_vec(), rhs: mask.dims().to_vec() });
    }
    let dev = hidden.device();
    let m = mask.to_dtype(hidden.dtype())?.unsqueeze(-1)?; // (B,S,1)
    let count = || -> Result<Tensor> {
        m.sum(&[1], false)?.maximum(&Tensor::full(&[], 1e-9, hidden.dtype(), dev)?)
        // (B,1)
    };
    let mut parts = Vec::with_capacity(modes.len());
    for mode in modes {
        parts.push(match mode {
            Pooling::Cls => hidden.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Max => hidden.add(&m.affine(1e9, -1e9)?)?.max(&[1], false)?,
            Pooling::Mean => hidden.mul(&m)?.sum(&[1], false)?.div(&count()?)?,
            Pooling::MeanSqrtLen => hidden.mul(&m)?.sum(&[1], false)?.div(&count()?.sqrt()?)?,
        });
    }
    match parts.as_slice() {
        [one] => Ok(one.clone()),
        _ => Tensor::cat(&parts.iter().collect::<Vec<_>>(), -1),
    }
}

/// `x / max(‖x‖₂, 1e-12)` along the last dim (PyTorch's `F.normalize`).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let eps = Tensor::full(&[], 1e-12, x.dtype(), x.device())?;
    x.div(&x.sqr()?.sum(&[-1], true)?.sqrt()?.maximum(&eps)?)
}

/// A sentence-transformers model: encoder, pooling, optional normalisation.
#[derive(Clone, Debug)]
pub struct SentenceEmbedder {
    /// The encoder.
    pub model: Bert,
    /// Pooling modes, concatenated in this order.
    pub pooling: Vec<Pooling>,
    /// L2-normalise the pooled vectors.
    pub normalize: bool,
    /// Longest token sequence the model was set up for (`sentence_bert_config.json`'s
    /// `max_seq_length`, else `max_position_embeddings`); tokenizers should truncate to it.
    pub max_seq_length: usize,
    /// Directory of the encoder checkpoint (where its `tokenizer.json` lives); empty when the
    /// embedder was not loaded from disk.
    pub model_dir: PathBuf,
}

impl SentenceEmbedder {
    /// An embedder from its parts; `max_seq_length` is `max_position_embeddings`.
    pub fn new(model: Bert, pooling: Vec<Pooling>, normalize: bool) -> SentenceEmbedder {
        let max_seq_length = model.cfg.max_position_embeddings;
        SentenceEmbedder { model, pooling, normalize, max_seq_length, model_dir: PathBuf::new() }
    }

    /// Loads a sentence-transformers directory: `modules.json` lists a `Transformer` (the BERT
    /// checkpoint, in the module's `path`, usually the directory itself), a `Pooling` (its
    /// `config.json`) and optionally `Normalize`. Without `modules.json` the directory is a
    /// plain BERT checkpoint, pooled by mean, not normalised. Other module types (`Dense`, …)
    /// are an error naming the type.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<SentenceEmbedder> {
        let modules_path = dir.join("modules.json");
        let (mut model_dir, mut pooling, mut normalize) = (None, None, false);
        if modules_path.is_file() {
            let modules: Vec<ModuleEntry> = read_json(&modules_path)?;
            for m in modules {
                let sub = dir.join(&m.path);
                match m.kind.rsplit('.').next().unwrap_or_default() {
                    "Transformer" if model_dir.is_none() => model_dir = Some(sub),
                    "Pooling" if pooling.is_none() => pooling = Some(read_pooling(&sub.join("config.json"))?),
                    "Normalize" => normalize = true,
                    _ => {
                        return Err(bad(format!(
                            "{}: module {} (type {}) is not supported (a BERT Transformer, then Pooling, then \
                             optionally Normalize)",
                            modules_path.display(),
                            m.path,
                            m.kind
                        )))
                    }
                }
            }
            if model_dir.is_none() || pooling.is_none() {
                return Err(bad(format!("{}: needs a Transformer and a Pooling module", modules_path.display())));
            }
        }
        let model_dir = model_dir.unwrap_or_else(|| dir.to_path_buf());
        let model = Bert::from_dir(&model_dir, device)?;
        let mut e = SentenceEmbedder::new(model, pooling.unwrap_or_else(|| vec![Pooling::Mean]), normalize);
        e.model_dir = model_dir.clone();
        let st = model_dir.join("sentence_bert_config.json");
        if st.is_file() {
            if let Some(n) = read_json::<StConfig>(&st)?.max_seq_length {
                e.max_seq_length = n.clamp(1, e.max_seq_length);
            }
        }
        Ok(e)
    }

    /// Width of an embedding: C per pooling mode.
    pub fn dim(&self) -> usize {
        self.model.hidden_size() * self.pooling.len()
    }

    /// Embeddings (B, dim) of a padded batch: `ids` (B, S) `I64`, `mask` (B, S) with 1 for
    /// tokens and 0 for padding.
    pub fn embed_ids(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let hidden = self.model.forward(ids, Some(mask), None)?;
        let pooled = pool(&hidden, mask, &self.pooling)?;
        if self.normalize {
            l2_normalize(&pooled)
        } else {
            Ok(pooled)
        }
    }

    /// Embeds token sequences (each with its special tokens, already truncated), `batch_size` at
    /// a time, returning one vector per sequence in input order. Sequences are sorted by length
    /// so each batch is padded only to its own longest sequence.
    pub fn embed_sequences(&self, seqs: &[Vec<u32>], batch_size: usize) -> Result<Vec<Vec<f32>>> {
        if batch_size == 0 {
            return Err(bad("batch size must be positive".into()));
        }
        let limit = self.model.cfg.max_position_embeddings;
        if let Some((i, s)) = seqs.iter().enumerate().find(|(_, s)| s.len() > limit) {
            return Err(bad(format!("sequence {i} has {} tokens, more than max_position_embeddings {limit}", s.len())));
        }
        let mut order: Vec<usize> = (0..seqs.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(seqs[i].len()));
        let pad = self.model.cfg.pad_token_id as i64;
        let device = self.model.embeddings.word_embeddings.weight.device().clone();
        let mut out = vec![Vec::new(); seqs.len()];
        no_grad(|| -> Result<Vec<Vec<f32>>> {
            for chunk in order.chunks(batch_size) {
                let s = chunk.iter().map(|&i| seqs[i].len()).max().unwrap_or(0).max(1);
                let (mut ids, mut mask) = (vec![pad; chunk.len() * s], vec![0i64; chunk.len() * s]);
                for (row, &i) in chunk.iter().enumerate() {
                    for (j, &t) in seqs[i].iter().enumerate() {
                        ids[row * s + j] = t as i64;
                        mask[row * s + j] = 1;
                    }
                }
                let ids = Tensor::from_vec(ids, &[chunk.len(), s], &device)?;
                let mask = Tensor::from_vec(mask, &[chunk.len(), s], &device)?;
                let e = self.embed_ids(&ids, &mask)?.to_dtype(DType::F32)?.to_vec::<f32>()?;
                let dim = e.len() / chunk.len().max(1);
                for (row, &i) in chunk.iter().enumerate() {
                    out[i] = e[row * dim..(row + 1) * dim].to_vec();
                }
            }
            Ok(out)
        })
    }
}
