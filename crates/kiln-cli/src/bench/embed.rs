//! `kiln bench embed`: sentence-embedding throughput (sentences/s) of a sentence-transformers
//! model (default: all-MiniLM-L6-v2 from `python3 tools/fetch_models.py minilm`) on 20-word
//! sentences, batch 32, all threads — and, when `python3 -c 'import sentence_transformers'`
//! works, sentence-transformers (PyTorch) on the same sentences, model, batch and threads,
//! measured in the same run, with the ratio and the cosine agreement of the two.
//!
//! Both timings cover the whole text → embedding pipeline (tokenisation, encoder, pooling,
//! normalisation): the median of `repeats` passes over all sentences after a warm-up batch.
//! The sentences are word windows drawn (seeded) from the shipped State of the Union corpus.

use super::median;
use crate::embed::load;
use anyhow::{Context, Result};
use kiln_core::Device;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

/// The sentence-transformers timing script, embedded so the benchmark runs from any directory
/// (run with `python3 -c`).
const ST_BENCH: &str = include_str!("../../../../tools/bench_embed_st.py");

/// Words per benchmark sentence.
const WORDS: usize = 20;

/// Settings of one `kiln bench embed` run.
pub struct EmbedBench {
    /// Model directory (default: the fetched MiniLM).
    pub model: Option<PathBuf>,
    /// Sentences per forward pass.
    pub batch: usize,
    /// Sentences per timed pass.
    pub sentences: usize,
    /// Timed passes (the median is reported).
    pub repeats: usize,
    /// Threads for kiln and PyTorch.
    pub threads: usize,
    /// Skip the sentence-transformers baseline.
    pub no_st: bool,
}

/// The default model: `.cache/models/minilm` under the working directory, else under the
/// repository this binary was built from.
fn default_model() -> PathBuf {
    let here = PathBuf::from(".cache/models/minilm");
    if here.join("config.json").exists() {
        return here;
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/minilm")
}

/// `n` sentences of [`WORDS`] consecutive words from the shipped corpus, at seeded positions.
pub fn sentences(n: usize) -> Result<Vec<String>> {
    let text = kiln_data::corpus::shipped()?;
    let words: Vec<&str> = text.split_whitespace().collect();
    anyhow::ensure!(words.len() > WORDS, "the corpus is too short");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    Ok((0..n)
        .map(|_| {
            let p = (next() % (words.len() - WORDS) as u64) as usize;
            words[p..p + WORDS].join(" ")
        })
        .collect())
}

/// Whether `python3 -c 'import sentence_transformers'` works.
fn st_available() -> bool {
    Command::new("python3")
        .args(["-c", "import sentence_transformers"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// sentence-transformers' median seconds per pass, its version line, and its first embeddings.
fn st_secs(model: &std::path::Path, texts: &[String], args: &EmbedBench) -> Result<(f64, String, Vec<Vec<f64>>)> {
    let threads = args.threads.to_string();
    let mut child = Command::new("python3")
        .args(["-c", ST_BENCH, "--model", &model.to_string_lossy()])
        .args(["--batch", &args.batch.to_string(), "--threads", &threads, "--repeats", &args.repeats.to_string()])
        .env("OMP_NUM_THREADS", &threads)
        .env("MKL_NUM_THREADS", &threads)
        .env("HF_HUB_OFFLINE", "1")
        .env("TOKENIZERS_PARALLELISM", "true")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running python3")?;
    let input = serde_json::to_vec(texts)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&input).context("writing the sentences to python3")?;
    }
    let out = child.wait_with_output().context("waiting for python3")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    match line {
        Some(v) if out.status.success() => {
            let secs = v["secs"].as_f64().context("the script printed no secs")?;
            let version = format!(
                "sentence-transformers {} (torch {})",
                v["sentence_transformers"].as_str().unwrap_or("?"),
                v["torch"].as_str().unwrap_or("?")
            );
            let head = serde_json::from_value(v["head"].clone()).unwrap_or_default();
            Ok((secs, version, head))
        }
        _ => anyhow::bail!("sentence-transformers baseline failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
    }
}

fn cosine(a: &[f32], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * y).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-30)
}

/// Runs the benchmark and prints the report.
pub fn run(args: &EmbedBench, device: &Device) -> Result<()> {
    anyhow::ensure!(
        args.batch > 0 && args.sentences > 0 && args.repeats > 0,
        "--batch, --sentences, --repeats must be positive"
    );
    let model = args.model.clone().unwrap_or_else(default_model);
    anyhow::ensure!(
        model.join("config.json").exists(),
        "no model in {} (run python3 tools/fetch_models.py minilm, or pass --model DIR)",
        model.display()
    );
    let texts = sentences(args.sentences)?;
    let t = Instant::now();
    let (embedder, tok) = load(&model, device)?;
    let load_s = t.elapsed().as_secs_f64();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let mean_tokens = tok.encode_each(&refs)?.iter().map(Vec::len).sum::<usize>() as f64 / texts.len() as f64;
    let c = &embedder.model.cfg;
    println!(
        "kiln bench embed — {}: BERT {} layers, width {}, {} heads; {} sentences of {WORDS} words ({mean_tokens:.1} \
         tokens on average with [CLS]/[SEP]); batch {}; fp32, {} threads; median of {} passes after a warm-up batch",
        model.display(),
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        texts.len(),
        args.batch,
        args.threads,
        args.repeats
    );
    println!("kiln: model loaded in {:.2} s", load_s);
    let pass = |texts: &[&str]| -> Result<Vec<Vec<f32>>> {
        let ids = tok.encode_each(texts)?;
        Ok(embedder.embed_sequences(&ids, args.batch)?)
    };
    pass(&refs[..args.batch.min(refs.len())])?;
    let mut secs = Vec::with_capacity(args.repeats);
    let mut embs = Vec::new();
    for _ in 0..args.repeats {
        let t = Instant::now();
        embs = pass(&refs)?;
        secs.push(t.elapsed().as_secs_f64());
    }
    let kiln_s = median(&mut secs);
    let n = texts.len() as f64;
    let report = |who: &str, s: f64| println!("{who:<48} {s:>8.3} s/pass {:>9.1} sentences/s", n / s);
    println!();
    report("kiln", kiln_s);
    if args.no_st {
        return Ok(());
    }
    if !st_available() {
        println!("sentence-transformers: not importable (pip install sentence-transformers to add the baseline)");
        return Ok(());
    }
    match st_secs(&model, &texts, args) {
        Ok((st_s, version, head)) => {
            report(&version, st_s);
            println!();
            println!("kiln / sentence-transformers: {:.2}× sentences/s", st_s / kiln_s);
            let cos = embs.iter().zip(&head).map(|(a, b)| cosine(a, b)).fold(f64::INFINITY, f64::min);
            if !head.is_empty() {
                println!("agreement: min cosine over the first {} embeddings {cos:.7}", head.len().min(embs.len()));
            }
        }
        Err(e) => println!("sentence-transformers: {e:#}"),
    }
    Ok(())
}
