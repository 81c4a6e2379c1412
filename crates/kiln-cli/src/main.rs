//! `kiln`: the command-line interface.

mod analyze;
mod bench;
mod convert;
mod embed;
mod generate;
mod inspect;
mod plot;
mod quantize;
mod train;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "kiln", version, about = "kiln: a transformer framework in Rust")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
    /// Where train, generate, serve, perplexity and bench train run: `cpu`, or `cuda` / `cuda:N`
    /// (GPU N) in a kiln built with `--features cuda`. The other commands run on the CPU.
    #[arg(long, global = true, default_value = "cpu")]
    device: String,
}

/// The device named by `--device`.
fn device(spec: &str) -> anyhow::Result<kiln_core::Device> {
    match spec {
        "cpu" => Ok(kiln_cpu::cpu()),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                None => 0,
                Some(n) => {
                    n.parse::<usize>().with_context(|| format!("--device {s}: expected cuda:N with N a GPU index"))?
                }
            };
            cuda_device(ordinal)
        }
        s => anyhow::bail!("--device {s:?}: expected cpu, cuda or cuda:N"),
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(ordinal: usize) -> anyhow::Result<kiln_core::Device> {
    let dev = kiln_cuda::cuda(ordinal)?;
    eprintln!("device: {}", dev.name());
    Ok(dev)
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(_ordinal: usize) -> anyhow::Result<kiln_core::Device> {
    anyhow::bail!("this kiln was built without CUDA support: rebuild with `cargo build --release --features cuda`")
}

/// Commands without a GPU path refuse `--device cuda` instead of ignoring it.
fn cpu_only(spec: &str, cmd: &str) -> anyhow::Result<kiln_core::Device> {
    anyhow::ensure!(spec == "cpu", "`kiln {cmd}` runs on the CPU only (got --device {spec})");
    Ok(kiln_cpu::cpu())
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a GPT (default: a small char-level model on the shipped corpus), then sample from it.
    Train {
        /// char-tiny (default, ~minutes on 2 cores), char-small (6×384, context 256), bpe-small.
        #[arg(long, default_value = "char-tiny")]
        preset: String,
        /// Training text (UTF-8 or .gz); default: the shipped State of the Union corpus.
        #[arg(long)]
        data: Option<std::path::PathBuf>,
        /// Run directory (config, tokenizer, tokens, checkpoint, metrics).
        #[arg(long, default_value = "runs/default")]
        out: std::path::PathBuf,
        /// Override the preset's number of optimizer steps (with --resume: the new run length).
        #[arg(long)]
        steps: Option<u64>,
        /// Continue the run in --out from its checkpoint.
        #[arg(long)]
        resume: bool,
        /// Tokens to sample after training (0 to skip).
        #[arg(long, default_value_t = 400)]
        sample_tokens: usize,
        /// Prune the blocks' weight matrices while training: `magnitude:<sparsity>` (unstructured,
        /// cubic ramp) or `N:M` (e.g. `2:4`: N kept of every M consecutive weights).
        #[arg(long)]
        prune: Option<String>,
        /// Fraction of the run where pruning starts (magnitude: its ramp).
        #[arg(long, default_value_t = 0.25)]
        prune_start: f64,
        /// Fraction of the run where magnitude pruning reaches its sparsity.
        #[arg(long, default_value_t = 0.75)]
        prune_end: f64,
        /// Quantization-aware training: fake-quantize the blocks' matrices to q8_0, q4_0 or q4_1
        /// (straight-through gradients to full-precision masters).
        #[arg(long)]
        qat: Option<String>,
        /// Fraction of the run where quantization-aware training starts.
        #[arg(long, default_value_t = 0.0)]
        qat_start: f64,
        /// Matrix products in f32 (default), bf16, or f16 with dynamic loss scaling (mixed
        /// precision: f32 master weights; fixed when a run starts).
        #[arg(long)]
        precision: Option<String>,
    },
    /// Stream a continuation of a prompt from a trained run.
    Generate {
        /// Run directory written by `kiln train`.
        #[arg(long, default_value = "runs/default")]
        run: std::path::PathBuf,
        /// A pretrained model instead of a run: a `.gguf` file (LLaMA architecture) or a Hugging
        /// Face checkpoint directory (GPT-2, LLaMA/Mistral).
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        /// Treat the prompt as a user message and apply the model's chat template.
        #[arg(long)]
        chat: bool,
        /// System message for --chat.
        #[arg(long)]
        system: Option<String>,
        /// Prompt text.
        #[arg(long, default_value = "The")]
        prompt: String,
        /// Tokens to generate.
        #[arg(long, default_value_t = 300)]
        max_new_tokens: usize,
        /// Sampling settings.
        #[command(flatten)]
        sampling: SamplingArgs,
        /// Beam search and speculative decoding.
        #[command(flatten)]
        decoding: DecodingArgs,
    },
    /// Sentence embeddings from a sentence-transformers model directory, printed as one JSON
    /// object: {"model", "dim", "normalized", "count", "embeddings": [[…], …]} in input order.
    Embed {
        /// Model directory (config.json, model.safetensors, tokenizer.json, modules.json, …).
        #[arg(long)]
        model: std::path::PathBuf,
        /// A file with one text per line (`-` reads stdin), embedded after the TEXT arguments.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// Sentences per forward pass.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// Texts to embed.
        texts: Vec<String>,
    },
    /// Parameters, FLOPs, memory, KV cache, training time and scaling laws of a model config
    /// (the formulas of the book's chapter 12 and notes 003/004, checked against kiln's models).
    Analyze(analyze::AnalyzeArgs),
    /// An OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions, /v1/models,
    /// /health, /metrics) for a trained run or a pretrained decoder (.gguf or HF directory).
    Serve {
        /// A pretrained model: a `.gguf` file or a Hugging Face checkpoint directory.
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        /// A run directory written by `kiln train` (used when --model is absent).
        #[arg(long, default_value = "runs/default")]
        run: std::path::PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// The model name clients send (default: the file or directory name).
        #[arg(long)]
        name: Option<String>,
        /// Requests that may wait while the batch is full (one more gets 429).
        #[arg(long, default_value_t = 64)]
        queue_len: usize,
        /// Sequences generated together (continuous batching; 1 serves requests one by one).
        #[arg(long, default_value_t = 16)]
        max_num_seqs: usize,
        /// KV-cache blocks (0: room for --max-num-seqs full contexts, within 1 GiB).
        #[arg(long, default_value_t = 0)]
        kv_blocks: usize,
        /// Tokens per KV-cache block.
        #[arg(long, default_value_t = 16)]
        block_size: usize,
        /// KV-cache storage dtype.
        #[arg(long, value_enum, default_value_t = KvDtype::F32)]
        kv_dtype: KvDtype,
        /// Do not reuse the KV blocks of prompt prefixes seen before.
        #[arg(long)]
        no_prefix_cache: bool,
        /// Seconds a request may take, queue wait included (then 408).
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Largest max_tokens a request may ask for.
        #[arg(long, default_value_t = 4096)]
        max_tokens_limit: usize,
    },
    /// Look inside a model on a prompt: the logit lens per layer, attention heatmaps (PNG per
    /// layer), and optionally linear probes for a token property on every layer.
    Inspect {
        /// A `.gguf` file, a Hugging Face directory or a kiln run directory.
        #[arg(long, default_value = "runs/default")]
        model: std::path::PathBuf,
        /// The prompt to trace.
        #[arg(long)]
        prompt: String,
        /// Folder for the attention heatmaps.
        #[arg(long, default_value = "inspect")]
        out: std::path::PathBuf,
        /// Prompt positions shown in the logit-lens table (the last ones).
        #[arg(long, default_value_t = 8)]
        positions: usize,
        /// Fit a linear probe per layer for this token property.
        #[arg(long, value_enum)]
        probe: Option<inspect::Property>,
        /// Text for the probe's examples (default: the shipped corpus).
        #[arg(long)]
        probe_text: Option<std::path::PathBuf>,
        /// Tokens of that text to use.
        #[arg(long, default_value_t = 6000)]
        probe_tokens: usize,
    },
    /// Perplexity on a text file as llama.cpp's llama-perplexity computes it (non-overlapping
    /// chunks of --ctx tokens, the second half of each scored).
    Perplexity {
        /// A `.gguf` file, a kiln run directory (trained or quantized) or a Hugging Face
        /// checkpoint directory.
        #[arg(long)]
        model: std::path::PathBuf,
        /// UTF-8 text to score.
        #[arg(long, required_unless_present = "val")]
        file: Option<std::path::PathBuf>,
        /// Score the validation split of this training run's token file instead (the held-out
        /// tail `kiln train` evaluates on).
        #[arg(long, conflicts_with = "file")]
        val: Option<std::path::PathBuf>,
        /// Tokens per chunk.
        #[arg(long, default_value_t = 256)]
        ctx: usize,
        /// Score at most this many chunks (0 = all).
        #[arg(long, default_value_t = 0)]
        chunks: usize,
    },
    /// Quantize a trained run's weight matrices — ggml blocks (Q8_0: int8 per 32 weights; Q4_1:
    /// int4 with scale and minimum per 32; Q4_0: int4 symmetric), per-channel int8 (W8A16,
    /// W8A8) or group-wise int4 (INT4-G32/64/128) — into a run directory that `generate`,
    /// `perplexity` and `serve` load.
    Quantize {
        /// Run directory written by `kiln train`.
        #[arg(long, default_value = "runs/default")]
        run: std::path::PathBuf,
        /// A Hugging Face checkpoint directory to quantize instead of `--run` (GPT-2,
        /// LLaMA/Mistral; its tokenizer, chat template and end-of-sequence token are kept).
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        /// Format: q8_0, q4_1, q4_0 (ggml 32-blocks), w8a16, w8a8 (int8 per output channel;
        /// activations f32 / int8 per token), int4-g32, int4-g64, int4-g128 (int4 with an f16
        /// scale and minimum per group).
        #[arg(long = "type", default_value = "q8_0")]
        ty: String,
        /// Format of the token embeddings and an untied head (any --type; default q8_0, as
        /// llama.cpp's 4-bit mixes keep the output matrix at 6–8 bits).
        #[arg(long, default_value = "q8_0")]
        embed_type: String,
        /// Output directory (created; config.json, tokenizer.json, quantized.safetensors).
        #[arg(long)]
        out: std::path::PathBuf,
        /// Quantize the blocks' matrices with GPTQ (error-compensating, calibrated on windows of
        /// the run's training split) instead of rounding to nearest.
        #[arg(long)]
        gptq: bool,
        /// GPTQ: calibration windows (of the model's context length; from a text file, at
        /// most 512 tokens).
        #[arg(long, default_value_t = 128)]
        calib_seqs: usize,
        /// GPTQ: calibrate on windows of this text file (required with --model; a run
        /// calibrates on its training split otherwise).
        #[arg(long)]
        calib_file: Option<std::path::PathBuf>,
        /// GPTQ: dampening, as a fraction of the Hessian's mean diagonal.
        #[arg(long, default_value_t = 0.01)]
        damp: f64,
    },
    /// Convert models: GGUF → safetensors, GGUF → Hugging Face directory, kiln run → Hugging
    /// Face directory.
    Convert {
        /// A `.gguf` file or a run directory written by `kiln train`.
        #[arg(long)]
        from: std::path::PathBuf,
        /// Output `.safetensors` file or directory.
        #[arg(long)]
        to: std::path::PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "hf")]
        to_format: convert::Format,
    },
    /// Print build and device information.
    Info,
    /// Benchmarks that print a baseline measured in the same run, and the ratio.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Sentence embeddings/s of a sentence-transformers model vs sentence-transformers (PyTorch).
    Embed {
        /// Model directory (default: .cache/models/minilm from `python3 tools/fetch_models.py minilm`).
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        /// Sentences per forward pass.
        #[arg(long, default_value_t = 32)]
        batch: usize,
        /// 20-word sentences per timed pass.
        #[arg(long, default_value_t = 1024)]
        sentences: usize,
        /// Timed passes (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Skip the sentence-transformers baseline.
        #[arg(long)]
        no_st: bool,
    },
    /// Prompt and decode tokens/s of a pretrained model vs llama.cpp (llama-cpp-python) on the
    /// same GGUF when it imports.
    Generate {
        /// A `.gguf` file or HF directory (default: the cached SmolLM2 Q4_1 GGUF).
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        /// Prompt tokens.
        #[arg(long, default_value_t = 128)]
        prompt: usize,
        /// Tokens to decode.
        #[arg(long, default_value_t = 64)]
        decode: usize,
        /// Skip the baseline (llama.cpp for a GGUF file, transformers for an HF directory).
        #[arg(long)]
        no_llama: bool,
        /// Runs of each engine, alternating (the best of each is reported: this VM is noisy).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Quantize an f32 model's matrices in memory before timing kiln (any `kiln quantize
        /// --type`, embeddings included); the baseline keeps its own weights.
        #[arg(long)]
        quantize: Option<String>,
    },
    /// Continuous-batching throughput at several numbers of concurrent clients, against
    /// serving the same requests one by one (measured in the same run).
    Serve {
        /// A `.gguf` file, HF directory or kiln run (default: the cached SmolLM2 Q4_1 GGUF).
        #[arg(long)]
        model: Option<std::path::PathBuf>,
        /// Concurrent clients per row, comma-separated (1, the baseline, is always run).
        #[arg(long, value_delimiter = ',', default_values_t = [1, 8, 32])]
        clients: Vec<usize>,
        /// Requests each client sends.
        #[arg(long, default_value_t = 2)]
        requests: usize,
        /// Prompt tokens per request.
        #[arg(long, default_value_t = 32)]
        prompt: usize,
        /// Tokens generated per request.
        #[arg(long, default_value_t = 32)]
        max_tokens: usize,
        /// KV-cache storage dtype.
        #[arg(long, value_enum, default_value_t = KvDtype::F32)]
        kv_dtype: KvDtype,
        /// Tokens per KV-cache block.
        #[arg(long, default_value_t = 16)]
        block_size: usize,
        /// Then run the same load over HTTP against kiln's server, started in this process on
        /// an ephemeral port (streaming /v1/completions).
        #[arg(long)]
        http: bool,
        /// Only run the load over HTTP, against this OpenAI-compatible server
        /// (`http://host:port`; `--model` still gives the vocabulary size for the prompt ids).
        #[arg(long, conflicts_with = "http")]
        url: Option<String>,
    },
    /// Matmul GFLOP/s on transformer shapes vs numpy/OpenBLAS and the FMA peak.
    Gemm {
        /// Rows of the activation matrices (batch × context), comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [2048, 4096])]
        rows: Vec<usize>,
        /// Model width C of the shapes (the MLP is 4C wide).
        #[arg(long, default_value_t = 768)]
        width: usize,
        /// Worker threads (kiln's rayon pool, numpy's OpenBLAS, the FMA peak). Default: kiln's
        /// thread count (`KILN_NUM_THREADS`, else physical cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Seconds of timing per shape (ignored with --iters).
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Exact number of timed calls per shape (instead of --seconds).
        #[arg(long)]
        iters: Option<usize>,
    },
    /// Training tokens/s, GFLOP/s and MFU of a preset vs PyTorch eager on the same model.
    Train {
        /// Preset (see `kiln train --preset`).
        #[arg(long, default_value = "char-small")]
        preset: String,
        /// Sequences per step (default: the preset's).
        #[arg(long)]
        batch: Option<usize>,
        /// Timed steps (the median is reported).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Untimed warm-up steps.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Threads for kiln and PyTorch (default: kiln's thread count).
        #[arg(long)]
        threads: Option<usize>,
        /// Skip the PyTorch baseline.
        #[arg(long)]
        no_torch: bool,
        /// Matrix products in f32 (default), bf16 or f16 (as `kiln train --precision`); the
        /// PyTorch baseline then runs under torch.autocast with the same type.
        #[arg(long)]
        precision: Option<String>,
    },
}

/// Runs the command; a failure prints one line, `error: <what went wrong>: <cause>…` (no
/// backtrace, even with `RUST_BACKTRACE` set), and exits with status 1.
/// The sampling options of `kiln generate` (see [`kiln_infer::Sampler`]).
#[derive(Clone, Debug, clap::Args)]
struct SamplingArgs {
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.8)]
    temperature: f64,
    /// Keep only the k most likely tokens (0 = all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// Nucleus sampling mass (1 = off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Drop tokens below this fraction of the top token's probability (0 = off).
    #[arg(long, default_value_t = 0.0)]
    min_p: f64,
    /// Repetition penalty over the whole context (1 = off, >1 discourages repeats).
    #[arg(long, default_value_t = 1.0)]
    repetition_penalty: f64,
    /// Presence penalty on generated tokens (0 = off, OpenAI's −2…2).
    #[arg(long, default_value_t = 0.0)]
    presence_penalty: f64,
    /// Frequency penalty on generated tokens, per occurrence (0 = off, OpenAI's −2…2).
    #[arg(long, default_value_t = 0.0)]
    frequency_penalty: f64,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// Beam search and speculative decoding options of `kiln generate`.
#[derive(Clone, Debug, clap::Args)]
struct DecodingArgs {
    /// Beam search with this many beams (1 = sample with the options above); prints the best
    /// hypothesis, and every hypothesis with its score on stderr.
    #[arg(long, default_value_t = 1)]
    beams: usize,
    /// GNMT length penalty α of beam search (score = log P / ((5 + len)/6)^α; 0 = log P).
    #[arg(long, default_value_t = 0.0)]
    length_penalty: f64,
    /// Beam search ends once --beams hypotheses have finished.
    #[arg(long)]
    early_stopping: bool,
    /// Speculative decoding with this draft model (same tokenizer): a run directory, a .gguf
    /// file or an HF directory. The output follows the main model's distribution exactly.
    #[arg(long)]
    draft: Option<std::path::PathBuf>,
    /// Tokens the draft proposes per pass of the main model.
    #[arg(long, default_value_t = 4)]
    draft_tokens: usize,
    /// Constrain the output to match this regular expression in full (sampling as set above).
    #[arg(long, conflicts_with_all = ["draft", "beams", "json_schema"])]
    regex: Option<String>,
    /// Constrain the output to JSON valid under this JSON Schema file (objects, arrays,
    /// strings, numbers, enums, $ref…; converted to a regex).
    #[arg(long, conflicts_with_all = ["draft", "beams"])]
    json_schema: Option<std::path::PathBuf>,
}

impl SamplingArgs {
    /// The validated sampler.
    fn sampler(&self) -> anyhow::Result<kiln_infer::Sampler> {
        let s = kiln_infer::Sampler {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            seed: self.seed,
        };
        s.validate()?;
        Ok(s)
    }
}

/// Storage dtype of a KV cache (`--kv-dtype`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum KvDtype {
    F32,
    F16,
    Bf16,
    /// int8 codes with an f32 scale per (token, head): D + 4 bytes per row.
    Int8,
}

impl From<KvDtype> for kiln_core::DType {
    fn from(d: KvDtype) -> kiln_core::DType {
        match d {
            KvDtype::F32 => kiln_core::DType::F32,
            KvDtype::F16 => kiln_core::DType::F16,
            KvDtype::Bf16 => kiln_core::DType::BF16,
            KvDtype::Int8 => kiln_core::DType::U8,
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let threads = match &cli.cmd {
        Cmd::Bench { what: BenchCmd::Gemm { threads, .. } | BenchCmd::Train { threads, .. } } => *threads,
        _ => None,
    }
    .unwrap_or_else(kiln_cpu::num_threads);
    // The whole command runs on a worker of rayon's pool (sized before anything uses it), so a
    // parallel kernel forks from a worker — it runs its own share and the others steal the rest —
    // instead of the main thread handing every kernel to the pool and sleeping until it is done
    // (two context switches per kernel: ~30% of a decoding step's time).
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build_global();
    let result = match pool {
        // the server blocks on its HTTP runtime; its generation thread enters the pool itself
        Ok(()) if matches!(cli.cmd, Cmd::Serve { .. }) => run(cli),
        Ok(()) => rayon::scope(|_| run(cli)),
        Err(e) => Err(anyhow::anyhow!("building rayon's thread pool of {threads} threads: {e}")),
    };
    if let Err(e) = result {
        // The cause chain, skipping causes a message already quotes (library errors often
        // include their source's text).
        let mut line = String::new();
        for cause in e.chain().map(|c| c.to_string()) {
            if !line.contains(&cause) {
                line = if line.is_empty() { cause } else { format!("{line}: {cause}") };
            }
        }
        eprintln!("error: {line}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let spec = cli.device.as_str();
    match cli.cmd {
        Cmd::Train {
            preset,
            data,
            out,
            steps,
            resume,
            sample_tokens,
            prune,
            prune_start,
            prune_end,
            qat,
            qat_start,
            precision,
        } => {
            let compress = (prune.is_some() || qat.is_some()).then(|| -> anyhow::Result<_> {
                Ok(kiln_train::run::Compression {
                    prune: prune.as_deref().map(kiln_train::Pruning::parse).transpose()?,
                    prune_start,
                    prune_end,
                    qat,
                    qat_start,
                })
            });
            let compress = compress.transpose()?;
            let precision = precision.as_deref().map(kiln_train::Precision::parse).transpose()?;
            let args = train::TrainArgs { preset, data, out, steps, resume, sample_tokens, compress, precision };
            train::run(args, &device(spec)?)?;
        }
        Cmd::Generate { run, model, chat, system, prompt, max_new_tokens, sampling, decoding } => {
            let sampler = sampling.sampler()?;
            let dev = device(spec)?;
            let loaded = match &model {
                Some(path) => generate::load_model(path, &dev)?,
                None => {
                    let (model, tok) = generate::load_run(&run, &dev)?;
                    generate::Loaded { model, tok, chat: None, stop: Vec::new(), bos: None }
                }
            };
            let text = if chat { generate::chat_prompt(&loaded, system.as_deref(), &prompt)? } else { prompt };
            anyhow::ensure!(decoding.beams >= 1, "--beams must be at least 1");
            anyhow::ensure!(
                decoding.beams == 1 || decoding.draft.is_none(),
                "--beams and --draft cannot be combined (beam search scores every beam with the main model)"
            );
            let draft =
                decoding.draft.as_deref().map(|p| generate::load_model(p, &dev).map(|m| m.model)).transpose()?;
            let regex = match (&decoding.regex, &decoding.json_schema) {
                (Some(r), _) => Some(r.clone()),
                (None, Some(path)) => {
                    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                    let schema: serde_json::Value =
                        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
                    Some(kiln_infer::schema_to_regex(&schema).with_context(|| format!("{}", path.display()))?)
                }
                (None, None) => None,
            };
            let mode = match (&draft, &regex) {
                (Some(d), _) => generate::Decoding::Speculative { draft: d, k: decoding.draft_tokens },
                (None, Some(pattern)) => generate::Decoding::Regex(pattern.clone()),
                (None, None) if decoding.beams > 1 => generate::Decoding::Beam(kiln_infer::BeamSearch {
                    beams: decoding.beams,
                    length_penalty: decoding.length_penalty,
                    early_stopping: decoding.early_stopping,
                    max_new: max_new_tokens,
                }),
                (None, None) => generate::Decoding::Sample,
            };
            generate::run(&loaded, &text, max_new_tokens, sampler, &mode, !chat, &dev)?;
        }
        Cmd::Embed { model, file, batch, texts } => {
            embed::run(&embed::EmbedArgs { model, file, batch, texts }, &cpu_only(spec, "embed")?)?;
        }
        Cmd::Analyze(args) => analyze::run(&args)?,
        Cmd::Inspect { model, prompt, out, positions, probe, probe_text, probe_tokens } => {
            let args = inspect::InspectArgs { model, prompt, out, positions, probe, probe_text, probe_tokens };
            inspect::run(&args, &cpu_only(spec, "inspect")?)?;
        }
        Cmd::Serve {
            model,
            run,
            addr,
            name,
            queue_len,
            max_num_seqs,
            kv_blocks,
            block_size,
            kv_dtype,
            no_prefix_cache,
            timeout,
            max_tokens_limit,
        } => {
            let dev = device(spec)?;
            let (loaded, path) = match &model {
                Some(p) => (generate::load_model(p, &dev)?, p.clone()),
                None => {
                    let (model, tok) = generate::load_run(&run, &dev)?;
                    (generate::Loaded { model, tok, chat: None, stop: vec![], bos: None }, run.clone())
                }
            };
            let name = name.unwrap_or_else(|| {
                path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "kiln".into())
            });
            let served = kiln_serve::ServedModel {
                name,
                model: loaded.model,
                tok: loaded.tok,
                chat: loaded.chat,
                stop: loaded.stop,
                bos: loaded.bos,
            };
            let opts = kiln_serve::ServeOptions {
                queue_len,
                max_num_seqs,
                kv_blocks,
                block_size,
                kv_dtype: kv_dtype.into(),
                prefix_caching: !no_prefix_cache,
                request_timeout: std::time::Duration::from_secs(timeout),
                max_tokens_limit,
                ..Default::default()
            };
            kiln_serve::serve_blocking(&addr, served, opts)?;
        }
        Cmd::Bench { what: BenchCmd::Embed { model, batch, sentences, repeats, no_st } } => {
            let threads = kiln_cpu::num_threads();
            let args = bench::embed::EmbedBench { model, batch, sentences, repeats, threads, no_st };
            bench::embed::run(&args, &cpu_only(spec, "bench embed")?)?;
        }
        Cmd::Perplexity { model, file, val, ctx, chunks } => {
            let dev = device(spec)?;
            let m = generate::load_model(&model, &dev)?;
            let (mut ids, what) = match (&file, &val) {
                (Some(file), _) => {
                    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
                    (m.tok.encode(&text)?, file.display().to_string())
                }
                (None, Some(run)) => (train::validation_tokens(run)?, format!("{} (validation split)", run.display())),
                (None, None) => anyhow::bail!("pass --file or --val"),
            };
            if chunks > 0 {
                ids.truncate(chunks.saturating_mul(ctx));
            }
            eprintln!("{what}: {} tokens, {} chunks of {ctx}", ids.len(), ids.len() / ctx.max(1));
            let t = std::time::Instant::now();
            let p = kiln_infer::perplexity(&m.model, &ids, ctx, m.bos, &dev, |i, ppl| eprint!("[{}]{ppl:.4} ", i + 1))?;
            eprintln!();
            println!(
                "PPL = {:.4} ({} tokens scored, {} chunks, {:.1} s, {:.0} tok/s)",
                p.ppl,
                p.scored,
                p.chunks,
                t.elapsed().as_secs_f64(),
                (p.chunks * ctx) as f64 / t.elapsed().as_secs_f64()
            );
        }
        Cmd::Quantize { run, model, ty, embed_type, out, gptq, calib_seqs, calib_file, damp } => {
            let gptq = gptq.then_some(quantize::Gptq { seqs: calib_seqs, damp, file: calib_file });
            cpu_only(spec, "quantize")?;
            let source = match &model {
                Some(dir) => quantize::QuantSource::Hf(dir),
                None => quantize::QuantSource::Run(&run),
            };
            quantize::run(source, &ty, &embed_type, &out, gptq)?
        }
        Cmd::Convert { from, to, to_format } => convert::run(&from, &to, to_format, &cpu_only(spec, "convert")?)?,
        Cmd::Info => {
            let dev = kiln_cpu::cpu();
            println!("kiln {} — device {}, {} threads", env!("CARGO_PKG_VERSION"), dev.name(), kiln_cpu::num_threads());
        }
        Cmd::Bench { what: BenchCmd::Generate { model, prompt, decode, no_llama, repeats, quantize } } => {
            let threads = kiln_cpu::num_threads();
            let args = bench::generate::GenerateBench { model, prompt, decode, threads, no_llama, repeats, quantize };
            bench::generate::run(&args, &cpu_only(spec, "bench generate")?)?;
        }
        Cmd::Bench {
            what: BenchCmd::Serve { model, clients, requests, prompt, max_tokens, kv_dtype, block_size, http, url },
        } => {
            let args = bench::serve::ServeBench {
                model,
                clients,
                requests,
                prompt,
                max_tokens,
                kv_dtype: kv_dtype.into(),
                block_size,
                http,
                url,
            };
            bench::serve::run(&args, &cpu_only(spec, "bench serve")?)?;
        }
        Cmd::Bench { what: BenchCmd::Gemm { rows, width, threads, seconds, iters } } => {
            anyhow::ensure!(!rows.is_empty() && rows.iter().all(|&r| r > 0), "--rows must be positive");
            anyhow::ensure!(seconds > 0.0, "--seconds must be positive");
            anyhow::ensure!(width > 0, "--width must be positive");
            let threads = threads.unwrap_or_else(kiln_cpu::num_threads);
            anyhow::ensure!(threads > 0, "--threads must be positive");
            let budget = match iters {
                Some(n) if n > 0 => bench::Budget::Iters(n),
                Some(_) => anyhow::bail!("--iters must be positive"),
                None => bench::Budget::Seconds(seconds),
            };
            bench::gemm::run(&rows, width, threads, budget)?;
        }
        Cmd::Bench { what: BenchCmd::Train { preset, batch, steps, warmup, threads, no_torch, precision } } => {
            let precision = precision.as_deref().map(kiln_train::Precision::parse).transpose()?.unwrap_or_default();
            let threads = threads.unwrap_or_else(kiln_cpu::num_threads);
            anyhow::ensure!(threads > 0, "--threads must be positive");
            anyhow::ensure!(batch != Some(0), "--batch must be positive");
            bench::train::run(
                &bench::train::TrainBench { preset, batch, steps, warmup, threads, no_torch, precision },
                &device(spec)?,
            )?;
        }
    }
    Ok(())
}
