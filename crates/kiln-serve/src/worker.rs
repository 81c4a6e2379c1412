//! The generation worker: one thread that owns the model and serves queued [`Job`]s one at a
//! time, sending each job's text back as [`Event`]s. A job whose receiver is gone (the client
//! disconnected or gave up) is cancelled at the next token.

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::stop::StopMatcher;
use kiln_core::Device;
use kiln_data::{IncrementalDecoder, Tokenizer};
use kiln_infer::{generate_until, Sampler};
use kiln_models::gpt::Gpt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
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
    /// while this is at most `queue_len`.
    pub in_flight: Arc<AtomicUsize>,
}

/// Why `generate_until` was interrupted by our callback.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    StopString,
    Cancelled,
    TimedOut,
}

impl Worker {
    /// Serves jobs until every sender of `jobs` is dropped.
    pub fn run(self, jobs: Receiver<Job>) {
        while let Ok(job) = jobs.recv() {
            self.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            let last = if job.events.is_closed() {
                None
            } else if Instant::now() >= job.deadline {
                Some(Event::Failed(ApiError::timeout(job.timeout)))
            } else {
                self.metrics.running.fetch_add(1, Ordering::Relaxed);
                let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve(&job)));
                self.metrics.running.fetch_sub(1, Ordering::Relaxed);
                caught.unwrap_or_else(|_| Some(Event::Failed(ApiError::internal("generation panicked"))))
            };
            // The job leaves the server (and the gauges settle) before its client hears that it
            // is over, so a client's next request always finds room.
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            if let Some(event) = last {
                let _ = job.events.send(event);
            }
        }
    }

    /// Generates `job`, sending its text as it comes; returns its last event (none when the
    /// client is gone).
    fn serve(&self, job: &Job) -> Option<Event> {
        if job.events.send(Event::Started).is_err() {
            return None;
        }
        self.metrics.prompt_tokens.fetch_add(job.prompt.len() as u64, Ordering::Relaxed);
        let started = Instant::now();
        let mut decoder = IncrementalDecoder::new();
        let mut stops = StopMatcher::new(job.stop.clone());
        let (mut n, mut stopped_by_token, mut interrupt) = (0usize, false, None);
        let mut failure: Option<ApiError> = None;
        let result = generate_until(
            &self.model,
            &job.prompt,
            job.max_tokens,
            &job.sampler,
            &self.stop_tokens,
            &self.device,
            |id| {
                n += 1;
                self.metrics.generated_tokens.fetch_add(1, Ordering::Relaxed);
                let halt = |why| kiln_core::Error::Invalid { op: "kiln-serve", msg: format!("interrupted: {why}") };
                if self.stop_tokens.contains(&id) {
                    stopped_by_token = true;
                    return Ok(());
                }
                let text = match decoder.push(&self.tok, id) {
                    Ok(t) => t,
                    Err(e) => {
                        failure = Some(ApiError::internal(format!("cannot decode generated token {id}: {e}")));
                        return Err(halt("decode"));
                    }
                };
                let (text, hit) = stops.push(&text);
                if !text.is_empty() && job.events.send(Event::Text(text)).is_err() {
                    interrupt = Some(Interrupt::Cancelled);
                    return Err(halt("cancelled"));
                }
                if hit {
                    interrupt = Some(Interrupt::StopString);
                    return Err(halt("stop string"));
                }
                if job.events.is_closed() {
                    interrupt = Some(Interrupt::Cancelled);
                    return Err(halt("cancelled"));
                }
                if Instant::now() >= job.deadline {
                    interrupt = Some(Interrupt::TimedOut);
                    return Err(halt("timeout"));
                }
                Ok(())
            },
        );
        self.metrics.record_generation(n, started.elapsed().as_secs_f64());
        Some(match (failure, interrupt, result) {
            (Some(e), _, _) => Event::Failed(e),
            (None, Some(Interrupt::Cancelled), _) => return None,
            (None, Some(Interrupt::TimedOut), _) => Event::Failed(ApiError::timeout(job.timeout)),
            (None, Some(Interrupt::StopString), _) => Event::Done { finish: Finish::Stop, completion_tokens: n },
            (None, None, Err(e)) => Event::Failed(ApiError::internal(format!("generation failed: {e}"))),
            (None, None, Ok(_)) => {
                let tail = match decoder.flush(&self.tok) {
                    Ok(t) => t,
                    Err(e) => return Some(Event::Failed(ApiError::internal(format!("cannot decode: {e}")))),
                };
                // Text that ends the completion cannot have begun a stop string after all.
                let (mut text, hit) = stops.push(&tail);
                if !hit {
                    text.push_str(&stops.flush());
                }
                if !text.is_empty() && job.events.send(Event::Text(text)).is_err() {
                    return None;
                }
                let finish = if hit || stopped_by_token { Finish::Stop } else { Finish::Length };
                Event::Done { finish, completion_tokens: n }
            }
        })
    }
}
