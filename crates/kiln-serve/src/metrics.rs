//! [`Metrics`]: the server's counters, rendered in Prometheus' text format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Counters and gauges shared by the HTTP handlers and the generation worker.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Requests waiting for the worker.
    pub queue_depth: AtomicUsize,
    /// Sequences being generated now.
    pub running: AtomicUsize,
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
        let metrics: [(&str, &str, &str, String); 6] = [
            ("kiln_queue_depth", "gauge", "Requests waiting for the generation worker.", {
                self.queue_depth.load(Ordering::Relaxed).to_string()
            }),
            ("kiln_running_sequences", "gauge", "Sequences being generated now.", {
                self.running.load(Ordering::Relaxed).to_string()
            }),
            ("kiln_generated_tokens_total", "counter", "Completion tokens generated.", {
                self.generated_tokens.load(Ordering::Relaxed).to_string()
            }),
            ("kiln_prompt_tokens_total", "counter", "Prompt tokens prefilled.", {
                self.prompt_tokens.load(Ordering::Relaxed).to_string()
            }),
            ("kiln_generation_seconds_total", "counter", "Seconds the worker spent generating.", {
                load(&self.busy_seconds).to_string()
            }),
            (
                "kiln_tokens_per_second",
                "gauge",
                "Completion tokens per second of the most recent request (prefill included).",
                load(&self.last_tokens_per_second).to_string(),
            ),
        ];
        for (name, kind, help, value) in metrics {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        s
    }
}
