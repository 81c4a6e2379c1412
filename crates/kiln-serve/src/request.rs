//! Parsing and validating request bodies: every mistake becomes a 400 (or 404 for an unknown
//! model) in OpenAI's error shape, naming the field at fault.

use crate::error::ApiError;
use crate::response::Endpoint;
use kiln_data::ChatMessage;
use kiln_infer::Sampler;
use serde_json::{Map, Value};

/// The fields of a JSON request body; `null` counts as absent (clients send explicit nulls).
pub struct Fields(Map<String, Value>);

fn missing(name: &str) -> ApiError {
    ApiError::invalid(format!("Missing required parameter: '{name}'."), Some(name))
        .with_code("missing_required_parameter")
}

fn wrong_type(name: &str, want: &str, got: &Value) -> ApiError {
    ApiError::invalid(format!("Invalid type for '{name}': expected {want}, but got {}.", kind_of(got)), Some(name))
        .with_code("invalid_type")
}

fn unsupported(name: &str, what: &str) -> ApiError {
    ApiError::invalid(format!("'{name}': {what} is not supported by this server."), Some(name))
        .with_code("unsupported_value")
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Fields {
    /// Parses a body that must be a JSON object.
    pub fn parse(body: &[u8]) -> Result<Fields, ApiError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::invalid(
                format!(
                    "We could not parse the JSON body of your request ({e}). The OpenAI API expects a JSON payload."
                ),
                None,
            )
        })?;
        match value {
            Value::Object(map) => Ok(Fields(map)),
            other => Err(ApiError::invalid(
                format!("The request body must be a JSON object, not {}.", kind_of(&other)),
                None,
            )),
        }
    }

    /// A field, `None` when absent or null.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// A number field.
    pub fn f64(&self, name: &str) -> Result<Option<f64>, ApiError> {
        self.get(name).map(|v| v.as_f64().ok_or_else(|| wrong_type(name, "a number", v))).transpose()
    }

    /// An integer field.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        self.get(name)
            .map(|v| match v {
                Value::Number(n) => {
                    n.as_i64().or_else(|| n.as_u64().map(|_| i64::MAX)).ok_or_else(|| wrong_type(name, "an integer", v))
                }
                _ => Err(wrong_type(name, "an integer", v)),
            })
            .transpose()
    }

    /// A boolean field.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.get(name).map(|v| v.as_bool().ok_or_else(|| wrong_type(name, "a boolean", v))).transpose()
    }

    /// A string field.
    pub fn str(&self, name: &str) -> Result<Option<&str>, ApiError> {
        self.get(name).map(|v| v.as_str().ok_or_else(|| wrong_type(name, "a string", v))).transpose()
    }

    /// The required `model` field.
    pub fn model(&self) -> Result<&str, ApiError> {
        self.str("model")?.ok_or_else(|| missing("model"))
    }
}

/// The generation settings common to both endpoints.
#[derive(Clone, Debug)]
pub struct Common {
    /// `max_tokens` if given (validated against the limit, not yet against the context).
    pub max_tokens: Option<usize>,
    /// Sampling settings.
    pub sampler: Sampler,
    /// Stop strings.
    pub stop: Vec<String>,
    /// Server-sent events instead of one JSON body.
    pub stream: bool,
    /// `stream_options.include_usage`: a last chunk with the usage.
    pub include_usage: bool,
    /// Choices to generate (`n`).
    pub n: usize,
    /// `ignore_eos` (vLLM's extension, for benchmarks): keep generating past the model's
    /// end-of-sequence tokens until `max_tokens` or a stop string.
    pub ignore_eos: bool,
}

/// Most choices a request may ask for (`n`).
pub const MAX_N: usize = 16;

/// Most alternatives per token a request may ask for (`top_logprobs`, completions' `logprobs`).
pub const MAX_TOP_LOGPROBS: usize = 20;

/// The log-probabilities a request asks for: `None`, or `Some(k)` alternatives per token.
/// Completions: `logprobs` is that `k` (0 = only the sampled token's; with `echo`, the prompt's
/// tokens are scored too); chat: `logprobs: true`, with `top_logprobs: k` (which needs
/// `logprobs: true`).
pub fn logprobs(f: &Fields, endpoint: Endpoint) -> Result<Option<usize>, ApiError> {
    let range = |name: &str, k: i64| -> Result<usize, ApiError> {
        if (0..=MAX_TOP_LOGPROBS as i64).contains(&k) {
            Ok(k as usize)
        } else {
            Err(ApiError::invalid(format!("'{name}' must be between 0 and {MAX_TOP_LOGPROBS}, got {k}."), Some(name))
                .with_code("invalid_value"))
        }
    };
    match endpoint {
        Endpoint::Completions => {
            let k = match f.get("logprobs") {
                None | Some(Value::Bool(false)) => None,
                Some(_) => Some(range("logprobs", f.int("logprobs")?.unwrap_or(0))?),
            };
            if k.is_some() && f.bool("echo")?.unwrap_or(false) && f.bool("stream")?.unwrap_or(false) {
                return Err(unsupported("logprobs", "streaming the log-probabilities of an echoed prompt"));
            }
            Ok(k)
        }
        Endpoint::Chat => {
            let on = f.bool("logprobs")?.unwrap_or(false);
            let top = f.int("top_logprobs")?.map(|k| range("top_logprobs", k)).transpose()?;
            match (on, top) {
                (false, Some(k)) if k > 0 => {
                    Err(ApiError::invalid("'top_logprobs' requires 'logprobs' to be true.", Some("top_logprobs"))
                        .with_code("invalid_value"))
                }
                (false, _) => Ok(None),
                (true, k) => Ok(Some(k.unwrap_or(0))),
            }
        }
    }
}

/// Most stop strings a request may give.
const MAX_STOPS: usize = 16;

fn fresh_seed() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Validates sampling, stopping and streaming fields; `max_keys` are the names `max_tokens`
/// may go by, first match wins (chat prefers `max_completion_tokens`).
pub fn common(f: &Fields, max_keys: &[&str], max_tokens_limit: usize) -> Result<Common, ApiError> {
    let mut max_tokens = None;
    for &key in max_keys {
        if let Some(m) = f.int(key)? {
            // 0 is accepted here for completions that echo the prompt (scoring it): see prepare.
            if m < 0 {
                return Err(ApiError::invalid(format!("'{key}' must be at least 1, got {m}."), Some(key))
                    .with_code("invalid_value"));
            }
            if m as u64 > max_tokens_limit as u64 {
                return Err(ApiError::invalid(
                    format!("'{key}' is too large: {m}. This server allows at most {max_tokens_limit}."),
                    Some(key),
                )
                .with_code("invalid_value"));
            }
            max_tokens = Some(m as usize);
            break;
        }
    }
    let n = f.int("n")?.unwrap_or(1);
    if !(1..=MAX_N as i64).contains(&n) {
        return Err(ApiError::invalid(format!("'n' must be between 1 and {MAX_N}, got {n}."), Some("n"))
            .with_code("invalid_value"));
    }
    let temperature = f.f64("temperature")?.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            format!("'temperature' must be between 0 and 2, got {temperature}."),
            Some("temperature"),
        )
        .with_code("invalid_value"));
    }
    let top_p = f.f64("top_p")?.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid(format!("'top_p' must be in (0, 1], got {top_p}."), Some("top_p"))
            .with_code("invalid_value"));
    }
    let top_k = f.int("top_k")?.unwrap_or(0);
    if top_k < -1 {
        return Err(ApiError::invalid(
            format!("'top_k' must be -1 or 0 (all tokens) or positive, got {top_k}."),
            Some("top_k"),
        )
        .with_code("invalid_value"));
    }
    let seed = f.int("seed")?.map_or_else(fresh_seed, |s| s as u64);
    let stop = match f.get("stop") {
        None => vec![],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| wrong_type("stop", "strings", v)))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(wrong_type("stop", "a string or an array of strings", other)),
    };
    if stop.len() > MAX_STOPS {
        return Err(ApiError::invalid(format!("'stop' may hold at most {MAX_STOPS} strings."), Some("stop"))
            .with_code("invalid_value"));
    }
    let stream = f.bool("stream")?.unwrap_or(false);
    let include_usage = match f.get("stream_options") {
        None => false,
        Some(Value::Object(o)) => match o.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => return Err(wrong_type("stream_options.include_usage", "a boolean", v)),
        },
        Some(v) => return Err(wrong_type("stream_options", "an object", v)),
    };
    let penalty = |name: &'static str, default: f64, ok: fn(f64) -> bool, range: &str| -> Result<f64, ApiError> {
        let v = f.f64(name)?.unwrap_or(default);
        if ok(v) {
            Ok(v)
        } else {
            Err(ApiError::invalid(format!("'{name}' must be {range}, got {v}."), Some(name)).with_code("invalid_value"))
        }
    };
    let presence_penalty = penalty("presence_penalty", 0.0, |v| (-2.0..=2.0).contains(&v), "between -2 and 2")?;
    let frequency_penalty = penalty("frequency_penalty", 0.0, |v| (-2.0..=2.0).contains(&v), "between -2 and 2")?;
    let repetition_penalty = penalty("repetition_penalty", 1.0, |v| v > 0.0 && v.is_finite(), "positive (1 = off)")?;
    let min_p = penalty("min_p", 0.0, |v| (0.0..=1.0).contains(&v), "between 0 and 1")?;
    refuse_unsupported(f)?;
    let sampler = Sampler {
        temperature,
        top_k: top_k.max(0) as usize,
        top_p,
        min_p,
        repetition_penalty,
        presence_penalty,
        frequency_penalty,
        seed,
    };
    let ignore_eos = f.bool("ignore_eos")?.unwrap_or(false);
    Ok(Common { max_tokens, sampler, stop, stream, include_usage, n: n as usize, ignore_eos })
}

/// Features of the API this server does not implement: asking for them is a 400, not a silent
/// ignore (their neutral values are accepted).
fn refuse_unsupported(f: &Fields) -> Result<(), ApiError> {
    if f.int("best_of")?.unwrap_or(1) != 1 {
        return Err(unsupported("best_of", "best_of other than 1"));
    }
    if f.str("suffix")?.is_some_and(|s| !s.is_empty()) {
        return Err(unsupported("suffix", "a suffix"));
    }
    for name in ["logit_bias", "tools", "functions"] {
        let empty = match f.get(name) {
            None => true,
            Some(Value::Object(o)) => o.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            Some(_) => false,
        };
        if !empty {
            return Err(unsupported(name, name));
        }
    }
    Ok(())
}

/// `response_format`: `{"type": "text"}` (no constraint) or `{"type": "json_schema",
/// "json_schema": {"schema": …}}`, whose schema becomes the regex the completion must match
/// (constrained decoding). `json_object` (any JSON) is not a regular language: refused.
pub fn response_format(f: &Fields) -> Result<Option<String>, ApiError> {
    const P: &str = "response_format";
    let Some(rf) = f.get(P) else { return Ok(None) };
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_schema") => {
            let schema = rf.get("json_schema").and_then(|j| j.get("schema")).ok_or_else(|| {
                ApiError::invalid("'response_format.json_schema.schema' is required.", Some(P))
                    .with_code("invalid_value")
            })?;
            kiln_infer::schema_to_regex(schema).map(Some).map_err(|e| {
                ApiError::invalid(format!("Unsupported JSON schema: {e}"), Some(P)).with_code("invalid_value")
            })
        }
        Some("json_object") => {
            Err(unsupported(P, "json_object (any JSON is not a regular language: send a json_schema)"))
        }
        _ => Err(ApiError::invalid(
            format!(
                "'response_format.type' must be 'text' or 'json_schema', got {}.",
                rf.get("type").unwrap_or(&Value::Null)
            ),
            Some(P),
        )
        .with_code("invalid_value")),
    }
}

/// A completions prompt: text, or token ids given directly.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// Text to tokenize.
    Text(String),
    /// Token ids.
    Tokens(Vec<u32>),
}

/// The `prompt` of a completions request: a string, a one-string array, an array of token
/// ids, or a one-element array of such arrays (one prompt per request).
pub fn prompt(f: &Fields, vocab: usize) -> Result<Prompt, ApiError> {
    let tokens = |items: &[Value]| -> Result<Prompt, ApiError> {
        items
            .iter()
            .map(|v| match v.as_u64() {
                Some(t) if (t as u128) < vocab as u128 => Ok(t as u32),
                _ => Err(ApiError::invalid(format!("'prompt': {v} is not a token id below {vocab}."), Some("prompt"))
                    .with_code("invalid_value")),
            })
            .collect::<Result<Vec<u32>, _>>()
            .map(Prompt::Tokens)
    };
    let one_prompt = || {
        ApiError::invalid("'prompt': this server takes one prompt per request.", Some("prompt"))
            .with_code("unsupported_value")
    };
    match f.get("prompt") {
        None => Err(missing("prompt")),
        Some(Value::String(s)) => Ok(Prompt::Text(s.clone())),
        Some(Value::Array(items)) => match items.as_slice() {
            [Value::String(s)] => Ok(Prompt::Text(s.clone())),
            [Value::Array(inner)] => tokens(inner),
            all if !all.is_empty() && all.iter().all(Value::is_number) => tokens(all),
            [] => Err(ApiError::invalid("'prompt' is empty.", Some("prompt")).with_code("invalid_value")),
            all if all.iter().all(|v| v.is_string() || v.is_array()) => Err(one_prompt()),
            _ => Err(wrong_type("prompt", "a string or an array of token ids", &Value::Array(items.clone()))),
        },
        Some(other) => Err(wrong_type("prompt", "a string or an array of token ids", other)),
    }
}

/// Roles a chat message may have.
const ROLES: [&str; 6] = ["system", "developer", "user", "assistant", "tool", "function"];

/// The `messages` of a chat request; content may be a string, null, or text parts.
pub fn messages(f: &Fields) -> Result<Vec<ChatMessage>, ApiError> {
    let items = match f.get("messages") {
        None => return Err(missing("messages")),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(wrong_type("messages", "an array", other)),
    };
    if items.is_empty() {
        return Err(ApiError::invalid("'messages' must contain at least one message.", Some("messages"))
            .with_code("invalid_value"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let at = |field: &str| format!("messages[{i}].{field}");
            let obj = m.as_object().ok_or_else(|| wrong_type(&format!("messages[{i}]"), "an object", m))?;
            let role = match obj.get("role") {
                Some(Value::String(r)) => r.clone(),
                None | Some(Value::Null) => return Err(missing(&at("role"))),
                Some(v) => return Err(wrong_type(&at("role"), "a string", v)),
            };
            if !ROLES.contains(&role.as_str()) {
                return Err(ApiError::invalid(
                    format!("Invalid value: '{role}'. Supported roles are {}.", ROLES.join(", ")),
                    Some(&at("role")),
                )
                .with_code("invalid_value"));
            }
            let content = match obj.get("content") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(parts)) => parts
                    .iter()
                    .map(|p| match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str)) {
                        (Some("text"), Some(t)) => Ok(t),
                        _ => Err(unsupported(&at("content"), "a content part other than text")),
                    })
                    .collect::<Result<String, _>>()?,
                Some(v) => return Err(wrong_type(&at("content"), "a string or an array of text parts", v)),
            };
            Ok(ChatMessage { role, content })
        })
        .collect()
}
