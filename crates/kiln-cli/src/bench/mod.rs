//! `kiln bench …`: benchmarks that print their baseline, measured in the same run, and the ratio.

pub mod embed;
pub mod fma;
pub mod gemm;
pub mod generate;
pub mod serve;
pub mod serve_http;
pub mod train;

/// How long to time each case.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// Repeat until this many seconds have passed (at least 3 timed calls, at most 1000).
    Seconds(f64),
    /// Exactly this many timed calls.
    Iters(usize),
}

/// Median of a sample (sorted in place); 0 when empty.
pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs.get(xs.len() / 2).copied().unwrap_or(0.0)
}

/// Times `f` after one warm-up call and returns the median seconds per call.
pub fn time_it(budget: Budget, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let mut samples = Vec::new();
    let start = std::time::Instant::now();
    loop {
        let done = match budget {
            Budget::Iters(n) => samples.len() >= n.max(1),
            Budget::Seconds(s) => (samples.len() >= 3 && start.elapsed().as_secs_f64() >= s) || samples.len() >= 1000,
        };
        if done {
            break;
        }
        let t = std::time::Instant::now();
        f()?;
        samples.push(t.elapsed().as_secs_f64());
    }
    Ok(median(&mut samples))
}
