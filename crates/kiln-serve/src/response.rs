//! Response bodies and stream chunks, shaped as the OpenAI API shapes them.

use serde_json::{json, Value};

/// Which endpoint a response belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/completions`.
    Completions,
    /// `/v1/chat/completions`.
    Chat,
}

/// The fields every body and chunk of one response shares.
#[derive(Clone, Debug)]
pub struct Header {
    /// Which endpoint.
    pub endpoint: Endpoint,
    /// `cmpl-…` or `chatcmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model's name.
    pub model: String,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn fresh_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut z = nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    format!("{prefix}-{:016x}", z ^ (z >> 31))
}

/// `usage` of a response.
pub fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

impl Header {
    /// A new response to `endpoint` from `model`, with a fresh id.
    pub fn new(endpoint: Endpoint, model: &str) -> Header {
        let prefix = match endpoint {
            Endpoint::Completions => "cmpl",
            Endpoint::Chat => "chatcmpl",
        };
        Header { endpoint, id: fresh_id(prefix), created: unix_now(), model: model.to_string() }
    }

    fn object(&self, choices: Value, object: &str) -> Value {
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": null,
            "choices": choices,
        })
    }

    /// The whole (non-streamed) response with its `choices` (index = position).
    pub fn body(&self, choices: &[Choice], usage: Value) -> Value {
        let choices: Vec<Value> = choices
            .iter()
            .enumerate()
            .map(|(index, c)| {
                let logprobs = c.logprobs.as_ref().map_or(Value::Null, |e| logprobs_json(self.endpoint, e, c.offset));
                match self.endpoint {
                    Endpoint::Completions => json!({
                        "text": c.text, "index": index, "logprobs": logprobs, "finish_reason": c.finish,
                    }),
                    Endpoint::Chat => json!({
                        "index": index,
                        "message": { "role": "assistant", "content": c.text, "refusal": null },
                        "logprobs": logprobs,
                        "finish_reason": c.finish,
                    }),
                }
            })
            .collect();
        let object = match self.endpoint {
            Endpoint::Completions => "text_completion",
            Endpoint::Chat => "chat.completion",
        };
        let mut v = self.object(Value::Array(choices), object);
        v["usage"] = usage;
        v
    }

    /// One streamed chunk of choice `index`: `text` (for chat, the first chunk carries the role
    /// instead), its tokens' `logprobs` (already shaped by [`logprobs_json`]) and, in the last
    /// one, `finish`.
    pub fn chunk(
        &self,
        index: usize,
        text: Option<&str>,
        first: bool,
        finish: Option<&str>,
        logprobs: Option<Value>,
    ) -> Value {
        let logprobs = logprobs.unwrap_or(Value::Null);
        match self.endpoint {
            Endpoint::Completions => self.object(
                json!([{ "text": text.unwrap_or(""), "index": index, "logprobs": logprobs, "finish_reason": finish }]),
                "text_completion",
            ),
            Endpoint::Chat => {
                let delta = match (first, text) {
                    (true, _) => json!({ "role": "assistant", "content": "" }),
                    (false, Some(t)) => json!({ "content": t }),
                    (false, None) => json!({}),
                };
                self.object(
                    json!([{ "index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish }]),
                    "chat.completion.chunk",
                )
            }
        }
    }

    /// The extra last chunk of `stream_options.include_usage`: no choices, the usage.
    pub fn usage_chunk(&self, usage: Value) -> Value {
        let object = match self.endpoint {
            Endpoint::Completions => "text_completion",
            Endpoint::Chat => "chat.completion.chunk",
        };
        let mut v = self.object(json!([]), object);
        v["usage"] = usage;
        v
    }
}

/// One finished choice of a non-streamed response.
#[derive(Clone, Debug, Default)]
pub struct Choice {
    /// The completion (after an echoed prompt, for completions with `echo`).
    pub text: String,
    /// `stop` or `length`.
    pub finish: &'static str,
    /// Its tokens' log-probabilities, when asked for (an echoed prompt's tokens first).
    pub logprobs: Option<Vec<LogprobEntry>>,
    /// Characters before the first token (an echoed prompt), for completions' `text_offset`.
    pub offset: usize,
}

/// One generated token's log-probabilities, rendered for the API: the token's text (its bytes
/// as UTF-8, lossily: a token may hold part of a character) and bytes, its log-probability and
/// the most likely alternatives'.
#[derive(Clone, Debug, PartialEq)]
pub struct LogprobEntry {
    /// The token's text.
    pub token: String,
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// `log p(token)` under the model (`None` for a prompt's first token: nothing precedes it).
    pub logprob: Option<f32>,
    /// The most likely tokens at this position: text, bytes, log-probability.
    pub top: Vec<(String, Vec<u8>, f32)>,
}

/// The `logprobs` object of a choice or chunk. Chat: `{"content": [{token, logprob, bytes,
/// top_logprobs: [{token, logprob, bytes}]}], "refusal": null}`. Completions (the legacy shape):
/// `{tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset}`, offsets in
/// characters from the start of the choice's text, the first being `offset`.
pub fn logprobs_json(endpoint: Endpoint, entries: &[LogprobEntry], offset: usize) -> Value {
    match endpoint {
        Endpoint::Chat => {
            let content: Vec<Value> = entries
                .iter()
                .map(|e| {
                    let top: Vec<Value> =
                        e.top.iter().map(|(t, b, lp)| json!({ "token": t, "logprob": lp, "bytes": b })).collect();
                    json!({ "token": e.token, "logprob": e.logprob, "bytes": e.bytes, "top_logprobs": top })
                })
                .collect();
            json!({ "content": content, "refusal": null })
        }
        Endpoint::Completions => {
            let mut at = offset;
            let mut text_offset = Vec::with_capacity(entries.len());
            for e in entries {
                text_offset.push(at);
                at += e.token.chars().count();
            }
            let top: Vec<Value> = entries
                .iter()
                .map(|e| match e.logprob {
                    None => Value::Null,
                    Some(_) => Value::Object(e.top.iter().map(|(t, _, lp)| (t.clone(), json!(lp))).collect()),
                })
                .collect();
            json!({
                "tokens": entries.iter().map(|e| e.token.as_str()).collect::<Vec<_>>(),
                "token_logprobs": entries.iter().map(|e| e.logprob).collect::<Vec<_>>(),
                "top_logprobs": top,
                "text_offset": text_offset,
            })
        }
    }
}

/// One server-sent event carrying `data`.
pub fn sse(data: &Value) -> String {
    format!("data: {data}\n\n")
}

/// The event that ends every stream.
pub const SSE_DONE: &str = "data: [DONE]\n\n";
