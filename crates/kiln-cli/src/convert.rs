//! `kiln convert`: GGUF → safetensors (tensors dequantized, GGUF names and metadata kept),
//! GGUF → Hugging Face checkpoint directory, and kiln run → Hugging Face checkpoint directory
//! (`config.json`, `model.safetensors`, and the tokenizer when it has an HF form), which
//! transformers' `AutoModelForCausalLM.from_pretrained` loads.

use crate::generate;
use anyhow::{Context, Result};
use kiln_core::Device;
use kiln_data::Tokenizer;
use kiln_formats::GgufFile;
use kiln_models::gpt::Gpt;
use std::path::Path;

/// Output format of `kiln convert`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One `.safetensors` file (GGUF sources only).
    Safetensors,
    /// A Hugging Face checkpoint directory.
    Hf,
}

/// Converts `from` (a `.gguf` file or a kiln run directory) into `to`.
pub fn run(from: &Path, to: &Path, format: Format, device: &Device) -> Result<()> {
    let gguf = from.is_file() && from.extension().is_some_and(|e| e == "gguf");
    match (gguf, format) {
        (true, Format::Safetensors) => {
            let g = GgufFile::open(from).with_context(|| format!("opening {}", from.display()))?;
            kiln_formats::convert_to_safetensors(&g, to, device)?;
        }
        (true, Format::Hf) => {
            let g = GgufFile::open(from).with_context(|| format!("opening {}", from.display()))?;
            let mut m = generate::load_gguf(&g, from, device)?;
            // `load_gguf` keeps the weight matrices quantized for inference; a checkpoint needs
            // every parameter as a tensor, so the weights are loaded again, dequantized to f32.
            m.model = Gpt::from_gguf(&g, device).with_context(|| format!("loading {}", from.display()))?;
            // the special token ids, so transformers' generate stops where llama.cpp would
            let ids: Vec<(&str, serde_json::Value)> = [
                ("bos_token_id", "tokenizer.ggml.bos_token_id"),
                ("eos_token_id", "tokenizer.ggml.eos_token_id"),
                ("pad_token_id", "tokenizer.ggml.padding_token_id"),
            ]
            .into_iter()
            .filter_map(|(key, id)| g.get_u64(id).ok().map(|v| (key, v.into())))
            .collect();
            write_hf(&m.model, Some(&m.tok), to, &ids)?;
            let mut cfg = serde_json::json!({ "tokenizer_class": "PreTrainedTokenizerFast" });
            for (key, id) in
                [("bos_token", "tokenizer.ggml.bos_token_id"), ("eos_token", "tokenizer.ggml.eos_token_id")]
            {
                if let Some(t) = generate::gguf_special(&g, id) {
                    cfg[key] = t.into();
                }
            }
            if let Ok(src) = g.get_str("tokenizer.chat_template") {
                cfg["chat_template"] = src.into();
            }
            write_atomic(&to.join("tokenizer_config.json"), &serde_json::to_string_pretty(&cfg)?)?;
        }
        (false, Format::Hf) => {
            anyhow::ensure!(from.is_dir(), "{}: not a .gguf file or a kiln run directory", from.display());
            let (model, tok) = generate::load_run(from, device)?;
            let tok = matches!(tok, Tokenizer::Bpe(_)).then_some(tok);
            if tok.is_none() {
                eprintln!(
                    "note: a character-level tokenizer has no Hugging Face form; writing weights and config only"
                );
            }
            write_hf(&model, tok.as_ref(), to, &[])?;
        }
        (false, Format::Safetensors) => {
            anyhow::bail!("--to-format safetensors converts .gguf files; a kiln run already holds safetensors")
        }
    }
    println!("wrote {}", to.display());
    Ok(())
}

fn write_hf(model: &Gpt, tok: Option<&Tokenizer>, to: &Path, extra: &[(&str, serde_json::Value)]) -> Result<()> {
    model.save_hf_dir(to, extra).with_context(|| format!("writing {}", to.display()))?;
    if let Some(t) = tok {
        t.save(&to.join("tokenizer.json"))?;
    }
    Ok(())
}

fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
