//! Hugging Face decoder checkpoints → [`Gpt`]: `config.json` + `model.safetensors` (or shards
//! listed in `model.safetensors.index.json`) of the GPT-2 (`GPT2LMHeadModel`, `GPT2Model`) and
//! LLaMA/Mistral (`LlamaForCausalLM`, `MistralForCausalLM`) families, mapped by name.
//!
//! Weight names as tables: each kiln parameter is built from HF tensors by one [`Source`] rule.
//! GPT-2 stores its projections as `Conv1D` weights (in, out), so they are transposed to kiln's
//! `Linear` layout (out, in). LLaMA keeps q/k/v separate; kiln's fused `c_attn` is their
//! concatenation along the output dim, `[W_q; W_k; W_v]` ((H + 2·Hkv)·D, C). Both use HF's RoPE
//! convention (rotate-half pairing of dims i and i + D/2), which is kiln's.

use super::{Gpt, GptConfig, MlpKind, NormKind, PositionKind};
use kiln_core::module::Module;
use kiln_core::{safetensors, DType, Device, Error, Result, Tensor};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

fn bad(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Invalid { op: "hf checkpoint", msg: format!("{}: {msg}", path.display()) }
}

/// The architectures [`GptConfig::from_hf`] understands, by `model_type`.
pub const HF_MODEL_TYPES: &[&str] = &["gpt2", "llama", "mistral"];

impl GptConfig {
    /// The kiln config of an HF `config.json` (as parsed JSON). GPT-2 keys: `vocab_size`,
    /// `n_positions`, `n_embd`, `n_layer`, `n_head`, `n_inner` (null = 4C), `layer_norm_epsilon`,
    /// `activation_function` (`gelu_new`); LLaMA/Mistral keys: `hidden_size`,
    /// `num_hidden_layers`, `num_attention_heads`, `num_key_value_heads`, `intermediate_size`,
    /// `max_position_embeddings`, `rms_norm_eps`, `rope_theta`, `tie_word_embeddings`,
    /// `hidden_act` (`silu`), and `rope_theta` (transformers 4) or `rope_parameters.rope_theta`
    /// (transformers 5), and Mistral's `sliding_window`. Anything kiln would compute differently
    /// is an error naming the key.
    pub fn from_hf(cfg: &Value) -> Result<GptConfig> {
        let bad = |msg: String| Error::Invalid { op: "GptConfig::from_hf", msg };
        let kind = cfg.get("model_type").and_then(Value::as_str).unwrap_or("");
        let int = |k: &str| -> Result<usize> {
            cfg.get(k).and_then(Value::as_u64).map(|v| v as usize).ok_or_else(|| bad(format!("missing integer {k:?}")))
        };
        let float = |k: &str, default: f64| cfg.get(k).and_then(Value::as_f64).unwrap_or(default);
        let text = |k: &str, default: &'static str| cfg.get(k).and_then(Value::as_str).unwrap_or(default).to_string();
        let out = match kind {
            "gpt2" => {
                let act = text("activation_function", "gelu_new");
                if !["gelu_new", "gelu_pytorch_tanh"].contains(&act.as_str()) {
                    return Err(bad(format!("activation_function {act:?} (kiln's GPT-2 MLP is gelu_new)")));
                }
                let mut c = GptConfig::gpt2(
                    int("vocab_size")?,
                    int("n_positions")?,
                    int("n_embd")?,
                    int("n_layer")?,
                    int("n_head")?,
                );
                if let Some(n) = cfg.get("n_inner").and_then(Value::as_u64) {
                    c.n_inner = n as usize;
                }
                c.layer_norm_epsilon = float("layer_norm_epsilon", 1e-5);
                c.tie_word_embeddings = cfg.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(true);
                c
            }
            "llama" | "mistral" => {
                let act = text("hidden_act", "silu");
                if act != "silu" {
                    return Err(bad(format!("hidden_act {act:?} (kiln's SwiGLU gate is silu)")));
                }
                if cfg.get("rope_scaling").is_some_and(|v| !v.is_null()) {
                    return Err(bad("rope_scaling is not supported yet".into()));
                }
                // transformers ≥ 5 writes `rope_parameters: {rope_theta, rope_type}`; 4.x `rope_theta`
                let rope = cfg.get("rope_parameters").filter(|v| !v.is_null());
                if let Some(kind) = rope.and_then(|r| r.get("rope_type")).and_then(Value::as_str) {
                    if kind != "default" {
                        return Err(bad(format!("rope_parameters.rope_type {kind:?} is not supported yet")));
                    }
                }
                let theta = rope
                    .and_then(|r| r.get("rope_theta"))
                    .and_then(Value::as_f64)
                    .unwrap_or_else(|| float("rope_theta", 10_000.0));
                for key in ["attention_bias", "mlp_bias"] {
                    if cfg.get(key).and_then(Value::as_bool) == Some(true) {
                        return Err(bad(format!("{key} = true is not supported")));
                    }
                }
                let heads = int("num_attention_heads")?;
                let mut c = GptConfig::llama(
                    int("vocab_size")?,
                    int("max_position_embeddings")?,
                    int("hidden_size")?,
                    int("num_hidden_layers")?,
                    heads,
                    cfg.get("num_key_value_heads").and_then(Value::as_u64).map_or(heads, |v| v as usize),
                    int("intermediate_size")?,
                );
                if let Some(d) = cfg.get("head_dim").and_then(Value::as_u64) {
                    if d as usize != c.head_dim() {
                        return Err(bad(format!("head_dim {d} ≠ hidden_size / num_attention_heads")));
                    }
                }
                // Mistral's sliding window: a token attends to itself and the w − 1 tokens before
                // it (a window as long as the context changes nothing and is dropped).
                if let Some(w) = cfg.get("sliding_window").and_then(Value::as_u64) {
                    if w == 0 {
                        return Err(bad("sliding_window must be positive".into()));
                    }
                    c.sliding_window = Some(w as usize).filter(|&w| w < c.n_positions);
                }
                c.layer_norm_epsilon = float("rms_norm_eps", 1e-6);
                c.rope_theta = theta;
                c.tie_word_embeddings = cfg.get("tie_word_embeddings").and_then(Value::as_bool).unwrap_or(false);
                c
            }
            other => {
                return Err(bad(format!("unknown model_type {other:?} (kiln reads {})", HF_MODEL_TYPES.join(", "))));
            }
        };
        out.validate()?;
        Ok(out)
    }
}

/// How one kiln parameter is made from HF tensors.
#[derive(Debug)]
enum Source {
    /// Taken as is.
    Copy(String),
    /// A `Conv1D` weight (in, out), transposed to (out, in).
    Transpose(String),
    /// Concatenated along dim 0 (q, k, v → c_attn).
    Cat(Vec<String>),
}

/// The name table: kiln parameter name → HF source, for layer-independent names and per layer.
fn name_table(cfg: &GptConfig) -> Vec<(String, Source)> {
    use Source::*;
    let mut t: Vec<(String, Source)> = Vec::new();
    let gpt2 = cfg.norm == NormKind::LayerNorm && cfg.position == PositionKind::Learned;
    let s = |x: &str| x.to_string();
    if gpt2 {
        t.push((s("transformer.wte.weight"), Copy(s("transformer.wte.weight"))));
        t.push((s("transformer.wpe.weight"), Copy(s("transformer.wpe.weight"))));
        for i in 0..cfg.n_layer {
            let (k, h) = (format!("transformer.h.{i}"), format!("transformer.h.{i}"));
            for n in ["ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias"] {
                t.push((format!("{k}.{n}"), Copy(format!("{h}.{n}"))));
            }
            for n in ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"] {
                t.push((format!("{k}.{n}.weight"), Transpose(format!("{h}.{n}.weight"))));
                t.push((format!("{k}.{n}.bias"), Copy(format!("{h}.{n}.bias"))));
            }
        }
        t.push((s("transformer.ln_f.weight"), Copy(s("transformer.ln_f.weight"))));
        t.push((s("transformer.ln_f.bias"), Copy(s("transformer.ln_f.bias"))));
    } else {
        t.push((s("transformer.wte.weight"), Copy(s("model.embed_tokens.weight"))));
        for i in 0..cfg.n_layer {
            let (k, h) = (format!("transformer.h.{i}"), format!("model.layers.{i}"));
            t.push((format!("{k}.ln_1.weight"), Copy(format!("{h}.input_layernorm.weight"))));
            let qkv = ["q_proj", "k_proj", "v_proj"].map(|p| format!("{h}.self_attn.{p}.weight"));
            t.push((format!("{k}.attn.c_attn.weight"), Cat(qkv.to_vec())));
            t.push((format!("{k}.attn.c_proj.weight"), Copy(format!("{h}.self_attn.o_proj.weight"))));
            t.push((format!("{k}.ln_2.weight"), Copy(format!("{h}.post_attention_layernorm.weight"))));
            for p in ["gate_proj", "up_proj", "down_proj"] {
                t.push((format!("{k}.mlp.{p}.weight"), Copy(format!("{h}.mlp.{p}.weight"))));
            }
        }
        t.push((s("transformer.ln_f.weight"), Copy(s("model.norm.weight"))));
    }
    if !cfg.tie_word_embeddings {
        t.push((s("lm_head.weight"), Copy(s("lm_head.weight"))));
    }
    debug_assert!(cfg.mlp == if gpt2 { MlpKind::Gelu } else { MlpKind::SwiGlu });
    t
}

/// Every tensor of a checkpoint directory: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists (each file read once).
pub fn load_hf_tensors(dir: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<std::path::PathBuf> = if single.is_file() {
        vec![single]
    } else if index.is_file() {
        let text = std::fs::read_to_string(&index).map_err(|e| bad(&index, e))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| bad(&index, format!("not JSON: {e}")))?;
        let map = v.get("weight_map").and_then(Value::as_object).ok_or_else(|| bad(&index, "no weight_map"))?;
        let mut shards: Vec<String> = Vec::new();
        for (name, f) in map {
            let f = f.as_str().ok_or_else(|| bad(&index, format!("{name}: shard is not a file name")))?;
            if f.contains('/') || f.contains('\\') || f.starts_with('.') {
                return Err(bad(&index, format!("{name}: shard {f:?} is outside the directory")));
            }
            if !shards.iter().any(|s| s == f) {
                shards.push(f.to_string());
            }
        }
        shards.sort();
        shards.into_iter().map(|f| dir.join(f)).collect()
    } else {
        return Err(bad(dir, "neither model.safetensors nor model.safetensors.index.json"));
    };
    let mut out = HashMap::new();
    for f in files {
        for (name, t) in safetensors::load(&f, device)?.0 {
            if out.insert(name.clone(), t).is_some() {
                return Err(bad(&f, format!("tensor {name} appears in two shards")));
            }
        }
    }
    Ok(out)
}

impl Gpt {
    /// Loads an HF checkpoint directory (`config.json` + safetensors weights); weights in f16 or
    /// bf16 are converted to f32.
    pub fn from_hf_dir(dir: &Path, device: &Device) -> Result<Gpt> {
        let cfg_path = dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| bad(&cfg_path, e))?;
        let v: Value = serde_json::from_str(&text).map_err(|e| bad(&cfg_path, format!("not JSON: {e}")))?;
        let cfg = GptConfig::from_hf(&v).map_err(|e| bad(&cfg_path, e))?;
        let tensors = load_hf_tensors(dir, device)?;
        Gpt::from_hf_tensors(cfg, &tensors).map_err(|e| bad(dir, e))
    }

    /// Builds the model of `cfg` from HF-named `tensors` (GPT-2 names with or without the
    /// `transformer.` prefix). Missing or mis-shaped tensors are errors naming both shapes.
    pub fn from_hf_tensors(cfg: GptConfig, tensors: &HashMap<String, Tensor>) -> Result<Gpt> {
        let device = tensors_device(tensors)?.clone();
        cfg.validate()?;
        check_size(cfg.num_params(), tensors)?;
        let model = {
            // every parameter is overwritten below: skip drawing random numbers
            let _skip = kiln_nn::SkipInitGuard::new();
            Gpt::new(cfg, 0, &device)?
        };
        load_params(&model, |name: &str| {
            let t = tensors
                .get(name)
                .or_else(|| name.strip_prefix("transformer.").and_then(|n| tensors.get(n)))
                .ok_or_else(|| Error::Invalid { op: "hf checkpoint", msg: format!("missing tensor {name}") })?;
            if t.dtype() == DType::F32 {
                Ok(t.clone())
            } else {
                t.to_dtype(DType::F32)
            }
        })?;
        Ok(model)
    }
}

/// Fills every parameter `model` has (quantized matrices excluded: they are not parameters)
/// from the HF-named tensors `get` returns (f32), through the name table (transposing GPT-2's
/// Conv1D weights, concatenating q/k/v), checking each shape.
pub(crate) fn load_params(model: &Gpt, get: impl Fn(&str) -> Result<Tensor>) -> Result<()> {
    let table: HashMap<String, Source> = name_table(&model.cfg).into_iter().collect();
    for (name, p) in model.named_parameters() {
        let src = table.get(&name).ok_or_else(|| Error::Invalid {
            op: "hf checkpoint",
            msg: format!("no HF source for kiln parameter {name}"),
        })?;
        let w = match src {
            Source::Copy(n) => get(n)?,
            Source::Transpose(n) => get(n)?.t()?.contiguous()?,
            Source::Cat(ns) => {
                let parts = ns.iter().map(|n| get(n)).collect::<Result<Vec<_>>>()?;
                Tensor::cat(&parts.iter().collect::<Vec<_>>(), 0)?
            }
        };
        if w.dims() != p.dims() {
            return Err(Error::Invalid {
                op: "hf checkpoint",
                msg: format!("{src:?} has shape {:?}, kiln's {name} needs {:?}", w.dims(), p.dims()),
            });
        }
        p.assign_(&w)?;
    }
    Ok(())
}

/// A config asking for far more parameters than the checkpoint holds (a corrupt or hostile
/// `config.json`) is refused before anything is allocated, so memory stays bounded by the size
/// of the weight files: at most `2·held + 2²⁰` parameters for `held` checkpoint values. Smaller
/// mismatches (a missing or mis-shaped tensor) pass here and are reported by name when the
/// tensors are mapped. Shared by the decoder and BERT loaders.
pub(crate) fn check_size(needed: usize, tensors: &HashMap<String, Tensor>) -> Result<()> {
    check_held(needed, tensors.values().map(|t| t.numel()).sum())
}

/// [`check_size`] against `held` values counted by the caller (e.g. a GGUF file's tensors).
pub(crate) fn check_held(needed: usize, held: usize) -> Result<()> {
    if needed > held.saturating_mul(2).saturating_add(1 << 20) {
        return Err(Error::Invalid {
            op: "hf checkpoint",
            msg: format!(
                "the config describes {needed} parameters, far more than the {held} values the checkpoint holds"
            ),
        });
    }
    Ok(())
}

fn tensors_device(tensors: &HashMap<String, Tensor>) -> Result<&Device> {
    tensors
        .values()
        .next()
        .map(|t| t.device())
        .ok_or_else(|| Error::Invalid { op: "hf checkpoint", msg: "the checkpoint holds no tensors".into() })
}

impl GptConfig {
    /// The HF `config.json` of this config (`GPT2LMHeadModel`, `LlamaForCausalLM`, or
    /// `MistralForCausalLM` with a sliding window), the inverse of [`GptConfig::from_hf`]. Kiln configs outside those two families are an error.
    pub fn to_hf(&self) -> Result<Value> {
        let gpt2 = self.position == PositionKind::Learned
            && self.norm == NormKind::LayerNorm
            && self.mlp == MlpKind::Gelu
            && self.bias
            && self.n_kv_head == self.n_head;
        let llama = self.position == PositionKind::Rope
            && self.norm == NormKind::RmsNorm
            && self.mlp == MlpKind::SwiGlu
            && !self.bias;
        if gpt2 {
            Ok(serde_json::json!({
                "architectures": ["GPT2LMHeadModel"],
                "model_type": "gpt2",
                "vocab_size": self.vocab_size,
                "n_positions": self.n_positions,
                "n_ctx": self.n_positions,
                "n_embd": self.n_embd,
                "n_layer": self.n_layer,
                "n_head": self.n_head,
                "n_inner": self.n_inner,
                "activation_function": "gelu_new",
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "tie_word_embeddings": self.tie_word_embeddings,
                "resid_pdrop": self.dropout, "embd_pdrop": self.dropout, "attn_pdrop": self.dropout,
            }))
        } else if llama {
            let mut v = serde_json::json!({
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "vocab_size": self.vocab_size,
                "max_position_embeddings": self.n_positions,
                "hidden_size": self.n_embd,
                "num_hidden_layers": self.n_layer,
                "num_attention_heads": self.n_head,
                "num_key_value_heads": self.n_kv_head,
                "head_dim": self.head_dim(),
                "intermediate_size": self.n_inner,
                "hidden_act": "silu",
                "rms_norm_eps": self.layer_norm_epsilon,
                "rope_theta": self.rope_theta,
                "tie_word_embeddings": self.tie_word_embeddings,
                "attention_bias": false,
                "mlp_bias": false,
            });
            if let Some(w) = self.sliding_window {
                v["architectures"] = serde_json::json!(["MistralForCausalLM"]);
                v["model_type"] = "mistral".into();
                v["sliding_window"] = w.into();
            }
            Ok(v)
        } else {
            Err(Error::Invalid { op: "GptConfig::to_hf", msg: "neither a GPT-2 nor a LLaMA configuration".into() })
        }
    }
}

impl Gpt {
    /// The weights under HF names and layouts (GPT-2 `Conv1D` weights transposed back, LLaMA's
    /// `c_attn` split into q/k/v), the inverse of [`Gpt::from_hf_tensors`]; with
    /// [`GptConfig::to_hf`] this is a checkpoint transformers loads.
    pub fn to_hf_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        self.cfg.to_hf()?; // a family HF knows
        let params: HashMap<String, Tensor> = self.named_parameters().into_iter().collect();
        let (h, hkv, d) = (self.cfg.n_head, self.cfg.n_kv_head, self.cfg.head_dim());
        let mut out = Vec::new();
        for (kiln, src) in name_table(&self.cfg) {
            let p = params.get(&kiln).ok_or_else(|| Error::Invalid {
                op: "Gpt::to_hf_tensors",
                msg: format!("kiln parameter {kiln} is missing"),
            })?;
            match src {
                Source::Copy(n) => out.push((n, p.contiguous()?)),
                Source::Transpose(n) => out.push((n, p.t()?.contiguous()?)),
                Source::Cat(ns) => {
                    let mut start = 0;
                    for (n, rows) in ns.into_iter().zip([h * d, hkv * d, hkv * d]) {
                        out.push((n, p.narrow(0, start, rows)?.contiguous()?));
                        start += rows;
                    }
                }
            }
        }
        Ok(out)
    }

    /// Writes an HF checkpoint directory: `config.json` (with the `extra` keys added, e.g. the
    /// special token ids) and `model.safetensors`, each atomically.
    pub fn save_hf_dir(&self, dir: &Path, extra: &[(&str, Value)]) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| bad(dir, e))?;
        let mut cfg = self.cfg.to_hf()?;
        for (k, v) in extra {
            cfg[*k] = v.clone();
        }
        let cfg = serde_json::to_string_pretty(&cfg).map_err(|e| bad(dir, e))?;
        let tmp = dir.join(".config.json.tmp");
        std::fs::write(&tmp, cfg).map_err(|e| bad(&tmp, e))?;
        std::fs::rename(&tmp, dir.join("config.json")).map_err(|e| bad(dir, e))?;
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::save(&dir.join("model.safetensors"), &self.to_hf_tensors()?, Some(meta))
    }
}
