//! Criterion benchmarks of fused (tiled FlashAttention) vs naive attention — the naive path,
//! measured in the same run, is the baseline — at B = 1, H = 12, D = 64, T = 256 and 1024,
//! causal. Throughput counts the useful FLOPs: 4·B·H·T²·D / 2 forward (causal half).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kiln_core::ops::AttentionOpts;
use kiln_core::{DType, Tensor};
use std::hint::black_box;

fn rand(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, DType::F32, seed, &kiln_cpu::cpu()).expect("rand")
}

fn attention(c: &mut Criterion) {
    let opts = AttentionOpts::causal();
    for t in [256usize, 1024] {
        let shape = [1, 12, t, 64];
        let (q, k, v) = (rand(&shape, 1), rand(&shape, 2), rand(&shape, 3));
        let mut g = c.benchmark_group(format!("attention_T{t}"));
        g.throughput(Throughput::Elements((4 * 12 * t * t * 64 / 2) as u64));
        g.bench_function("fused_fwd", |b| {
            b.iter(|| black_box(Tensor::scaled_dot_product_attention(&q, &k, &v, None, &opts).expect("fused")))
        });
        g.bench_function("naive_fwd", |b| {
            b.iter(|| black_box(Tensor::attention_reference(&q, &k, &v, None, &opts).expect("naive")))
        });
        let fb = |fused: bool| {
            let (q, k, v) = (q.detach().requires_grad_(), k.detach().requires_grad_(), v.detach().requires_grad_());
            let o = if fused {
                Tensor::scaled_dot_product_attention(&q, &k, &v, None, &opts)
            } else {
                Tensor::attention_reference(&q, &k, &v, None, &opts)
            }
            .expect("attention");
            o.sum_all().expect("sum").backward().expect("backward");
            black_box(q.grad());
        };
        g.bench_function("fused_fwd_bwd", |b| b.iter(|| fb(true)));
        g.bench_function("naive_fwd_bwd", |b| b.iter(|| fb(false)));
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(2));
    targets = attention
}
criterion_main!(benches);
