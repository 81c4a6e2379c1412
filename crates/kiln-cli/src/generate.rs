//! `kiln generate`: stream a continuation of a prompt from a trained run or a Hugging Face
//! checkpoint.

use anyhow::{Context, Result};
use kiln_core::{Device, Module};
use kiln_data::{ChatMessage, ChatTemplate, IncrementalDecoder, Tokenizer};
use kiln_formats::GgufFile;
use kiln_infer::{generate_until, Sampler};
use kiln_models::gpt::{Gpt, GptConfig};
use kiln_train::run::checkpoint_dir;
use std::io::Write;
use std::path::Path;

/// The weights file of a run directory written by `kiln quantize`.
pub const QUANTIZED_FILE: &str = "quantized.safetensors";

/// A Hugging Face tokenizer config: chat template and special tokens.
pub const TOKENIZER_CONFIG: &str = "tokenizer_config.json";

/// Whether `dir` is a kiln run directory (`kiln train --out`, or `kiln quantize --out`).
pub fn is_run_dir(dir: &Path) -> bool {
    dir.join("tokenizer.json").is_file()
        && dir.join("config.json").is_file()
        && (dir.join(QUANTIZED_FILE).is_file() || checkpoint_dir(dir).is_some())
}

/// A trained kiln run directory (`kiln train --out`): its latest checkpoint, or the quantized
/// weights `kiln quantize` wrote.
pub fn load_run(dir: &Path, device: &Device) -> Result<(Gpt, Tokenizer)> {
    let cfg: GptConfig = serde_json::from_str(
        &std::fs::read_to_string(dir.join("config.json"))
            .with_context(|| format!("reading {}/config.json", dir.display()))?,
    )
    .with_context(|| format!("parsing {}/config.json", dir.display()))?;
    let tok = Tokenizer::load(&dir.join("tokenizer.json"))?;
    let quantized = dir.join(QUANTIZED_FILE);
    if quantized.is_file() {
        let model = kiln_models::gpt::load_quantized(cfg, &quantized, device)
            .with_context(|| format!("loading {}", quantized.display()))?;
        return Ok((model, tok));
    }
    let ck = checkpoint_dir(dir).with_context(|| format!("{} has no checkpoint", dir.display()))?;
    let model = Gpt::new(cfg, 0, device)?;
    let (weights, _) = kiln_core::safetensors::load(&ck.join("model.safetensors"), device)?;
    for (name, p) in model.named_parameters() {
        let (_, w) = weights.iter().find(|(n, _)| *n == name).with_context(|| format!("checkpoint lacks {name}"))?;
        p.assign_(w).with_context(|| format!("loading {name}"))?;
    }
    Ok((model, tok))
}

/// A Hugging Face checkpoint directory (GPT-2, LLaMA/Mistral): `config.json`, safetensors
/// weights, and `tokenizer.json` (or GPT-2's `encoder.json` + `vocab.bpe`).
pub fn load_hf(dir: &Path, device: &Device) -> Result<(Gpt, Tokenizer)> {
    let model = Gpt::from_hf_dir(dir, device)?;
    let tok = if dir.join("tokenizer.json").is_file() {
        Tokenizer::load(&dir.join("tokenizer.json"))?
    } else if dir.join("encoder.json").is_file() {
        Tokenizer::from_gpt2_files(&dir.join("encoder.json"), &dir.join("vocab.bpe"))?
    } else {
        anyhow::bail!("{}: no tokenizer.json (or encoder.json + vocab.bpe)", dir.display());
    };
    Ok((model, tok))
}

/// The text of the token whose id the metadata key `key` holds (e.g.
/// `tokenizer.ggml.eos_token_id`), if both exist.
pub fn gguf_special(g: &GgufFile, key: &str) -> Option<String> {
    let id = usize::try_from(g.get_u64(key).ok()?).ok()?;
    g.get_str_array("tokenizer.ggml.tokens").ok()?.get(id).map(|s| s.to_string())
}

/// A llama.cpp GGUF file (LLaMA architecture; `path` names it in errors): projection and
/// embedding weights kept quantized in memory (norms in f32), the tokenizer and chat template from its metadata, and its end-of-sequence token.
pub fn load_gguf(g: &GgufFile, path: &Path, device: &Device) -> Result<Loaded> {
    let (model, _) = Gpt::from_gguf_quantized(g, device).with_context(|| format!("loading {}", path.display()))?;
    let strings = |k: &str| -> Result<Vec<String>> {
        Ok(g.get_str_array(k)
            .with_context(|| format!("{}: {k}", path.display()))?
            .into_iter()
            .map(String::from)
            .collect())
    };
    let kind = g.get_str("tokenizer.ggml.model").unwrap_or("");
    anyhow::ensure!(
        kind == "gpt2",
        "{}: tokenizer.ggml.model {kind:?} (kiln reads byte-level BPE, \"gpt2\")",
        path.display()
    );
    let types = g.get_i32_array("tokenizer.ggml.token_type").unwrap_or_default();
    let tok = Tokenizer::from_gguf_vocab(
        &strings("tokenizer.ggml.tokens")?,
        &strings("tokenizer.ggml.merges")?,
        &types,
        g.get_str("tokenizer.ggml.pre").unwrap_or("default"),
    )?;
    let special = |k: &str| gguf_special(g, k).unwrap_or_default();
    let chat = match g.get_str("tokenizer.chat_template") {
        Ok(src) => Some(ChatTemplate::new(
            src,
            &special("tokenizer.ggml.bos_token_id"),
            &special("tokenizer.ggml.eos_token_id"),
        )?),
        Err(_) => None,
    };
    let stop = g.get_u64("tokenizer.ggml.eos_token_id").ok().map(|i| i as u32).into_iter().collect();
    let bos = match g.get_bool("tokenizer.ggml.add_bos_token") {
        Ok(true) => g.get_u64("tokenizer.ggml.bos_token_id").ok().map(|i| i as u32),
        _ => None,
    };
    Ok(Loaded { model, tok, chat, stop, bos })
}

/// A model ready to generate: weights, tokenizer, chat template (if it has one) and the tokens
/// that end a reply.
pub struct Loaded {
    /// The network.
    pub model: Gpt,
    /// Its tokenizer.
    pub tok: Tokenizer,
    /// Its chat template, for `--chat`.
    pub chat: Option<ChatTemplate>,
    /// End-of-sequence tokens: generation stops after one.
    pub stop: Vec<u32>,
    /// The token the model expects at the start of a sequence, when it adds one.
    pub bos: Option<u32>,
}

/// Loads `--model`: a `.gguf` file, a kiln run directory (trained or quantized), or a Hugging
/// Face checkpoint directory (whose `tokenizer_config.json` may carry a `chat_template` and
/// `eos_token`).
pub fn load_model(path: &Path, device: &Device) -> Result<Loaded> {
    if path.is_file() && path.extension().is_some_and(|e| e == "gguf") {
        let g = GgufFile::open(path).with_context(|| format!("opening {}", path.display()))?;
        return load_gguf(&g, path, device);
    }
    anyhow::ensure!(path.is_dir(), "{}: not a .gguf file or a checkpoint directory", path.display());
    let (model, tok) = if is_run_dir(path) { load_run(path, device)? } else { load_hf(path, device)? };
    let (chat, stop) = chat_settings(path, &tok)?;
    Ok(Loaded { model, tok, chat, stop, bos: None })
}

/// The chat template and end-of-sequence token of `dir`'s `tokenizer_config.json` (a Hugging
/// Face checkpoint's, or one `kiln quantize --model` copied into a run), if it has one.
fn chat_settings(dir: &Path, tok: &Tokenizer) -> Result<(Option<ChatTemplate>, Vec<u32>)> {
    let cfg_path = dir.join(TOKENIZER_CONFIG);
    let (mut chat, mut stop) = (None, Vec::new());
    if let Ok(text) = std::fs::read_to_string(&cfg_path) {
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", cfg_path.display()))?;
        let special = |k: &str| match &v[k] {
            serde_json::Value::String(s) => s.clone(),
            o => o.get("content").and_then(|c| c.as_str()).unwrap_or("").to_string(),
        };
        let (bos, eos) = (special("bos_token"), special("eos_token"));
        if let Some(src) = v.get("chat_template").and_then(|t| t.as_str()) {
            chat = Some(ChatTemplate::new(src, &bos, &eos)?);
        }
        if let Ok(ids) = tok.encode(&eos) {
            if ids.len() == 1 {
                stop = ids;
            }
        }
    }
    Ok((chat, stop))
}

/// How `kiln generate` picks tokens.
pub enum Decoding<'a> {
    /// The sampler alone (greedy at temperature 0).
    Sample,
    /// Beam search: the best hypothesis is printed, all of them with scores on stderr.
    Beam(kiln_infer::BeamSearch),
    /// Sampling constrained to outputs that match a regular expression.
    Regex(String),
    /// Speculative decoding with a draft model proposing `k` tokens per target pass.
    Speculative {
        /// The draft model (same vocabulary).
        draft: &'a Gpt,
        /// Drafted tokens per round.
        k: usize,
    },
}

/// Streams up to `max_new` tokens after `prompt` to stdout, stopping after any of `stop`.
pub fn run(
    m: &Loaded,
    prompt: &str,
    max_new: usize,
    sampler: Sampler,
    decoding: &Decoding,
    echo_prompt: bool,
    device: &Device,
) -> Result<()> {
    let ids = m.tok.encode(prompt)?;
    anyhow::ensure!(!ids.is_empty(), "the prompt is empty");
    let mut stdout = std::io::stdout();
    if echo_prompt {
        write!(stdout, "{prompt}")?;
    }
    let decode =
        |ids: &[u32]| m.tok.decode(ids).map_err(|e| kiln_core::Error::Invalid { op: "decode", msg: e.to_string() });
    // print each token's text as soon as it completes a character
    let mut reply = IncrementalDecoder::new();
    let mut print = |t: u32| -> kiln_core::Result<()> {
        if m.stop.contains(&t) {
            return Ok(());
        }
        let piece =
            reply.push(&m.tok, t).map_err(|e| kiln_core::Error::Invalid { op: "decode", msg: e.to_string() })?;
        if !piece.is_empty() {
            let _ = write!(stdout, "{piece}");
            let _ = stdout.flush();
        }
        Ok(())
    };
    match decoding {
        Decoding::Sample => {
            generate_until(&m.model, &ids, max_new, &sampler, &m.stop, device, print)?;
        }
        Decoding::Speculative { draft, k } => {
            let t0 = std::time::Instant::now();
            let (out, st) =
                kiln_infer::generate_speculative(&m.model, draft, &ids, max_new, *k, &sampler, &m.stop, device, print)?;
            eprintln!(
                "\n[speculative: {} tokens in {} target passes ({:.2} per pass), {}/{} drafted tokens kept ({:.0} %), {:.1} tok/s]",
                out.len(),
                st.target_passes,
                out.len() as f64 / st.target_passes.max(1) as f64,
                st.accepted,
                st.drafted,
                100.0 * st.acceptance_rate(),
                out.len() as f64 / t0.elapsed().as_secs_f64()
            );
        }
        Decoding::Regex(pattern) => {
            let c = kiln_infer::RegexConstraint::new(pattern, m.tok.token_bytes())?;
            let eos = m.stop.first().copied();
            let (_, complete) =
                kiln_infer::generate_constrained(&m.model, &ids, max_new, &sampler, &c, eos, device, print)?;
            if !complete {
                eprintln!("\n[the output is an incomplete match of {pattern:?}: --max-new-tokens ran out]");
            }
        }
        Decoding::Beam(cfg) => {
            let cfg = kiln_infer::BeamSearch { max_new, ..*cfg };
            let hyps = kiln_infer::beam_search(&m.model, &ids, &cfg, &m.stop, device)?;
            let best = hyps.first().context("beam search returned no hypothesis")?;
            best.tokens.iter().try_for_each(|&t| print(t))?;
            eprintln!();
            for (i, h) in hyps.iter().enumerate() {
                let text = decode(&h.tokens)?;
                eprintln!(
                    "[beam {i}: score {:.4}, log-prob {:.4}, {} tokens] {text:?}",
                    h.score,
                    h.logprob,
                    h.tokens.len()
                );
            }
        }
    }
    writeln!(std::io::stdout(), "{}", reply.flush(&m.tok)?)?;
    Ok(())
}

/// The chat prompt for one user turn (after an optional system turn), with the assistant's
/// header appended.
pub fn chat_prompt(m: &Loaded, system: Option<&str>, user: &str) -> Result<String> {
    let tmpl = m.chat.as_ref().context("this model has no chat template (drop --chat)")?;
    let mut msgs = Vec::new();
    if let Some(s) = system {
        msgs.push(ChatMessage { role: "system".into(), content: s.into() });
    }
    msgs.push(ChatMessage { role: "user".into(), content: user.into() });
    Ok(tmpl.render(&msgs, true)?)
}
