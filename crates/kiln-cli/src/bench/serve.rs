//! `kiln bench serve`: continuous-batching throughput. For each concurrency `c`, `c` clients each
//! keep one request in flight (a closed loop, as a load generator does) until every client has
//! sent `--requests` requests; the engine batches whatever is in flight. `c = 1` is serving the
//! requests one by one — the baseline the other rows are divided by, measured in the same run.
//! The engine is the server's ([`kiln_infer::BatchEngine`]), driven in-process so the figure is
//! the engine's, not HTTP's; `--http` then runs the same load over HTTP against kiln's server,
//! and `--url` against any OpenAI-compatible server (`serve_http.rs`).

use crate::generate;
use anyhow::{Context, Result};
use kiln_core::{DType, Device};
use kiln_infer::{BatchEngine, BatchRequest, Sampler, SchedulerConfig, StepEvent};
use std::path::PathBuf;
use std::time::Instant;

/// Options of `kiln bench serve`.
pub struct ServeBench {
    /// Model file or directory (`None`: the cached SmolLM2 GGUF).
    pub model: Option<PathBuf>,
    /// Concurrent clients of each row.
    pub clients: Vec<usize>,
    /// Requests each client sends.
    pub requests: usize,
    /// Prompt tokens per request.
    pub prompt: usize,
    /// Tokens generated per request.
    pub max_tokens: usize,
    /// KV-cache dtype.
    pub kv_dtype: DType,
    /// Tokens per KV block.
    pub block_size: usize,
    /// Also run the load over HTTP against kiln's server, started in this process.
    pub http: bool,
    /// Run the load over HTTP against this server instead (`http://host:port`).
    pub url: Option<String>,
}

/// One row of the report.
struct Row {
    clients: usize,
    requests: usize,
    tokens: u64,
    secs: f64,
    steps: u64,
    latency: f64,
}

/// Runs `clients` closed-loop clients of `per_client` requests each through one engine.
fn run_clients(model: &kiln_models::gpt::Gpt, args: &ServeBench, clients: usize, device: &Device) -> Result<Row> {
    let vocab = model.cfg.vocab_size as u64;
    let total = clients * args.requests;
    // Distinct prompts (no prefix-cache hits: each request pays its own prefill).
    let request = |i: usize| BatchRequest {
        prompt: super::serve_http::prompt_ids(i, args.prompt, vocab as usize),
        max_new: args.max_tokens,
        sampler: Sampler { temperature: 0.0, ..Sampler::default() },
        stop: vec![],
        constraint: None,
        logprobs: None,
        prompt_logprobs: None,
    };
    let per_seq = (args.prompt + args.max_tokens).div_ceil(args.block_size);
    let cfg = SchedulerConfig {
        num_blocks: per_seq * clients,
        block_size: args.block_size,
        kv_dtype: args.kv_dtype,
        prefix_caching: false,
        max_num_seqs: clients,
        max_tokens_per_step: 512.max(args.prompt),
    };
    let mut engine = BatchEngine::new(model, cfg, device)?;
    let start = Instant::now();
    let mut sent = 0;
    let mut began = std::collections::HashMap::new();
    let mut latency = 0.0;
    while sent < clients.min(total) {
        began.insert(engine.add(request(sent))?, Instant::now());
        sent += 1;
    }
    let mut tokens = 0u64;
    while engine.has_work() {
        for e in engine.step()? {
            match e {
                StepEvent::Token { .. } => tokens += 1,
                StepEvent::PromptLogprobs { .. } => {}
                StepEvent::Finished { id, .. } => {
                    latency += began.remove(&id).map_or(0.0, |t| t.elapsed().as_secs_f64());
                    if sent < total {
                        began.insert(engine.add(request(sent))?, Instant::now());
                        sent += 1;
                    }
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Row { clients, requests: total, tokens, secs, steps: engine.stats().steps, latency: latency / total as f64 })
}

/// Runs the benchmark and prints the table.
pub fn run(args: &ServeBench, device: &Device) -> Result<()> {
    let path = args.model.clone().unwrap_or_else(super::generate::default_model);
    anyhow::ensure!(path.exists(), "{} is missing (run `python3 tools/fetch_models.py smollm2`)", path.display());
    anyhow::ensure!(args.requests > 0 && args.prompt > 0 && args.max_tokens > 0, "sizes must be positive");
    anyhow::ensure!(args.clients.iter().all(|&c| c > 0), "--clients must be positive");
    let m = generate::load_model(&path, device).with_context(|| format!("loading {}", path.display()))?;
    let ctx = m.model.cfg.n_positions;
    anyhow::ensure!(args.prompt + args.max_tokens < ctx, "prompt + max tokens exceed the context of {ctx}");
    let load = |url: String, model: String| super::serve_http::HttpLoad {
        url,
        model,
        vocab: m.model.cfg.vocab_size,
        clients: args.clients.clone(),
        requests: args.requests,
        prompt: args.prompt,
        max_tokens: args.max_tokens,
    };
    if let Some(url) = &args.url {
        let url = url.trim_end_matches('/').to_string();
        let rt = runtime()?;
        let name = super::serve_http::first_model(&rt, &url)?;
        return super::serve_http::run(&rt, &load(url, name));
    }
    println!(
        "kiln bench serve: {} — {} requests per client, prompt {} tokens, {} generated each, KV {}, {} threads",
        path.display(),
        args.requests,
        args.prompt,
        args.max_tokens,
        args.kv_dtype,
        kiln_cpu::num_threads()
    );
    let mut clients = args.clients.clone();
    if !clients.contains(&1) {
        clients.insert(0, 1); // the one-by-one baseline
    }
    clients.sort_unstable();
    let mut base = None;
    println!("| clients | requests | tokens | seconds | tok/s | vs one by one | mean batch | mean latency (s) |");
    println!("|---|---|---|---|---|---|---|---|");
    for c in clients {
        let r = run_clients(&m.model, args, c, device)?;
        let tps = r.tokens as f64 / r.secs;
        let b = *base.get_or_insert(tps);
        println!(
            "| {} | {} | {} | {:.2} | {:.1} | {:.2}× | {:.1} | {:.2} |",
            r.clients,
            r.requests,
            r.tokens,
            r.secs,
            tps,
            tps / b,
            r.tokens as f64 / r.steps.max(1) as f64,
            r.latency
        );
    }
    if args.http {
        let maxc = args.clients.iter().copied().max().unwrap_or(1);
        let opts = kiln_serve::ServeOptions {
            max_num_seqs: maxc,
            queue_len: maxc,
            kv_blocks: (args.prompt + args.max_tokens).div_ceil(args.block_size) * maxc,
            block_size: args.block_size,
            kv_dtype: args.kv_dtype,
            prefix_caching: false,
            max_tokens_limit: args.max_tokens.max(16),
            ..Default::default()
        };
        let rt = runtime()?;
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).context("binding 127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr().context("reading the bound address")?);
        let http = load(url, "bench".into());
        let served = kiln_serve::ServedModel {
            name: "bench".into(),
            model: m.model,
            tok: m.tok,
            chat: m.chat,
            stop: m.stop,
            bos: m.bos,
        };
        opts.validate()?;
        rt.spawn(async move {
            if let Err(e) = kiln_serve::serve(listener, served, opts).await {
                eprintln!("kiln bench serve: the server stopped: {e}");
            }
        });
        super::serve_http::run(&rt, &http)?;
    }
    Ok(())
}

/// A multi-threaded tokio runtime for the HTTP rows (client and, with `--http`, server).
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("building the tokio runtime")
}
