//! `kiln generate`: stream a continuation of a prompt from a trained run.

use anyhow::{Context, Result};
use kiln_core::{Device, Module};
use kiln_data::Tokenizer;
use kiln_infer::{generate, Sampler};
use kiln_models::gpt::{Gpt, GptConfig};
use kiln_train::run::checkpoint_dir;
use std::io::Write;
use std::path::Path;

/// Loads the run in `dir` and streams `max_new` tokens after `prompt` to stdout.
pub fn run(dir: &Path, prompt: &str, max_new: usize, sampler: Sampler, device: &Device) -> Result<()> {
    let cfg: GptConfig = serde_json::from_str(
        &std::fs::read_to_string(dir.join("config.json"))
            .with_context(|| format!("reading {}/config.json", dir.display()))?,
    )
    .with_context(|| format!("parsing {}/config.json", dir.display()))?;
    let tok = Tokenizer::load(&dir.join("tokenizer.json"))?;
    let ck = checkpoint_dir(dir).with_context(|| format!("{} has no checkpoint", dir.display()))?;
    let model = Gpt::new(cfg, 0, device)?;
    let (weights, _) = kiln_core::safetensors::load(&ck.join("model.safetensors"), device)?;
    for (name, p) in model.named_parameters() {
        let (_, w) = weights.iter().find(|(n, _)| *n == name).with_context(|| format!("checkpoint lacks {name}"))?;
        p.assign_(w).with_context(|| format!("loading {name}"))?;
    }
    let ids = tok.encode(prompt)?;
    anyhow::ensure!(!ids.is_empty(), "the prompt is empty");
    let mut stdout = std::io::stdout();
    write!(stdout, "{prompt}")?;
    generate(&model, &ids, max_new, &sampler, device, |t| {
        let s = tok.decode(&[t]).map_err(|e| kiln_core::Error::Invalid { op: "decode", msg: e.to_string() })?;
        let _ = write!(stdout, "{s}");
        let _ = stdout.flush();
        Ok(())
    })?;
    writeln!(stdout)?;
    Ok(())
}
