//! The two generation endpoints: a validated request becomes a [`Job`] for the worker, whose
//! events come back as one JSON body or as server-sent events.

use crate::error::ApiError;
use crate::model::{chat_prompt, encode_prompt};
use crate::request::{self, Fields, Prompt};
use crate::response::{logprobs_json, sse, usage, Choice, Endpoint, Header, SSE_DONE};
use crate::server::AppState;
use crate::worker::{Event, Job};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use kiln_infer::{RegexConstraint, Sampler};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::time::timeout_at;

/// A request ready for the worker.
struct Prepared {
    endpoint: Endpoint,
    prompt: Vec<u32>,
    /// Completions with `echo`: the prompt text, returned before the completion.
    echo: Option<String>,
    max_tokens: usize,
    sampler: Sampler,
    stop: Vec<String>,
    stream: bool,
    include_usage: bool,
    /// `response_format`'s constraint.
    constraint: Option<Arc<RegexConstraint>>,
    /// Choices (`n`).
    n: usize,
    /// Log-probabilities with this many alternatives per token.
    logprobs: Option<usize>,
    /// Completions with `echo` and `logprobs`: score the prompt too.
    prompt_logprobs: Option<usize>,
    /// Generate past end-of-sequence tokens.
    ignore_eos: bool,
}

fn body_error(r: BytesRejection) -> ApiError {
    ApiError::invalid(r.body_text(), None).with_status(r.status())
}

/// `POST /v1/completions`.
pub async fn completions(State(app): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    handle(app, Endpoint::Completions, body).await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /v1/chat/completions`.
pub async fn chat(State(app): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    handle(app, Endpoint::Chat, body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn handle(app: AppState, endpoint: Endpoint, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    // Parsing, chat templating and tokenizing a long prompt are CPU work: off the async threads.
    let state = app.clone();
    let prepared = tokio::task::spawn_blocking(move || prepare(&state, endpoint, &body))
        .await
        .map_err(|e| ApiError::internal(format!("request preparation failed: {e}")))??;
    run(app, prepared).await
}

fn prepare(app: &AppState, endpoint: Endpoint, body: &[u8]) -> Result<Prepared, ApiError> {
    let s = app.shared();
    let f = Fields::parse(body)?;
    let model = f.model()?;
    if model != s.name {
        return Err(ApiError::model_not_found(model));
    }
    let max_keys: &[&str] = match endpoint {
        Endpoint::Completions => &["max_tokens"],
        Endpoint::Chat => &["max_completion_tokens", "max_tokens"],
    };
    let common = request::common(&f, max_keys, s.opts.max_tokens_limit)?;
    let (prompt, echo, param) = match endpoint {
        Endpoint::Completions => {
            let echo = f.bool("echo")?.unwrap_or(false);
            match request::prompt(&f, s.vocab)? {
                Prompt::Text(t) => (encode_prompt(&s.tok, s.bos, &t, "prompt")?, echo.then_some(t), "prompt"),
                Prompt::Tokens(ids) => {
                    let text = if echo {
                        Some(s.tok.decode(&ids).map_err(|e| ApiError::invalid(e.to_string(), Some("prompt")))?)
                    } else {
                        None
                    };
                    (ids, text, "prompt")
                }
            }
        }
        Endpoint::Chat => {
            let text = chat_prompt(s.chat.as_ref(), &request::messages(&f)?)?;
            (encode_prompt(&s.tok, s.bos, &text, "messages")?, None, "messages")
        }
    };
    if prompt.is_empty() {
        return Err(ApiError::invalid(
            "The prompt is empty (and the model has no BOS token to start from).",
            Some(param),
        )
        .with_code("invalid_value"));
    }
    if let Some(&t) = prompt.iter().find(|&&t| t as usize >= s.vocab) {
        return Err(ApiError::invalid(
            format!("Token {t} of the prompt is outside the model's vocabulary."),
            Some(param),
        ));
    }
    let ctx = s.ctx;
    if prompt.len() >= ctx {
        return Err(ApiError::invalid(
            format!(
                "This model's maximum context length is {ctx} tokens. However, your prompt has {} tokens, \
                 which leaves no room for a completion. Please reduce the length of the prompt.",
                prompt.len()
            ),
            Some(param),
        )
        .with_code("context_length_exceeded"));
    }
    let room = ctx - prompt.len();
    let max_tokens = match common.max_tokens {
        Some(m) if m > room => {
            return Err(ApiError::invalid(
                format!(
                    "This model's maximum context length is {ctx} tokens. However, you requested {} tokens \
                     ({} in the prompt, {m} in the completion). Please reduce the prompt or the completion length.",
                    prompt.len() + m,
                    prompt.len()
                ),
                Some(max_keys[0]),
            )
            .with_code("context_length_exceeded"))
        }
        Some(m) => m,
        None => match endpoint {
            Endpoint::Completions => s.opts.default_max_tokens.min(room),
            Endpoint::Chat => s.opts.max_tokens_limit.min(room),
        },
    };
    let constraint = match request::response_format(&f)? {
        None => None,
        Some(regex) => Some(Arc::new(RegexConstraint::new(&regex, s.tok.token_bytes()).map_err(|e| {
            ApiError::invalid(format!("Cannot compile the response format: {e}"), Some("response_format"))
        })?)),
    };
    let logprobs = request::logprobs(&f, endpoint)?;
    let prompt_logprobs = logprobs.filter(|_| echo.is_some());
    if max_tokens == 0 && prompt_logprobs.is_none() {
        return Err(ApiError::invalid(
            format!("'{}' must be at least 1 (0 only to score an echoed prompt with logprobs).", max_keys[0]),
            Some(max_keys[0]),
        )
        .with_code("invalid_value"));
    }
    Ok(Prepared {
        prompt_logprobs,
        n: common.n,
        logprobs,
        constraint,
        endpoint,
        prompt,
        echo,
        max_tokens,
        sampler: common.sampler,
        stop: common.stop,
        stream: common.stream,
        include_usage: common.include_usage,
        ignore_eos: common.ignore_eos,
    })
}

/// Queues one job per choice, waits for the worker to take them all, then answers in one body
/// or as a stream.
async fn run(app: AppState, p: Prepared) -> Result<Response, ApiError> {
    let s = app.shared();
    let timeout = s.opts.request_timeout;
    let now = Instant::now();
    // A timeout too large to add (e.g. Duration::MAX for "none") is capped at ten years.
    let deadline = now.checked_add(timeout.min(Duration::from_secs(10 * 365 * 86_400))).unwrap_or(now);
    // One channel for all choices: dropping it (a disconnect, an error) cancels every one.
    let (tx, mut rx) = unbounded_channel();
    let prompt_tokens = p.prompt.len();
    for index in 0..p.n {
        // Choice i samples with seed + i: n different samples, reproducible with a seed.
        let sampler = Sampler { seed: p.sampler.seed.wrapping_add(index as u64), ..p.sampler };
        app.submit(Job {
            prompt: p.prompt.clone(),
            max_tokens: p.max_tokens,
            sampler,
            stop: p.stop.clone(),
            deadline,
            timeout,
            events: tx.clone(),
            index,
            logprobs: p.logprobs,
            prompt_logprobs: p.prompt_logprobs,
            constraint: p.constraint.clone(),
            ignore_eos: p.ignore_eos,
        })?;
    }
    drop(tx);
    let tokio_deadline = tokio::time::Instant::from_std(deadline);
    // Wait until every choice has started (errors before that are plain HTTP errors); events of
    // choices that started early are kept for later.
    let (mut started, mut early) = (0, VecDeque::new());
    while started < p.n {
        match timeout_at(tokio_deadline, rx.recv()).await {
            Err(_) => return Err(ApiError::timeout(timeout)),
            Ok(None) => return Err(ApiError::internal("the generation worker dropped the request")),
            Ok(Some((_, Event::Failed(e)))) => return Err(e),
            Ok(Some((_, Event::Started))) => started += 1,
            Ok(Some(other)) => early.push_back(other),
        }
    }
    let head = Header::new(p.endpoint, &s.name);
    let echo_chars = p.echo.as_ref().map_or(0, |e| e.chars().count());
    if p.stream {
        let stream = SseStream {
            rx,
            early,
            deadline: tokio_deadline,
            timeout,
            head,
            prompt_tokens,
            completion_tokens: 0,
            include_usage: p.include_usage,
            logprobs: p.logprobs.is_some(),
            offsets: vec![echo_chars; p.n],
            finished: 0,
            queue: VecDeque::new(),
            done: false,
        };
        return Ok(stream.into_response(p.echo));
    }
    // With a scored prompt the entries start at the prompt's first token (offset 0).
    let offset = if p.prompt_logprobs.is_some() { 0 } else { echo_chars };
    let empty =
        Choice { text: p.echo.unwrap_or_default(), logprobs: p.logprobs.map(|_| vec![]), offset, ..Choice::default() };
    let mut choices = vec![empty; p.n];
    let (mut finished, mut completion_tokens) = (0, 0);
    while finished < p.n {
        let next = match early.pop_front() {
            Some(e) => Ok(Some(e)),
            None => timeout_at(tokio_deadline, rx.recv()).await,
        };
        match next {
            Err(_) => return Err(ApiError::timeout(timeout)),
            Ok(None) => return Err(ApiError::internal("the generation worker dropped the request")),
            Ok(Some((_, Event::Started))) => {}
            Ok(Some((i, Event::PromptLogprobs(entries)))) => {
                if let Some(all) = &mut choices[i].logprobs {
                    all.extend(entries);
                }
            }
            Ok(Some((i, Event::Text { text, logprobs }))) => {
                choices[i].text.push_str(&text);
                if let Some(all) = &mut choices[i].logprobs {
                    all.extend(logprobs);
                }
            }
            Ok(Some((_, Event::Failed(e)))) => return Err(e),
            Ok(Some((i, Event::Done { finish, completion_tokens: n }))) => {
                choices[i].finish = finish.as_str();
                completion_tokens += n;
                finished += 1;
            }
        }
    }
    let body = head.body(&choices, usage(prompt_tokens, completion_tokens));
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

/// The events of one streamed response (all its choices), turned into SSE bytes as they arrive.
struct SseStream {
    rx: UnboundedReceiver<(usize, Event)>,
    /// Events that came while waiting for every choice to start.
    early: VecDeque<(usize, Event)>,
    deadline: tokio::time::Instant,
    timeout: std::time::Duration,
    head: Header,
    prompt_tokens: usize,
    /// Tokens generated by the finished choices.
    completion_tokens: usize,
    include_usage: bool,
    /// Whether chunks carry log-probabilities.
    logprobs: bool,
    /// Characters of each choice's text so far (completions' `text_offset`).
    offsets: Vec<usize>,
    /// Choices finished.
    finished: usize,
    queue: VecDeque<String>,
    done: bool,
}

impl SseStream {
    /// The chunk of `data`, with `"usage": null` when the client asked for usage at the end.
    fn push(&mut self, mut data: serde_json::Value) {
        if self.include_usage {
            data["usage"] = serde_json::Value::Null;
        }
        self.queue.push_back(sse(&data));
    }

    fn end_with_error(&mut self, e: &ApiError) {
        self.queue.push_back(sse(&e.body()));
        self.queue.push_back(SSE_DONE.to_string());
        self.done = true;
    }

    /// Turns one worker event into chunks.
    fn on_event(&mut self, index: usize, event: Event) {
        match event {
            // Never sent for streams (refused when parsing the request).
            Event::Started | Event::PromptLogprobs(_) => {}
            Event::Text { text, logprobs } => {
                let lp = self.logprobs.then(|| logprobs_json(self.head.endpoint, &logprobs, self.offsets[index]));
                self.offsets[index] += logprobs.iter().map(|e| e.token.chars().count()).sum::<usize>();
                let chunk = self.head.chunk(index, Some(&text), false, None, lp);
                self.push(chunk);
            }
            Event::Failed(e) => self.end_with_error(&e),
            Event::Done { finish, completion_tokens } => {
                self.push(self.head.chunk(index, None, false, Some(finish.as_str()), None));
                self.completion_tokens += completion_tokens;
                self.finished += 1;
                if self.finished == self.offsets.len() {
                    if self.include_usage {
                        let u = self.head.usage_chunk(usage(self.prompt_tokens, self.completion_tokens));
                        self.queue.push_back(sse(&u));
                    }
                    self.queue.push_back(SSE_DONE.to_string());
                    self.done = true;
                }
            }
        }
    }

    fn into_response(mut self, echo: Option<String>) -> Response {
        for index in 0..self.offsets.len() {
            match self.head.endpoint {
                Endpoint::Chat => self.push(self.head.chunk(index, None, true, None, None)),
                Endpoint::Completions => {
                    if let Some(t) = echo.as_ref().filter(|t| !t.is_empty()) {
                        self.push(self.head.chunk(index, Some(t), false, None, None));
                    }
                }
            }
        }
        while let Some((i, e)) = self.early.pop_front() {
            self.on_event(i, e);
        }
        let stream = futures_util::stream::unfold(self, |mut st| async move {
            loop {
                if let Some(s) = st.queue.pop_front() {
                    return Some((Ok::<_, std::convert::Infallible>(Bytes::from(s)), st));
                }
                if st.done {
                    return None;
                }
                match timeout_at(st.deadline, st.rx.recv()).await {
                    Err(_) => st.end_with_error(&ApiError::timeout(st.timeout)),
                    Ok(None) => st.end_with_error(&ApiError::internal("the generation worker dropped the request")),
                    Ok(Some((i, e))) => st.on_event(i, e),
                }
            }
        });
        ([(header::CONTENT_TYPE, "text/event-stream"), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(stream))
            .into_response()
    }
}
