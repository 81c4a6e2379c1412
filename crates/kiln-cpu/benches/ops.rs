//! Criterion benchmarks of the main CPU ops at GPT-2-small-like sizes (B·T = 2048 rows, C = 768,
//! V = 8192), forward and forward+backward. Throughput is reported in elements (or FLOPs for
//! matmul) so runs can be compared with memory bandwidth (~48 GB/s here) and the GEMM ceiling.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks abort on error by design

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kiln_core::ops::CrossEntropyOpts;
use kiln_core::{DType, Tensor};
use std::hint::black_box;

const ROWS: usize = 2048;
const C: usize = 768;
const V: usize = 8192;

fn rand(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, DType::F32, seed, &kiln_cpu::cpu()).expect("rand")
}

/// Forward + backward of `f` on a fresh leaf copy of `x`, seeded with ones.
fn fwd_bwd(x: &Tensor, f: impl Fn(&Tensor) -> Tensor) {
    let leaf = x.detach().requires_grad_();
    let y = f(&leaf);
    y.backward_with(Tensor::ones(y.dims(), DType::F32, y.device()).expect("ones")).expect("backward");
    black_box(leaf.grad());
}

/// `[batch…, rows, cols]`, or the transposed view of a `[batch…, cols, rows]` tensor.
fn operand(batch: &[usize], rows: usize, cols: usize, transposed: bool, seed: u64) -> Tensor {
    let dims = |a: usize, b: usize| [batch, &[a, b]].concat();
    if transposed {
        rand(&dims(cols, rows), seed).t().expect("t")
    } else {
        rand(&dims(rows, cols), seed)
    }
}

/// Throughput in FLOPs (criterion prints them as "elem/s"): 2·M·N·K per product.
fn matmul(c: &mut Criterion) {
    let mut g = c.benchmark_group("matmul");
    // (name, batch, m, k, n, A transposed view, B transposed view)
    type Case = (&'static str, &'static [usize], usize, usize, usize, bool, bool);
    let cases: [Case; 7] = [
        ("proj", &[], ROWS, C, C, false, false),
        ("mlp_up", &[], ROWS, C, 4 * C, false, false),
        ("mlp_down", &[], ROWS, 4 * C, C, false, false),
        ("linear_fwd_xWt", &[], ROWS, C, 4 * C, false, true),
        ("weight_grad_xt_dy", &[], C, ROWS, 4 * C, true, false),
        ("attn_qkt_96x", &[8, 12], 256, 64, 256, false, true),
        ("attn_pv_96x", &[8, 12], 256, 256, 64, false, false),
    ];
    for (name, batch, m, k, n, ta, tb) in cases {
        let (a, b) = (operand(batch, m, k, ta, 1), operand(batch, k, n, tb, 2));
        let count: usize = batch.iter().product();
        g.throughput(Throughput::Elements((2 * count * m * k * n) as u64));
        g.bench_function(format!("{name}_{m}x{k}x{n}"), |bn| bn.iter(|| black_box(a.matmul(&b).expect("matmul"))));
    }
    g.finish();
}

fn elementwise(c: &mut Criterion) {
    let x = rand(&[ROWS, C], 3);
    let bias = rand(&[C], 4);
    let mut g = c.benchmark_group("elementwise");
    g.throughput(Throughput::Elements((ROWS * C) as u64));
    g.bench_function("add_bias", |b| b.iter(|| black_box(x.add(&bias).expect("add"))));
    g.bench_function("gelu_fwd", |b| b.iter(|| black_box(x.gelu().expect("gelu"))));
    g.bench_function("gelu_fwd_bwd", |b| b.iter(|| fwd_bwd(&x, |t| t.gelu().expect("gelu"))));
    g.bench_function("sum_last_dim", |b| b.iter(|| black_box(x.sum(&[-1], false).expect("sum"))));
    g.bench_function("transpose_contiguous", |b| b.iter(|| black_box(x.t().expect("t").contiguous().expect("copy"))));
    g.finish();
}

fn fused(c: &mut Criterion) {
    let x = rand(&[ROWS, C], 5);
    let (w, bias) = (rand(&[C], 6), rand(&[C], 7));
    let logits = rand(&[ROWS, V], 8);
    let targets =
        Tensor::from_vec((0..ROWS as i64).map(|i| i * 31 % V as i64).collect(), &[ROWS], &kiln_cpu::cpu()).expect("t");
    let wte = rand(&[V, C], 9);
    let ids = Tensor::from_vec((0..ROWS as i64).map(|i| i * 13 % V as i64).collect(), &[8, ROWS / 8], &kiln_cpu::cpu())
        .expect("ids");
    let mut g = c.benchmark_group("fused");
    g.throughput(Throughput::Elements((ROWS * C) as u64));
    g.bench_function("softmax_fwd", |b| b.iter(|| black_box(x.softmax().expect("softmax"))));
    g.bench_function("softmax_fwd_bwd", |b| b.iter(|| fwd_bwd(&x, |t| t.softmax().expect("softmax"))));
    g.bench_function("layer_norm_fwd", |b| {
        b.iter(|| black_box(x.layer_norm(Some(&w), Some(&bias), 1e-5).expect("ln")))
    });
    g.bench_function("layer_norm_fwd_bwd", |b| {
        b.iter(|| fwd_bwd(&x, |t| t.layer_norm(Some(&w), Some(&bias), 1e-5).expect("ln")))
    });
    g.bench_function("rms_norm_fwd_bwd", |b| b.iter(|| fwd_bwd(&x, |t| t.rms_norm(Some(&w), 1e-6).expect("rms"))));
    g.bench_function("embedding_fwd_bwd", |b| b.iter(|| fwd_bwd(&wte, |t| Tensor::embedding(t, &ids).expect("emb"))));
    g.throughput(Throughput::Elements((ROWS * V) as u64));
    g.bench_function("cross_entropy_fwd_bwd", |b| {
        b.iter(|| fwd_bwd(&logits, |t| t.cross_entropy(&targets, CrossEntropyOpts::default()).expect("ce")))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(std::time::Duration::from_secs(2));
    targets = matmul, elementwise, fused
}
criterion_main!(benches);
