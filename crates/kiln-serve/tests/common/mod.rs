//! Shared test helpers: a random model with a character tokenizer, served on 127.0.0.1:0,
//! and small HTTP/SSE helpers.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // tests fail loudly by design

use kiln_data::{CharTokenizer, ChatTemplate, Tokenizer};
use kiln_models::gpt::{Gpt, GptConfig};
use kiln_serve::{ServeOptions, ServedModel};
use serde_json::{json, Value};

/// Printable ASCII and newline.
pub fn char_tokenizer() -> Tokenizer {
    let text: String = (32u8..127).map(char::from).chain(['\n']).collect();
    Tokenizer::Char(CharTokenizer::train(&text))
}

/// A random GPT-2-style model over [`char_tokenizer`] (`width` wide, `layers` deep, context `ctx`).
pub fn model(width: usize, layers: usize, ctx: usize) -> ServedModel {
    let tok = char_tokenizer();
    let cfg = GptConfig::gpt2(tok.vocab_size(), ctx, width, layers, 4);
    let model = Gpt::new(cfg, 7, &kiln_cpu::cpu()).unwrap();
    ServedModel { name: "tiny".into(), model, tok, chat: None, stop: vec![], bos: None }
}

/// A fast model: 32 wide, 2 layers, context 128.
pub fn tiny() -> ServedModel {
    model(32, 2, 128)
}

/// A simple chat template.
pub fn template() -> ChatTemplate {
    ChatTemplate::new(
        "{% for m in messages %}[{{ m.role }}]{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}",
        "",
        "",
    )
    .unwrap()
}

/// Serves `m` on a fresh port; returns `http://127.0.0.1:PORT`.
pub async fn start(m: ServedModel, opts: ServeOptions) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        if let Err(e) = kiln_serve::serve(listener, m, opts).await {
            eprintln!("server stopped: {e}");
        }
    });
    format!("http://{addr}")
}

/// POSTs `body` (JSON) to `base + path`; returns status and parsed JSON body.
pub async fn post(client: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = client.post(url).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}")))
}

/// POSTs raw bytes.
pub async fn post_raw(client: &reqwest::Client, url: &str, body: &str) -> (u16, Value) {
    let r = client.post(url).header("content-type", "application/json").body(body.to_string()).send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}")))
}

/// The `data:` payloads of an SSE body, checking the framing (`data: …\n\n` events, the last
/// one `[DONE]`); returns the JSON chunks before `[DONE]`.
pub fn parse_sse(body: &str) -> Vec<Value> {
    assert!(body.ends_with("data: [DONE]\n\n"), "stream must end with [DONE]: {body:?}");
    let events: Vec<&str> = body.split_terminator("\n\n").collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    events[..events.len() - 1]
        .iter()
        .map(|e| {
            let data = e.strip_prefix("data: ").unwrap_or_else(|| panic!("bad event {e:?}"));
            assert!(!data.contains('\n'), "one line per event: {data:?}");
            serde_json::from_str(data).unwrap()
        })
        .collect()
}

/// POSTs a streaming request; returns status, content type and the parsed chunks.
pub async fn post_stream(client: &reqwest::Client, url: &str, body: &Value) -> (u16, String, Vec<Value>) {
    let r = client.post(url).json(body).send().await.unwrap();
    let status = r.status().as_u16();
    let ctype = r.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let text = r.text().await.unwrap();
    (status, ctype, parse_sse(&text))
}

/// The concatenated text of completion or chat chunks.
pub fn stream_text(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"].get(0))
        .map(|ch| ch["text"].as_str().or_else(|| ch["delta"]["content"].as_str()).unwrap_or("").to_string())
        .collect()
}

/// The `finish_reason` of the stream (the one non-null one).
pub fn stream_finish(chunks: &[Value]) -> String {
    let reasons: Vec<&str> =
        chunks.iter().filter_map(|c| c["choices"].get(0)).filter_map(|ch| ch["finish_reason"].as_str()).collect();
    assert_eq!(reasons.len(), 1, "{chunks:?}");
    reasons[0].to_string()
}

/// GET `/metrics` and the value of the sample named exactly `series` (0 if absent).
pub async fn metric(client: &reqwest::Client, base: &str, series: &str) -> f64 {
    let text = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.rsplit_once(' ').filter(|(name, _)| *name == series).map(|(_, v)| v.parse().unwrap()))
        .unwrap_or(0.0)
}

/// A greedy completions request.
pub fn greedy(prompt: &str, max_tokens: usize) -> Value {
    json!({ "model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0 })
}

/// A seeded sampling request (random models sample diverse text at temperature 1; greedy
/// decoding of them tends to repeat one character).
pub fn seeded(prompt: &str, max_tokens: usize) -> Value {
    json!({ "model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "temperature": 1.0, "seed": 1 })
}
