//! [`Metrics`]: the server's counters, rendered in Prometheus' text format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Counters and gauges shared by the HTTP handlers and the generation worker.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Requests waiting for a place in the running batch: sent to the worker and not yet taken,
    /// or held by the engine without room yet. One counter (the worker adds the engine's changes
    /// as deltas), so a request moving from the channel into the engine is never seen in
    /// neither or both.
    pub queue_depth: AtomicUsize,
    /// Of those, the ones the engine holds (no blocks or batch room yet).
    pub waiting: AtomicUsize,
    /// Sequences in the engine's running batch.
    pub running: AtomicUsize,
    /// KV-cache blocks referenced by sequences.
    pub kv_blocks_used: AtomicUsize,
    /// KV-cache blocks in the pool.
    pub kv_blocks_total: AtomicUsize,
    /// Sequences preempted (blocks freed, recomputed later) since start.
    pub preemptions: AtomicU64,
    /// Prompt tokens served from the prefix cache since start.
    pub prefix_hit_tokens: AtomicU64,
    /// Batched forward passes since start.
    pub steps: AtomicU64,
    /// Completion tokens generated since start.
    pub generated_tokens: AtomicU64,
    /// Prompt tokens prefilled since start.
    pub prompt_tokens: AtomicU64,
    /// Seconds the worker spent generating, as f64 bits.
    busy_seconds: AtomicU64,
    /// Completion tokens per second of the most recent request, as f64 bits.
    last_tokens_per_second: AtomicU64,
}

impl Metrics {
    /// Counts one answered request.
    pub fn count_request(&self, endpoint: &str, status: u16) {
        if let Ok(mut m) = self.requests.lock() {
            *m.entry((endpoint.to_string(), status)).or_default() += 1;
        }
    }

    /// Records a finished generation of `tokens` tokens that took `seconds`.
    pub fn record_generation(&self, tokens: usize, seconds: f64) {
        let busy = f64::from_bits(self.busy_seconds.load(Ordering::Relaxed)) + seconds;
        self.busy_seconds.store(busy.to_bits(), Ordering::Relaxed);
        let tps = if seconds > 0.0 { tokens as f64 / seconds } else { 0.0 };
        self.last_tokens_per_second.store(tps.to_bits(), Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# HELP kiln_requests_total HTTP requests answered, by endpoint and status.");
        let _ = writeln!(s, "# TYPE kiln_requests_total counter");
        if let Ok(m) = self.requests.lock() {
            for ((endpoint, status), n) in m.iter() {
                let endpoint = endpoint.replace('\\', "\\\\").replace('"', "\\\"");
                let _ = writeln!(s, "kiln_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}");
            }
        }
        let load = |a: &AtomicU64| f64::from_bits(a.load(Ordering::Relaxed));
        let n = |a: &AtomicUsize| a.load(Ordering::Relaxed).to_string();
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        let metrics: [(&str, &str, &str, String); 12] = [
            ("kiln_queue_depth", "gauge", "Requests waiting for a place in the running batch.", n(&self.queue_depth)),
            ("kiln_running_sequences", "gauge", "Sequences in the running batch.", n(&self.running)),
            ("kiln_kv_blocks_used", "gauge", "KV-cache blocks held by sequences.", n(&self.kv_blocks_used)),
            ("kiln_kv_blocks_total", "gauge", "KV-cache blocks in the pool.", n(&self.kv_blocks_total)),
            ("kiln_generated_tokens_total", "counter", "Completion tokens generated.", c(&self.generated_tokens)),
            ("kiln_prompt_tokens_total", "counter", "Prompt tokens prefilled.", c(&self.prompt_tokens)),
            (
                "kiln_prefix_cache_hit_tokens_total",
                "counter",
                "Prompt tokens whose keys and values came from the prefix cache.",
                c(&self.prefix_hit_tokens),
            ),
            ("kiln_preemptions_total", "counter", "Sequences preempted for KV blocks (recomputed later).", {
                c(&self.preemptions)
            }),
            ("kiln_engine_steps_total", "counter", "Batched forward passes.", c(&self.steps)),
            (
                "kiln_generation_seconds_total",
                "counter",
                "Seconds requests spent generating, summed over requests.",
                load(&self.busy_seconds).to_string(),
            ),
            (
                "kiln_tokens_per_second",
                "gauge",
                "Completion tokens per second of the most recently finished request (prefill included).",
                load(&self.last_tokens_per_second).to_string(),
            ),
            ("kiln_waiting_sequences", "gauge", "Requests the engine holds until blocks or batch room free up.", {
                n(&self.waiting)
            }),
        ];
        for (name, kind, help, value) in metrics {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        s
    }
}
