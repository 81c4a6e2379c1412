//! Criterion benchmarks of fused (tiled FlashAttention-2) vs naive attention at B = 1, H = 12,
//! D = 64, T = S = 256 and 1024, full and causal, and at the default training job's shape
//! (char-tiny: B = 16, H = 4, T = 128, D = 32, causal), forward and forward+backward. The naive path
//! (`Tensor::attention_reference`, materialising the (B, H, T, S) scores), measured in the same
//! run, is the baseline.
//!
//! FLOPs: forward `4·B·H·T·S·D` (two GEMMs), backward ≈ 2.5× that (five GEMMs, dQ/dK/dV/dP plus
//! the recomputed scores), so forward+backward counts `3.5·4·B·H·T·S·D`. Causal runs count the
//! useful half. Criterion's `elem/s` throughput is FLOP/s; a GFLOP/s summary line per shape is
//! printed before each group from a short median-of-runs timing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks abort on error by design

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kiln_core::ops::AttentionOpts;
use kiln_core::{DType, Tensor};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn rand(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, DType::F32, seed, &kiln_cpu::cpu()).expect("rand")
}

fn attend(fused: bool, q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttentionOpts) -> Tensor {
    if fused {
        Tensor::scaled_dot_product_attention(q, k, v, None, opts).expect("fused")
    } else {
        Tensor::attention_reference(q, k, v, None, opts).expect("naive")
    }
}

/// Forward + backward on fresh leaf copies, seeded with ones.
fn fwd_bwd(fused: bool, q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttentionOpts) {
    let (q, k, v) = (q.detach().requires_grad_(), k.detach().requires_grad_(), v.detach().requires_grad_());
    let o = attend(fused, &q, &k, &v, opts);
    o.sum_all().expect("sum").backward().expect("backward");
    black_box((q.grad(), k.grad(), v.grad()));
}

/// Median wall time of `runs` calls of `f` after one warm-up call.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    f();
    let mut ts: Vec<Duration> = (0..runs)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed()
        })
        .collect();
    ts.sort();
    ts[runs / 2]
}

fn attention(c: &mut Criterion) {
    // (label, B, H, T, D, causal)
    let mut shapes: Vec<(String, usize, usize, usize, usize, bool)> = Vec::new();
    for causal in [false, true] {
        for t in [256usize, 1024] {
            shapes.push((format!("{}_T{t}", if causal { "causal" } else { "full" }), 1, 12, t, 64, causal));
        }
    }
    shapes.push(("char_tiny".into(), 16, 4, 128, 32, true));
    for (name, b, h, t, d, causal) in shapes {
        {
            let opts = AttentionOpts { causal, ..AttentionOpts::new() };
            let shape = [b, h, t, d];
            let (q, k, v) = (rand(&shape, 1), rand(&shape, 2), rand(&shape, 3));
            let full = (4 * b * h * t * t * d) as f64;
            let fwd_flops = if causal { full / 2.0 } else { full };
            let fb_flops = 3.5 * fwd_flops;

            let runs = if t >= 1024 { 5 } else { 11 };
            let line = |what: &str, flops: f64, fused: Duration, naive: Duration| {
                let gf = |d: Duration| flops / d.as_secs_f64() / 1e9;
                println!(
                    "attention {name} {what}: fused {:.2} ms = {:.1} GFLOP/s, naive {:.2} ms = {:.1} GFLOP/s, {:.2}x",
                    fused.as_secs_f64() * 1e3,
                    gf(fused),
                    naive.as_secs_f64() * 1e3,
                    gf(naive),
                    naive.as_secs_f64() / fused.as_secs_f64()
                );
            };
            let (f, n) = (
                median(runs, || drop(black_box(attend(true, &q, &k, &v, &opts)))),
                median(runs, || drop(black_box(attend(false, &q, &k, &v, &opts)))),
            );
            line("fwd", fwd_flops, f, n);
            let (f, n) =
                (median(runs, || fwd_bwd(true, &q, &k, &v, &opts)), median(runs, || fwd_bwd(false, &q, &k, &v, &opts)));
            line("fwd+bwd", fb_flops, f, n);

            let mut g = c.benchmark_group(format!("attention_fwd_{name}"));
            g.throughput(Throughput::Elements(fwd_flops as u64));
            g.bench_function("fused", |b| b.iter(|| black_box(attend(true, &q, &k, &v, &opts))));
            g.bench_function("naive", |b| b.iter(|| black_box(attend(false, &q, &k, &v, &opts))));
            g.finish();
            let mut g = c.benchmark_group(format!("attention_fwd_bwd_{name}"));
            g.throughput(Throughput::Elements(fb_flops as u64));
            g.bench_function("fused", |b| b.iter(|| fwd_bwd(true, &q, &k, &v, &opts)));
            g.bench_function("naive", |b| b.iter(|| fwd_bwd(false, &q, &k, &v, &opts)));
            g.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = attention
}
criterion_main!(benches);
