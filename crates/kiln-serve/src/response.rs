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

    /// The whole (non-streamed) response.
    pub fn body(&self, text: &str, finish: &str, usage: Value) -> Value {
        let mut v = match self.endpoint {
            Endpoint::Completions => self.object(
                json!([{ "text": text, "index": 0, "logprobs": null, "finish_reason": finish }]),
                "text_completion",
            ),
            Endpoint::Chat => self.object(
                json!([{
                    "index": 0,
                    "message": { "role": "assistant", "content": text, "refusal": null },
                    "logprobs": null,
                    "finish_reason": finish,
                }]),
                "chat.completion",
            ),
        };
        v["usage"] = usage;
        v
    }

    /// One streamed chunk: `text` (for chat, the first chunk carries the role instead) and,
    /// in the last one, `finish`.
    pub fn chunk(&self, text: Option<&str>, first: bool, finish: Option<&str>) -> Value {
        match self.endpoint {
            Endpoint::Completions => self.object(
                json!([{ "text": text.unwrap_or(""), "index": 0, "logprobs": null, "finish_reason": finish }]),
                "text_completion",
            ),
            Endpoint::Chat => {
                let delta = match (first, text) {
                    (true, _) => json!({ "role": "assistant", "content": "" }),
                    (false, Some(t)) => json!({ "content": t }),
                    (false, None) => json!({}),
                };
                self.object(
                    json!([{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish }]),
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

/// One server-sent event carrying `data`.
pub fn sse(data: &Value) -> String {
    format!("data: {data}\n\n")
}

/// The event that ends every stream.
pub const SSE_DONE: &str = "data: [DONE]\n\n";
