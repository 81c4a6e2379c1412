//! The generation worker: one thread that owns the model and a [`BatchEngine`] (continuous
//! batching over a paged KV cache). Between two engine steps it admits newly queued [`Job`]s,
//! cancels those whose client is gone or whose deadline passed (their KV blocks are freed at
//! once), then runs one batched forward pass for every running sequence and sends each job its
//! new text as [`Event`]s.

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::response::LogprobEntry;
use crate::stop::StopMatcher;
use kiln_core::Device;
use kiln_data::{IncrementalDecoder, Tokenizer};
use kiln_infer::{
    BatchEngine, BatchRequest, FinishReason, RegexConstraint, Sampler, SchedulerConfig, SeqId, StepEvent, TokenLogprobs,
};
use kiln_models::gpt::Gpt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// Why a completion ended (OpenAI's `finish_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// A stop token or stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
}

impl Finish {
    /// The API's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// What the worker tells a request's handler.
#[derive(Debug)]
pub enum Event {
    /// The worker took the job: generation begins.
    Started,
    /// New completion text (never part of a stop string), with the log-probabilities of the
    /// tokens generated since the last `Text` (when the job asked for them).
    Text {
        /// The text.
        text: String,
        /// Its tokens' log-probabilities.
        logprobs: Vec<LogprobEntry>,
    },
    /// The log-probabilities of prompt tokens (the first one's `None`), in order, when the job
    /// asked for them; before any `Text`.
    PromptLogprobs(Vec<LogprobEntry>),
    /// The completion ended normally after `completion_tokens` tokens.
    Done {
        /// Why it ended.
        finish: Finish,
        /// Tokens generated (the stop token included).
        completion_tokens: usize,
    },
    /// The completion failed (timeout, model error).
    Failed(ApiError),
}

/// One generation request, validated.
#[derive(Debug)]
pub struct Job {
    /// Prompt tokens (non-empty, shorter than the context).
    pub prompt: Vec<u32>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Sampling settings.
    pub sampler: Sampler,
    /// Stop strings.
    pub stop: Vec<String>,
    /// When the job must be finished by.
    pub deadline: Instant,
    /// The server's timeout (for error messages).
    pub timeout: Duration,
    /// Where the events go, tagged with `index`.
    pub events: UnboundedSender<(usize, Event)>,
    /// Which choice of its request this job is (`n` > 1 runs one job per choice).
    pub index: usize,
    /// Return log-probabilities with this many alternatives per token.
    pub logprobs: Option<usize>,
    /// Score the prompt's tokens too, with this many alternatives.
    pub prompt_logprobs: Option<usize>,
    /// `response_format` as a regex over the completion (constrained decoding).
    pub constraint: Option<Arc<RegexConstraint>>,
    /// Generate past the model's end-of-sequence tokens (`ignore_eos`).
    pub ignore_eos: bool,
}

/// The model and what the worker needs to turn tokens into text.
pub struct Worker {
    /// The network.
    pub model: Gpt,
    /// Its device.
    pub device: Device,
    /// The tokenizer, for decoding.
    pub tok: Arc<Tokenizer>,
    /// End-of-sequence tokens.
    pub stop_tokens: Vec<u32>,
    /// Shared counters.
    pub metrics: Arc<Metrics>,
    /// Jobs admitted and not yet finished (queued + running): the handlers admit a job only
    /// while this is below `max_num_seqs + queue_len`.
    pub in_flight: Arc<AtomicUsize>,
    /// The batching engine's limits (KV pool, sequences and tokens per step).
    pub sched: SchedulerConfig,
}

/// A job the engine is generating.
struct Active {
    job: Job,
    decoder: IncrementalDecoder,
    stops: StopMatcher,
    /// Tokens generated so far.
    n: usize,
    stopped_by_token: bool,
    started: Instant,
    /// Log-probabilities of tokens whose text has not been sent yet.
    pending: Vec<LogprobEntry>,
}

impl Job {
    /// Sends `event` to the job's handler; false when the handler is gone.
    fn send(&self, event: Event) -> bool {
        self.events.send((self.index, event)).is_ok()
    }
}

/// Each token's text and bytes, for log-probability entries: its bytes (lossily as text), or
/// its decoded text for added/special tokens.
fn token_table(tok: &Tokenizer) -> Vec<(String, Vec<u8>)> {
    tok.token_bytes()
        .into_iter()
        .enumerate()
        .map(|(id, b)| {
            let bytes = b.unwrap_or_else(|| tok.decode(&[id as u32]).map(String::into_bytes).unwrap_or_default());
            (String::from_utf8_lossy(&bytes).into_owned(), bytes)
        })
        .collect()
}

/// A token's log-probabilities as the API shows them.
fn render(table: &[(String, Vec<u8>)], lp: &TokenLogprobs) -> LogprobEntry {
    let text = |t: u32| table.get(t as usize).cloned().unwrap_or_default();
    let (token, bytes) = text(lp.token);
    let top = lp
        .top
        .iter()
        .map(|&(t, l)| {
            let (s, b) = text(t);
            (s, b, l)
        })
        .collect();
    LogprobEntry { token, bytes, logprob: Some(lp.logprob), top }
}

impl Worker {
    /// Serves jobs until every sender of `jobs` is dropped and the last job is done.
    pub fn run(self, jobs: Receiver<Job>) {
        let mut engine = match BatchEngine::new(&self.model, self.sched, &self.device) {
            Ok(e) => e,
            Err(e) => {
                // Every job is answered with the reason (the options were checked at start-up,
                // so this is unexpected).
                while let Ok(job) = jobs.recv() {
                    self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                    self.leave(&job, Some(Event::Failed(ApiError::internal(format!("no KV cache: {e}")))));
                }
                return;
            }
        };
        let table = token_table(&self.tok);
        let mut active: HashMap<SeqId, Active> = HashMap::new();
        // Engine-waiting sequences already counted in `queue_depth`.
        let mut waiting = 0;
        let mut open = true;
        while open || engine.has_work() {
            // Idle: sleep until a job comes. Busy: take whatever has arrived, without waiting.
            if !engine.has_work() {
                match jobs.recv() {
                    Ok(job) => self.admit(&mut engine, &mut active, job, &mut waiting),
                    Err(_) => open = false,
                }
            }
            loop {
                match jobs.try_recv() {
                    Ok(job) => self.admit(&mut engine, &mut active, job, &mut waiting),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
            }
            self.reap(&mut engine, &mut active);
            if engine.has_work() {
                let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| engine.step()));
                match step {
                    Ok(Ok(events)) => self.dispatch(&mut engine, &mut active, &table, events),
                    Ok(Err(e)) => self.fail_all(&mut engine, &mut active, &format!("generation failed: {e}")),
                    Err(_) => self.fail_all(&mut engine, &mut active, "generation panicked"),
                }
            }
            self.publish(&engine, &mut waiting);
        }
    }

    /// The job leaves the server (and the gauges settle) before its client hears that it is
    /// over, so a client's next request always finds room.
    fn leave(&self, job: &Job, last: Option<Event>) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Some(event) = last {
            job.send(event);
        }
    }

    /// Moves a job from the channel into the engine — still queued: `queue_depth` is unchanged
    /// and `waiting` (the engine's waiting sequences counted there) grows — or answers it at once.
    fn admit(&self, engine: &mut BatchEngine, active: &mut HashMap<SeqId, Active>, job: Job, waiting: &mut usize) {
        let dequeued = || self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
        if job.events.is_closed() {
            dequeued();
            return self.leave(&job, None);
        }
        if Instant::now() >= job.deadline {
            dequeued();
            return self.leave(&job, Some(Event::Failed(ApiError::timeout(job.timeout))));
        }
        let req = BatchRequest {
            prompt: job.prompt.clone(),
            max_new: job.max_tokens,
            sampler: job.sampler,
            stop: if job.ignore_eos { vec![] } else { self.stop_tokens.clone() },
            constraint: job.constraint.clone(),
            logprobs: job.logprobs,
            prompt_logprobs: job.prompt_logprobs,
        };
        match engine.add(req) {
            Ok(id) => {
                *waiting += 1;
                if !job.send(Event::Started) {
                    engine.abort(id);
                    return self.leave(&job, None);
                }
                self.metrics.prompt_tokens.fetch_add(job.prompt.len() as u64, Ordering::Relaxed);
                let stops = StopMatcher::new(job.stop.clone());
                let a = Active {
                    job,
                    decoder: IncrementalDecoder::new(),
                    stops,
                    n: 0,
                    stopped_by_token: false,
                    started: Instant::now(),
                    pending: vec![],
                };
                active.insert(id, a);
            }
            Err(e) => {
                dequeued();
                self.leave(&job, Some(Event::Failed(ApiError::invalid(e.to_string(), None))))
            }
        }
    }

    /// Cancels jobs whose client is gone or whose deadline has passed.
    fn reap(&self, engine: &mut BatchEngine, active: &mut HashMap<SeqId, Active>) {
        let now = Instant::now();
        let gone: Vec<SeqId> = active
            .iter()
            .filter(|(_, a)| a.job.events.is_closed() || now >= a.job.deadline)
            .map(|(&id, _)| id)
            .collect();
        for id in gone {
            engine.abort(id);
            if let Some(a) = active.remove(&id) {
                self.metrics.record_generation(a.n, a.started.elapsed().as_secs_f64());
                let last = (!a.job.events.is_closed()).then(|| Event::Failed(ApiError::timeout(a.job.timeout)));
                self.leave(&a.job, last);
            }
        }
    }

    /// Ends every job with an internal error and starts over with an empty engine.
    fn fail_all(&self, engine: &mut BatchEngine, active: &mut HashMap<SeqId, Active>, why: &str) {
        for (id, a) in active.drain() {
            engine.abort(id);
            self.leave(&a.job, Some(Event::Failed(ApiError::internal(why))));
        }
    }

    /// Turns the engine's tokens into each job's text and endings.
    fn dispatch(
        &self,
        engine: &mut BatchEngine,
        active: &mut HashMap<SeqId, Active>,
        table: &[(String, Vec<u8>)],
        events: Vec<StepEvent>,
    ) {
        for event in events {
            match event {
                StepEvent::Token { id, token, logprobs } => {
                    let Some(a) = active.get_mut(&id) else { continue };
                    a.n += 1;
                    self.metrics.generated_tokens.fetch_add(1, Ordering::Relaxed);
                    if !a.job.ignore_eos && self.stop_tokens.contains(&token) {
                        a.stopped_by_token = true;
                        continue;
                    }
                    if let Some(lp) = &logprobs {
                        a.pending.push(render(table, lp));
                    }
                    let text = match a.decoder.push(&self.tok, token) {
                        Ok(t) => t,
                        Err(e) => {
                            let err = ApiError::internal(format!("cannot decode generated token {token}: {e}"));
                            self.end(engine, active, id, Some(Event::Failed(err)));
                            continue;
                        }
                    };
                    let (text, hit) = a.stops.push(&text);
                    let sent = text.is_empty() || {
                        let logprobs = std::mem::take(&mut a.pending);
                        a.job.send(Event::Text { text, logprobs })
                    };
                    if !sent {
                        self.end(engine, active, id, None);
                    } else if hit {
                        let done = Event::Done { finish: Finish::Stop, completion_tokens: a.n };
                        self.end(engine, active, id, Some(done));
                    }
                }
                StepEvent::PromptLogprobs { id, first, logprobs } => {
                    let Some(a) = active.get_mut(&id) else { continue };
                    let mut entries = Vec::with_capacity(logprobs.len() + 1);
                    if first == 1 {
                        // The first prompt token has no context: no log-probability.
                        let (token, bytes) =
                            a.job.prompt.first().and_then(|&t| table.get(t as usize)).cloned().unwrap_or_default();
                        entries.push(LogprobEntry { token, bytes, logprob: None, top: vec![] });
                    }
                    entries.extend(logprobs.iter().map(|lp| render(table, lp)));
                    if !a.job.send(Event::PromptLogprobs(entries)) {
                        self.end(engine, active, id, None);
                    }
                }
                StepEvent::Finished { id, reason } => {
                    let Some(a) = active.get_mut(&id) else { continue };
                    let last = match a.decoder.flush(&self.tok) {
                        Err(e) => Some(Event::Failed(ApiError::internal(format!("cannot decode: {e}")))),
                        Ok(tail) => {
                            // Text that ends the completion cannot have begun a stop string.
                            let (mut text, hit) = a.stops.push(&tail);
                            if !hit {
                                text.push_str(&a.stops.flush());
                            }
                            let logprobs = std::mem::take(&mut a.pending);
                            if (!text.is_empty() || !logprobs.is_empty()) && !a.job.send(Event::Text { text, logprobs })
                            {
                                None
                            } else {
                                let stop = hit || a.stopped_by_token || reason == FinishReason::Stop;
                                let finish = if stop { Finish::Stop } else { Finish::Length };
                                Some(Event::Done { finish, completion_tokens: a.n })
                            }
                        }
                    };
                    self.end(engine, active, id, last);
                }
            }
        }
    }

    /// Removes job `id` (from the engine too, if it is still there) with its last event.
    fn end(&self, engine: &mut BatchEngine, active: &mut HashMap<SeqId, Active>, id: SeqId, last: Option<Event>) {
        engine.abort(id);
        if let Some(a) = active.remove(&id) {
            self.metrics.record_generation(a.n, a.started.elapsed().as_secs_f64());
            self.leave(&a.job, last);
        }
    }

    /// Copies the engine's gauges into the metrics; the change in its waiting sequences since
    /// `waiting` goes into `queue_depth` as one delta.
    fn publish(&self, engine: &BatchEngine, waiting: &mut usize) {
        let m = &self.metrics;
        m.running.store(engine.num_running(), Ordering::Relaxed);
        let now = engine.num_waiting();
        if now > *waiting {
            m.queue_depth.fetch_add(now - *waiting, Ordering::Relaxed);
        } else {
            m.queue_depth.fetch_sub(*waiting - now, Ordering::Relaxed);
        }
        *waiting = now;
        m.waiting.store(now, Ordering::Relaxed);
        m.kv_blocks_used.store(engine.cache().blocks_in_use(), Ordering::Relaxed);
        let st = engine.stats();
        m.preemptions.store(st.preemptions, Ordering::Relaxed);
        m.prefix_hit_tokens.store(st.prefix_hit_tokens, Ordering::Relaxed);
        m.steps.store(st.steps, Ordering::Relaxed);
    }
}
