//! The generation worker: one thread that owns the model and a [`BatchEngine`] (continuous
//! batching over a paged KV cache). Between two engine steps it admits newly queued [`Job`]s,
//! cancels those whose client is gone or whose deadline passed (their KV blocks are freed at
//! once), then runs one batched forward pass for every running sequence and sends each job its
//! new text as [`Event`]s.

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::stop::StopMatcher;
use kiln_core::Device;
use kiln_data::{IncrementalDecoder, Tokenizer};
use kiln_infer::{
    BatchEngine, BatchRequest, FinishReason, RegexConstraint, Sampler, SchedulerConfig, SeqId, StepEvent,
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
    /// New completion text (never part of a stop string).
    Text(String),
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
    /// Where the events go.
    pub events: UnboundedSender<Event>,
    /// `response_format` as a regex over the completion (constrained decoding).
    pub constraint: Option<Arc<RegexConstraint>>,
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
        let mut active: HashMap<SeqId, Active> = HashMap::new();
        let mut open = true;
        while open || engine.has_work() {
            // Idle: sleep until a job comes. Busy: take whatever has arrived, without waiting.
            if !engine.has_work() {
                match jobs.recv() {
                    Ok(job) => self.admit(&mut engine, &mut active, job),
                    Err(_) => open = false,
                }
            }
            loop {
                match jobs.try_recv() {
                    Ok(job) => self.admit(&mut engine, &mut active, job),
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
                    Ok(Ok(events)) => self.dispatch(&mut engine, &mut active, events),
                    Ok(Err(e)) => self.fail_all(&mut engine, &mut active, &format!("generation failed: {e}")),
                    Err(_) => self.fail_all(&mut engine, &mut active, "generation panicked"),
                }
            }
            self.publish(&engine);
        }
    }

    /// The job leaves the server (and the gauges settle) before its client hears that it is
    /// over, so a client's next request always finds room.
    fn leave(&self, job: &Job, last: Option<Event>) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Some(event) = last {
            let _ = job.events.send(event);
        }
    }

    /// Moves a job from the channel into the engine (or answers it at once).
    fn admit(&self, engine: &mut BatchEngine, active: &mut HashMap<SeqId, Active>, job: Job) {
        self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
        if job.events.is_closed() {
            return self.leave(&job, None);
        }
        if Instant::now() >= job.deadline {
            return self.leave(&job, Some(Event::Failed(ApiError::timeout(job.timeout))));
        }
        let req = BatchRequest {
            prompt: job.prompt.clone(),
            max_new: job.max_tokens,
            sampler: job.sampler,
            stop: self.stop_tokens.clone(),
            constraint: job.constraint.clone(),
        };
        match engine.add(req) {
            Ok(id) => {
                if job.events.send(Event::Started).is_err() {
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
                };
                active.insert(id, a);
            }
            Err(e) => self.leave(&job, Some(Event::Failed(ApiError::invalid(e.to_string(), None)))),
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
    fn dispatch(&self, engine: &mut BatchEngine, active: &mut HashMap<SeqId, Active>, events: Vec<StepEvent>) {
        for event in events {
            match event {
                StepEvent::Token { id, token } => {
                    let Some(a) = active.get_mut(&id) else { continue };
                    a.n += 1;
                    self.metrics.generated_tokens.fetch_add(1, Ordering::Relaxed);
                    if self.stop_tokens.contains(&token) {
                        a.stopped_by_token = true;
                        continue;
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
                    if !text.is_empty() && a.job.events.send(Event::Text(text)).is_err() {
                        self.end(engine, active, id, None);
                    } else if hit {
                        let done = Event::Done { finish: Finish::Stop, completion_tokens: a.n };
                        self.end(engine, active, id, Some(done));
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
                            if !text.is_empty() && a.job.events.send(Event::Text(text)).is_err() {
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

    /// Copies the engine's gauges into the metrics.
    fn publish(&self, engine: &BatchEngine) {
        let m = &self.metrics;
        m.running.store(engine.num_running(), Ordering::Relaxed);
        m.waiting.store(engine.num_waiting(), Ordering::Relaxed);
        m.kv_blocks_used.store(engine.cache().blocks_in_use(), Ordering::Relaxed);
        let st = engine.stats();
        m.preemptions.store(st.preemptions, Ordering::Relaxed);
        m.prefix_hit_tokens.store(st.prefix_hit_tokens, Ordering::Relaxed);
        m.steps.store(st.steps, Ordering::Relaxed);
    }
}
