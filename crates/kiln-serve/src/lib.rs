//! # kiln-serve
//!
//! An OpenAI-compatible HTTP server (axum + tokio) for kiln's decoder models: official OpenAI
//! clients work against it unchanged (`base_url = "http://HOST:PORT/v1"`).
//!
//! - `POST /v1/completions`: `prompt` (a string, or token ids), `max_tokens` (default
//!   [`ServeOptions::default_max_tokens`]), `temperature` (0–2; 0 is greedy), `top_p`,
//!   `top_k` (an extension; 0 or -1 for all tokens), `presence_penalty` and `frequency_penalty`
//!   (−2…2), `repetition_penalty` and `min_p` (extensions, as in vLLM), `seed`, `stop` (a
//!   string or a list), `ignore_eos` (vLLM's benchmark extension: generate through the
//!   model's end-of-sequence tokens),
//!   `stream`, `stream_options.include_usage`, `echo`; `n` must be 1.
//! - `POST /v1/chat/completions`: `messages` (`role` and `content`: a string or text parts),
//!   rendered with the model's chat template, or [`default_chat_prompt`] (`<|role|>\ncontent\n`
//!   per message, then `<|assistant|>\n`) when it has none; `max_completion_tokens` or
//!   `max_tokens` (default: what the context leaves, up to
//!   [`ServeOptions::max_tokens_limit`]); the same sampling fields.
//! - Responses carry `id`, `object`, `created`, `model`, `choices` (`text` or `message`,
//!   `finish_reason` `"stop"` for a stop token or stop string, `"length"` for `max_tokens`) and
//!   `usage`. With `stream: true` they are server-sent events as OpenAI sends them: one
//!   `data: {chunk}` per piece of text (chat: the first chunk's `delta` holds the role), a
//!   chunk with the `finish_reason`, then `data: [DONE]`. Text that may be the start of a stop
//!   string is held back until it is known not to be one.
//! - `GET /v1/models`, `GET /health`, `GET /metrics` (Prometheus: requests by endpoint and
//!   status, queue depth, running sequences, prompt and generated tokens, tokens/s).
//! - Bad input is a 4xx in OpenAI's error shape `{"error": {"message", "type", "param",
//!   "code"}}`: malformed JSON, missing or mistyped fields, out-of-range sampling values,
//!   prompts or `max_tokens` beyond the context (`context_length_exceeded`), an unknown model
//!   (404 `model_not_found`), and features it does not implement (logprobs, logit_bias, tools).
//!
//! Generation runs off the async runtime on one worker thread that owns the model and a
//! continuous-batching engine ([`kiln_infer::BatchEngine`]): up to
//! [`ServeOptions::max_num_seqs`] sequences advance together, one batched forward pass per
//! token, their keys and values in a paged KV cache ([`ServeOptions::kv_blocks`],
//! [`ServeOptions::block_size`], [`ServeOptions::kv_dtype`]) with prefix caching; when blocks
//! run out the youngest sequence is preempted and recomputed later. Requests beyond the batch
//! wait in a bounded queue ([`ServeOptions::queue_len`]; a full queue is a 429).
//! [`ServeOptions::request_timeout`] bounds queue wait plus generation (408, or an error event
//! once a stream has begun). A client that disconnects cancels its sequence before the next
//! step, and its KV blocks are freed. `/metrics` adds KV blocks used and total, waiting
//! sequences, preemptions, prefix-cache hits and engine steps.

mod error;
mod generate;
mod info;
mod metrics;
mod model;
mod options;
mod request;
mod response;
mod server;
mod stop;
mod worker;

pub use error::ServeError;
pub use model::{default_chat_prompt, ServedModel};
pub use options::ServeOptions;
pub use server::{router, serve, serve_blocking};
