//! Architectures from files: a Hugging Face `config.json` (GPT-2, LLaMA, Mistral, BERT), a kiln
//! run's `config.json` (a serialised `GptConfig`), or a serialised [`Arch`]; or a directory
//! holding one. [`Arch::resolve`] is what a `--config <preset|config.json|HF dir>` argument maps to.
//!
//! Decoder configs go through kiln's own readers (`GptConfig::from_hf`, serde `GptConfig`) and
//! BERT configs through `BertConfig`'s, so an analysis sees exactly the model kiln would build.
//! Sizes are checked before anything else: a negative or non-integer size is an error naming
//! the key, as is a zero one (by the validators).

use crate::arch::Arch;
use crate::error::{AnalysisError, Result};
use crate::presets::PRESETS;
use kiln_models::bert::BertConfig;
use kiln_models::gpt::{GptConfig, HF_MODEL_TYPES};
use serde_json::Value;
use std::io::Read;
use std::path::Path;

/// Keys that hold sizes in the config formats read here; each must be a non-negative integer.
const SIZE_KEYS: [&str; 21] = [
    "vocab_size",
    "n_positions",
    "n_ctx",
    "n_embd",
    "n_layer",
    "n_head",
    "n_kv_head",
    "n_inner",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "max_positions",
    "d_model",
    "n_layers",
    "n_heads",
    "n_kv_heads",
    "d_ff",
];

/// Largest safetensors header read when looking for a pooler (real ones are a few hundred kB).
const MAX_HEADER: u64 = 64 << 20;

impl Arch {
    /// What a CLI `--config` names: an existing file (a `config.json`), an existing directory
    /// (its `config.json`), or else a preset name ([`Arch::preset`]).
    pub fn resolve(spec: &str) -> Result<Arch> {
        let path = Path::new(spec);
        if path.exists() {
            return Arch::from_config_file(path);
        }
        Arch::preset(spec).map_err(|_| AnalysisError::Config {
            source_name: spec.to_string(),
            msg: format!("neither an existing config file or directory nor a preset ({})", PRESETS.join(", ")),
        })
    }

    /// Reads a `config.json` (or `dir/config.json` for a directory). For a BERT config whose
    /// directory holds `model.safetensors`, the pooler is counted when the checkpoint has
    /// `pooler.dense.weight`; without a checkpoint it is counted (HF's `BertModel` default).
    pub fn from_config_file(path: &Path) -> Result<Arch> {
        let file = if path.is_dir() { path.join("config.json") } else { path.to_path_buf() };
        let source = file.display().to_string();
        let text = std::fs::read_to_string(&file)
            .map_err(|e| AnalysisError::Config { source_name: source.clone(), msg: e.to_string() })?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| AnalysisError::Config { source_name: source.clone(), msg: format!("not JSON: {e}") })?;
        let mut arch = Arch::from_config_json(&value, &source)?;
        if arch.family == crate::arch::Family::Encoder {
            if let Some(dir) = file.parent() {
                if let Some(pooler) = checkpoint_has_pooler(&dir.join("model.safetensors"))? {
                    arch.pooler = pooler;
                }
            }
        }
        Ok(arch)
    }

    /// The architecture of a parsed config: a serialised [`Arch`] (has `family`), an HF config
    /// (`model_type` `bert`, `gpt2`, `llama`, `mistral`, or `mixtral`: a mixture of experts), or a kiln run's `GptConfig` (has
    /// `n_embd` and `position`). `source` names the config in errors.
    pub fn from_config_json(v: &Value, source: &str) -> Result<Arch> {
        let bad = |msg: String| AnalysisError::Config { source_name: source.to_string(), msg };
        let obj = v.as_object().ok_or_else(|| bad("a config must be a JSON object".into()))?;
        for key in SIZE_KEYS {
            match obj.get(key) {
                None | Some(Value::Null) => {}
                Some(x) if x.as_u64().is_some() => {}
                Some(x) if x.as_i64().is_some_and(|i| i < 0) => {
                    return Err(bad(format!("{key} must be positive, got {x}")));
                }
                Some(x) => return Err(bad(format!("{key} must be a non-negative integer, got {x}"))),
            }
        }
        let kiln = |e: &dyn std::fmt::Display| bad(e.to_string());
        let name = Path::new(source)
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| source.to_string());
        let model_type = obj.get("model_type").and_then(Value::as_str);
        let arch = if obj.contains_key("family") {
            serde_json::from_value::<Arch>(v.clone()).map_err(|e| bad(format!("not a kiln-analysis Arch: {e}")))?
        } else if model_type == Some("bert")
            || (model_type.is_none() && obj.contains_key("hidden_size") && obj.contains_key("type_vocab_size"))
        {
            let cfg: BertConfig = serde_json::from_value(v.clone()).map_err(|e| bad(format!("BERT config: {e}")))?;
            cfg.validate().map_err(|e| kiln(&e))?;
            Arch::from(&cfg).named(&name)
        } else if model_type == Some("mixtral") {
            // Mistral's decoder with a mixture of SwiGLU experts in every layer.
            let experts = obj.get("num_local_experts").and_then(Value::as_u64);
            let top_k = obj.get("num_experts_per_tok").and_then(Value::as_u64);
            let (Some(experts), Some(top_k)) = (experts, top_k) else {
                return Err(bad("mixtral needs num_local_experts and num_experts_per_tok".into()));
            };
            let mut dense = v.clone();
            dense["model_type"] = "mistral".into();
            Arch::from(&GptConfig::from_hf(&dense).map_err(|e| kiln(&e))?).named(&name).with_moe(experts, top_k)
        } else if let Some(t) = model_type {
            if !HF_MODEL_TYPES.contains(&t) {
                return Err(bad(format!(
                    "model_type {t:?} is not supported (kiln reads bert, mixtral, {})",
                    HF_MODEL_TYPES.join(", ")
                )));
            }
            Arch::from(&GptConfig::from_hf(v).map_err(|e| kiln(&e))?).named(&name)
        } else if obj.contains_key("n_embd") && obj.contains_key("position") {
            let cfg: GptConfig = serde_json::from_value(v.clone()).map_err(|e| bad(format!("kiln GptConfig: {e}")))?;
            cfg.validate().map_err(|e| kiln(&e))?;
            Arch::from(&cfg).named(&name)
        } else {
            return Err(bad(format!(
                "cannot tell the architecture: no model_type (bert, {}), no kiln GptConfig keys, no Arch `family`",
                HF_MODEL_TYPES.join(", ")
            )));
        };
        arch.validate()?;
        Ok(arch)
    }
}

/// Whether the safetensors file at `path` has a `pooler.dense.weight` tensor (any prefix);
/// `None` when there is no such file.
fn checkpoint_has_pooler(path: &Path) -> Result<Option<bool>> {
    let bad = |msg: String| AnalysisError::Config { source_name: path.display().to_string(), msg };
    let Ok(mut f) = std::fs::File::open(path) else { return Ok(None) };
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|e| bad(format!("reading the header size: {e}")))?;
    let n = u64::from_le_bytes(len);
    if n > MAX_HEADER {
        return Err(bad(format!("header of {n} bytes is larger than {MAX_HEADER}")));
    }
    let mut header = Vec::new();
    f.take(n).read_to_end(&mut header).map_err(|e| bad(format!("reading the header: {e}")))?;
    let v: Value = serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    let obj = v.as_object().ok_or_else(|| bad("header is not a JSON object".into()))?;
    Ok(Some(obj.keys().any(|k| k == "pooler.dense.weight" || k.ends_with(".pooler.dense.weight"))))
}
