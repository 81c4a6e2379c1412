//! `kiln bench …`: benchmarks that print their baseline, measured in the same run, and the ratio.

pub mod fma;
pub mod gemm;

/// Median of a non-empty sample (sorted in place).
pub fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Times `f` after one warm-up call: repeats until `seconds` have passed (at least 3 times) and
/// returns the median seconds per call.
pub fn time_it(seconds: f64, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let mut samples = Vec::new();
    let start = std::time::Instant::now();
    while samples.len() < 3 || start.elapsed().as_secs_f64() < seconds {
        let t = std::time::Instant::now();
        f()?;
        samples.push(t.elapsed().as_secs_f64());
        if samples.len() >= 1000 {
            break;
        }
    }
    Ok(median(&mut samples))
}
