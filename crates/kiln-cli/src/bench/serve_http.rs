//! `kiln bench serve --http | --url URL`: the closed-loop load of `kiln bench serve` over real
//! HTTP. Each of `c` clients keeps one streaming `/v1/completions` request in flight until it
//! has sent its share — the load vLLM's `benchmark_serving` and llama.cpp's server benchmarks
//! apply — against kiln's own server started in this process on an ephemeral port (`--http`:
//! the difference to the engine rows is HTTP, JSON and SSE), or any OpenAI-compatible server
//! at `--url` (vLLM, llama.cpp's `llama-server`, another kiln).
//!
//! Requests carry token-id prompts (the same ids as the engine rows), `temperature: 0`,
//! `ignore_eos: true` (every request generates `max_tokens`) and
//! `stream_options.include_usage`, so generated tokens are counted from the servers' own usage
//! chunks. Reported per row: tokens/s, its ratio to one client, mean time to the first token,
//! mean and worst request latency, and failed requests (any non-200 or broken stream).

use anyhow::{Context, Result};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Options of the HTTP rows.
pub struct HttpLoad {
    /// Base URL (`http://host:port`), no trailing slash.
    pub url: String,
    /// The `model` field of each request.
    pub model: String,
    /// Vocabulary size: prompt ids are drawn below it.
    pub vocab: usize,
    /// Concurrent clients per row (1 is always run first).
    pub clients: Vec<usize>,
    /// Requests per client.
    pub requests: usize,
    /// Prompt tokens per request.
    pub prompt: usize,
    /// Tokens generated per request.
    pub max_tokens: usize,
}

/// What one request measured.
struct Sample {
    tokens: u64,
    ttft: f64,
    latency: f64,
}

/// The token-id prompt of request `i` (the engine rows' formula: distinct, no prefix hits).
pub fn prompt_ids(i: usize, len: usize, vocab: usize) -> Vec<u32> {
    let v = vocab.max(2) as u64;
    (0..len as u64).map(|j| ((i as u64 * 7919 + j * 104_729 + 17) % (v - 1) + 1) as u32).collect()
}

/// One streaming completion; `Err` names what failed.
async fn one(client: &reqwest::Client, load: &HttpLoad, i: usize) -> Result<Sample, String> {
    let body = json!({
        "model": load.model,
        "prompt": prompt_ids(i, load.prompt, load.vocab),
        "max_tokens": load.max_tokens,
        "temperature": 0.0,
        "ignore_eos": true,
        "stream": true,
        "stream_options": { "include_usage": true },
    });
    let start = Instant::now();
    let r = client
        .post(format!("{}/v1/completions", load.url))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("sending: {e}"))?;
    if r.status() != 200 {
        let status = r.status();
        return Err(format!("HTTP {status}: {}", r.text().await.unwrap_or_default()));
    }
    let (mut buf, mut ttft, mut tokens, mut done) = (Vec::<u8>::new(), None, None, false);
    let mut stream = r.bytes_stream();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk.map_err(|e| format!("reading the stream: {e}"))?);
        // complete events end with a blank line
        while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            for line in String::from_utf8_lossy(&event).lines() {
                let Some(data) = line.strip_prefix("data: ") else { continue };
                if data.trim() == "[DONE]" {
                    done = true;
                    continue;
                }
                let v: Value = serde_json::from_str(data).map_err(|e| format!("bad event {data:?}: {e}"))?;
                if ttft.is_none() && v["choices"][0]["text"].as_str().is_some_and(|t| !t.is_empty()) {
                    ttft = Some(start.elapsed().as_secs_f64());
                }
                if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                    tokens = Some(n);
                }
            }
        }
    }
    let latency = start.elapsed().as_secs_f64();
    match (done, tokens) {
        (true, Some(tokens)) => Ok(Sample { tokens, ttft: ttft.unwrap_or(latency), latency }),
        (false, _) => Err("the stream ended without [DONE]".into()),
        (true, None) => Err("no usage chunk (stream_options.include_usage unsupported?)".into()),
    }
}

/// One row: `clients` closed-loop clients sharing `clients · requests` requests.
async fn row(client: &reqwest::Client, load: &HttpLoad, clients: usize) -> (Vec<Sample>, Vec<String>, f64) {
    let total = clients * load.requests;
    let next = std::sync::atomic::AtomicUsize::new(0);
    let start = Instant::now();
    let results = futures_util::future::join_all((0..clients).map(|_| async {
        let mut out = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= total {
                return out;
            }
            out.push(one(client, load, i).await);
        }
    }))
    .await;
    let secs = start.elapsed().as_secs_f64();
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for r in results.into_iter().flatten() {
        match r {
            Ok(s) => ok.push(s),
            Err(e) => failed.push(e),
        }
    }
    (ok, failed, secs)
}

/// Runs every row against `load.url` on `rt` and prints the table.
pub fn run(rt: &tokio::runtime::Runtime, load: &HttpLoad) -> Result<()> {
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(600)).build().context("building the HTTP client")?;
    let mut clients = load.clients.clone();
    if !clients.contains(&1) {
        clients.insert(0, 1);
    }
    clients.sort_unstable();
    println!(
        "over HTTP: {} (model {:?}), streaming /v1/completions, prompt {} tokens, {} generated each",
        load.url, load.model, load.prompt, load.max_tokens
    );
    println!("| clients | requests | failed | tokens | seconds | tok/s | vs one by one | mean TTFT (s) | mean latency (s) | worst (s) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut base = None;
    for c in clients {
        let (ok, failed, secs) = rt.block_on(row(&client, load, c));
        let tokens: u64 = ok.iter().map(|s| s.tokens).sum();
        let tps = tokens as f64 / secs;
        let b = *base.get_or_insert(tps);
        let n = ok.len().max(1) as f64;
        println!(
            "| {c} | {} | {} | {tokens} | {secs:.2} | {tps:.1} | {:.2}× | {:.3} | {:.2} | {:.2} |",
            ok.len() + failed.len(),
            failed.len(),
            tps / b.max(1e-9),
            ok.iter().map(|s| s.ttft).sum::<f64>() / n,
            ok.iter().map(|s| s.latency).sum::<f64>() / n,
            ok.iter().map(|s| s.latency).fold(0.0, f64::max),
        );
        if let Some(e) = failed.first() {
            println!("  first failure: {e}");
        }
    }
    Ok(())
}

/// The first model a server lists at `/v1/models`.
pub fn first_model(rt: &tokio::runtime::Runtime, url: &str) -> Result<String> {
    rt.block_on(async {
        let v: Value = reqwest::get(format!("{url}/v1/models"))
            .await
            .with_context(|| format!("GET {url}/v1/models"))?
            .json()
            .await
            .with_context(|| format!("{url}/v1/models: not JSON"))?;
        v["data"][0]["id"].as_str().map(str::to_string).with_context(|| format!("{url}/v1/models lists no model: {v}"))
    })
}
