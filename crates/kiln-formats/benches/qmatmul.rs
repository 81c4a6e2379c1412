//! Criterion benchmarks of the quantized matrix–vector product (decoding's inner loop) at
//! SmolLM2-135M sizes: one (1536, 576) Q4_1/Q8_0 matrix that stays in cache (kernel speed), and
//! the 210 Q4_1 matrices of a 30-layer model in turn (66 MB: the bytes one decoded token streams
//! from memory). Each case also runs the f32 product of the same (dequantized) weights through
//! kiln's GEMM — the path decoding took before weights stayed quantized — as the same-run
//! baseline. Throughput is in weights per second ("elem/s"), so the lines compare directly.

#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmarks abort on error by design

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kiln_core::quant::QuantMatrix;
use kiln_core::{no_grad, Tensor};
use kiln_formats::{GgmlType, QMatrix};
use std::hint::black_box;

/// A (rows, cols) matrix of random blocks of `ty` with f16 scales in a sane range.
fn matrix(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> QMatrix {
    let mut z = seed | 1;
    let mut data: Vec<u8> = (0..rows * cols / ty.block_size() * ty.type_size())
        .map(|_| {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            z as u8
        })
        .collect();
    for blk in data.chunks_exact_mut(ty.type_size()) {
        blk[..2].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        if ty == GgmlType::Q4_1 {
            blk[2..4].copy_from_slice(&half::f16::from_f32(-0.05).to_le_bytes());
        }
    }
    QMatrix::new(ty, rows, cols, data).unwrap()
}

fn matvec(c: &mut Criterion) {
    // this thread becomes one of the pool's workers (as in kiln's CLI), so each product forks
    // from a worker instead of waking the pool from outside (RAYON_NUM_THREADS sets its size)
    rayon::ThreadPoolBuilder::new().use_current_thread().build_global().unwrap();
    let mut g = c.benchmark_group("qmatvec");
    let x: Vec<f32> = (0..576).map(|i| (i as f32 * 0.37).sin()).collect();
    for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
        let w = matrix(ty, 1536, 576, 7);
        let mut out = vec![0f32; 1536];
        g.throughput(Throughput::Elements(1536 * 576));
        g.bench_function(format!("{}_1536x576_cached", ty.name()), |b| {
            b.iter(|| w.matmul_t(black_box(&x), 1, &mut out).unwrap())
        });
    }
    let dev = kiln_cpu::cpu();
    let xt = Tensor::from_vec(x.clone(), &[1, 576], &dev).unwrap();
    let wf = Tensor::from_vec(matrix(GgmlType::Q8_0, 1536, 576, 7).dequantize().unwrap(), &[1536, 576], &dev).unwrap();
    g.bench_function("f32_1536x576_cached (baseline)", |b| {
        b.iter(|| no_grad(|| black_box(xt.linear(&wf, None).unwrap())))
    });
    // a whole model's projections, each read once per "token": memory-bound
    let shapes = [(576, 576), (192, 576), (192, 576), (576, 576), (1536, 576), (1536, 576), (576, 1536)];
    let layers: Vec<QMatrix> = (0..30)
        .flat_map(|l| {
            shapes.iter().enumerate().map(move |(i, &(r, c))| matrix(GgmlType::Q4_1, r, c, (l * 7 + i) as u64))
        })
        .collect();
    let weights: usize = layers.iter().map(|m| m.shape().0 * m.shape().1).sum();
    let xs: Vec<f32> = (0..1536).map(|i| (i as f32 * 0.11).cos()).collect();
    let mut out = vec![0f32; 1536];
    g.throughput(Throughput::Elements(weights as u64));
    g.bench_function("q4_1_30_layers_streamed", |b| {
        b.iter(|| {
            for m in &layers {
                let (rows, cols) = m.shape();
                m.matmul_t(black_box(&xs[..cols]), 1, &mut out[..rows]).unwrap();
            }
        })
    });
    // the same 30 layers in f32 (424 MB) through the GEMM
    let f32_layers: Vec<Tensor> = layers
        .iter()
        .map(|m| {
            let (r, c) = m.shape();
            Tensor::from_vec(m.dequantize().unwrap(), &[r, c], &dev).unwrap()
        })
        .collect();
    drop(layers);
    let xs_t: Vec<Tensor> =
        [576, 1536].iter().map(|&c| Tensor::from_vec(xs[..c].to_vec(), &[1, c], &dev).unwrap()).collect();
    g.bench_function("f32_30_layers_streamed (baseline)", |b| {
        b.iter(|| {
            no_grad(|| {
                for w in &f32_layers {
                    let x = if w.dims()[1] == 576 { &xs_t[0] } else { &xs_t[1] };
                    black_box(x.linear(w, None).unwrap());
                }
            })
        })
    });
    g.finish();
}

/// Every `kiln quantize` format on one (2304, 768) matrix (GPT-2's fused QKV), random weights:
/// decoding (m = 1) and a prompt tile (m = 64), against the f32 GEMM of the same weights.
fn formats(c: &mut Criterion) {
    use kiln_formats::quant::{QuantWeight, WeightFormat};
    let (rows, cols) = (2304, 768);
    let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 2654435761usize) % 1000) as f32 / 1e4 - 0.05).collect();
    let dev = kiln_cpu::cpu();
    let wf = Tensor::from_vec(w.clone(), &[rows, cols], &dev).unwrap();
    for m in [1usize, 64] {
        let mut g = c.benchmark_group(format!("formats_m{m}"));
        g.throughput(Throughput::Elements((rows * cols * m) as u64));
        let x: Vec<f32> = (0..m * cols).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut out = vec![0f32; m * rows];
        for name in ["q8_0", "q4_1", "w8a16", "w8a8", "int4-g32", "int4-g128"] {
            let q = QuantWeight::quantize(WeightFormat::from_name(name).unwrap(), rows, cols, &w).unwrap();
            g.bench_function(name, |b| b.iter(|| q.matmul_t(black_box(&x), m, &mut out).unwrap()));
        }
        let xt = Tensor::from_vec(x.clone(), &[m, cols], &dev).unwrap();
        g.bench_function("f32 (baseline)", |b| b.iter(|| no_grad(|| black_box(xt.linear(&wf, None).unwrap()))));
        g.finish();
    }
}

criterion_group!(benches, matvec, formats);
criterion_main!(benches);
