//! Peak fp32 FMA throughput of this machine: every thread runs independent chains of fused
//! multiply-adds on full vector registers: enough chains to hide the FMA latency on 2 ports (4–5
//! cycles: 8–10 chains), few enough that the accumulators and the two constants stay in registers
//! (32 zmm with AVX-512, only 16 ymm with AVX2 — 16 chains there would spill to memory).
//! This is the ceiling no GEMM can beat, measured rather than looked up.

use std::time::Instant;

/// Independent FMA chains of the AVX-512 kernel (16 + 2 constants of 32 registers).
const CHAINS_512: usize = 16;
/// Independent FMA chains of the AVX2 kernel (12 + 2 constants of 16 registers).
const CHAINS_256: usize = 12;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_set1_ps(0.0); CHAINS_512];
    let a = _mm512_set1_ps(0.999_999);
    let b = _mm512_set1_ps(1e-7);
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm512_fmadd_ps(*x, a, b);
        }
    }
    acc.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma256(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); CHAINS_256];
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    for _ in 0..iters {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let mut out = [0f32; 8];
    let mut s = 0.0;
    for x in acc {
        _mm256_storeu_ps(out.as_mut_ptr(), x);
        s += out.iter().sum::<f32>();
    }
    s
}

/// A peak kernel: FMAs per iteration (lanes × chains), the FMA loop, the instruction set's name.
type PeakKernel = (u64, unsafe fn(u64) -> f32, &'static str);

/// The kernel for the best instruction set present.
fn kernel() -> Option<PeakKernel> {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") {
            return Some(((16 * CHAINS_512) as u64, fma512, "AVX-512"));
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return Some(((8 * CHAINS_256) as u64, fma256, "AVX2+FMA"));
        }
    }
    None
}

/// Peak GFLOP/s on `threads` threads and the instruction set used, or `None` without FMA units.
///
/// Best of 5 runs of ~0.2 s each: the peak is a maximum, so a run slowed down by another process
/// on the machine is discarded rather than averaged in.
pub fn peak_gflops(threads: usize) -> Option<(f64, &'static str)> {
    let (fmas, f, isa) = kernel()?;
    let flops_per_iter = 2.0 * fmas as f64;
    // SAFETY: `kernel` returned `f` only after detecting the CPU features it was compiled for.
    let run = move |iters: u64| std::hint::black_box(unsafe { f(iters) });
    // Calibrate on one thread (also warms the clocks up): ~0.2 s per run.
    let t = Instant::now();
    run(2_000_000);
    let per_iter = t.elapsed().as_secs_f64().max(1e-6) / 2e6;
    let iters = ((0.2 / per_iter) as u64).clamp(1_000_000, 200_000_000);
    let mut best = 0.0f64;
    for _ in 0..5 {
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(move || run(iters));
            }
        });
        let secs = start.elapsed().as_secs_f64();
        best = best.max(flops_per_iter * iters as f64 * threads as f64 / secs / 1e9);
    }
    Some((best, isa))
}
