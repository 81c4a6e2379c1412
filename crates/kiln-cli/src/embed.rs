//! `kiln embed`: sentence embeddings from a sentence-transformers model directory (e.g.
//! all-MiniLM-L6-v2: `config.json`, `model.safetensors`, `tokenizer.json`, `modules.json`,
//! `1_Pooling/config.json`).
//!
//! Output: one JSON object on stdout,
//! `{"model": "<dir>", "dim": C, "normalized": true, "count": N, "embeddings": [[f32; C]; N]}`,
//! the embeddings in input order (TEXT arguments first, then the lines of `--file`).

use anyhow::{Context, Result};
use kiln_core::Device;
use kiln_data::HfTokenizer;
use kiln_models::SentenceEmbedder;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Settings of one `kiln embed` run.
pub struct EmbedArgs {
    /// Model directory.
    pub model: PathBuf,
    /// A file with one text per line (`-` for stdin).
    pub file: Option<PathBuf>,
    /// Sentences per forward pass.
    pub batch: usize,
    /// Texts given on the command line.
    pub texts: Vec<String>,
}

/// What `kiln embed` prints (f32 values in their shortest round-tripping form).
#[derive(serde::Serialize)]
struct Output {
    model: String,
    dim: usize,
    normalized: bool,
    count: usize,
    embeddings: Vec<Vec<f32>>,
}

/// The embedder and a tokenizer truncating to its `max_seq_length`, from `dir`.
pub fn load(dir: &Path, device: &Device) -> Result<(SentenceEmbedder, HfTokenizer)> {
    let embedder =
        SentenceEmbedder::from_dir(dir, device).with_context(|| format!("loading the model in {}", dir.display()))?;
    // tokenizer.json sits beside the encoder's weights (the directory itself, or e.g. 0_Transformer/)
    let mut path = embedder.model_dir.join("tokenizer.json");
    if !path.is_file() {
        path = dir.join("tokenizer.json");
    }
    let tok = HfTokenizer::from_file(&path)?.with_max_length(embedder.max_seq_length)?;
    Ok((embedder, tok))
}

/// The texts to embed: the arguments, then each line of the file (blank lines included, so
/// output row `i` is input line `i`).
fn inputs(args: &EmbedArgs) -> Result<Vec<String>> {
    let mut texts = args.texts.clone();
    if let Some(path) = &args.file {
        let mut s = String::new();
        if path.as_os_str() == "-" {
            std::io::stdin().read_to_string(&mut s).context("reading stdin")?;
        } else {
            s = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        }
        texts.extend(s.lines().map(str::to_string));
    }
    anyhow::ensure!(!texts.is_empty(), "nothing to embed: give TEXT arguments or --file");
    Ok(texts)
}

/// Runs `kiln embed` and prints the JSON object.
pub fn run(args: &EmbedArgs, device: &Device) -> Result<()> {
    anyhow::ensure!(args.batch > 0, "--batch must be positive");
    let texts = inputs(args)?;
    let (embedder, tok) = load(&args.model, device)?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let ids = tok.encode_each(&refs)?;
    let embeddings = embedder.embed_sequences(&ids, args.batch)?;
    let out = Output {
        model: args.model.display().to_string(),
        dim: embedder.dim(),
        normalized: embedder.normalize,
        count: embeddings.len(),
        embeddings,
    };
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer(&mut stdout, &out)?;
    writeln!(stdout)?;
    stdout.flush()?;
    Ok(())
}
