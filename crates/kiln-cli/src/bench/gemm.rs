//! `kiln bench gemm`: GFLOP/s of kiln's matmul on transformer shapes against baselines measured in
//! the same run — the `gemm` crate called directly (kiln's overhead), numpy's OpenBLAS (SkylakeX
//! kernel) when `python3 -c 'import numpy'` works, and always the machine's FMA peak.

use super::{fma, time_it, Budget};
use anyhow::{Context, Result};
use gemm::Parallelism;
use kiln_core::{DType, Tensor};
use rayon::prelude::*;
use std::process::Command;

/// One benchmark case: batch × (m×k)·(k×n); `ta`/`tb`: the operand is a transposed view.
struct Case {
    name: String,
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
    large: bool,
}

impl Case {
    fn flops(&self) -> f64 {
        2.0 * (self.batch * self.m * self.k * self.n) as f64
    }
}

fn cases(rows: &[usize], w: usize) -> Vec<Case> {
    let c = |name: String, batch, m, k, n, ta, tb, large| Case { name, batch, m, k, n, ta, tb, large };
    let h = 4 * w;
    let mut v = Vec::new();
    for &r in rows {
        v.push(c(format!("attn proj   ({r}×{w})·({w}×{w})"), 1, r, w, w, false, false, true));
        v.push(c(format!("mlp up      ({r}×{w})·({w}×{h})"), 1, r, w, h, false, false, true));
        v.push(c(format!("mlp down    ({r}×{h})·({h}×{w})"), 1, r, h, w, false, false, true));
        v.push(c(format!("linear fwd  ({r}×{w})·({h}×{w})ᵀ"), 1, r, w, h, false, true, true));
        v.push(c(format!("weight grad ({w}×{r})ᵀ·({r}×{h})"), 1, w, r, h, true, false, true));
        v.push(c(format!("weight grad ({h}×{r})ᵀ·({r}×{w})"), 1, h, r, w, true, false, true));
    }
    v.push(c("square      2048³".into(), 1, 2048, 2048, 2048, false, false, true));
    v.push(c("attn q·kᵀ   96×(256×64)·(256×64)ᵀ".into(), 96, 256, 64, 256, false, true, false));
    v.push(c("attn p·v    96×(256×256)·(256×64)".into(), 96, 256, 256, 64, false, false, false));
    v
}

/// `[batch, rows, cols]` as a tensor, or as the transposed view of a `[batch, cols, rows]` one.
fn operand(batch: usize, rows: usize, cols: usize, transposed: bool, seed: u64) -> Result<Tensor> {
    let dev = kiln_cpu::cpu();
    let t = if transposed {
        Tensor::randn(&[batch, cols, rows], 0.0, 1.0, DType::F32, seed, &dev)?.t()?
    } else {
        Tensor::randn(&[batch, rows, cols], 0.0, 1.0, DType::F32, seed, &dev)?
    };
    Ok(if batch == 1 { t.squeeze(0)? } else { t })
}

/// kiln: `Tensor::matmul` (output allocation, layout checks and dispatch included).
fn kiln_gflops(case: &Case, budget: Budget) -> Result<f64> {
    let a = operand(case.batch, case.m, case.k, case.ta, 1)?;
    let b = operand(case.batch, case.k, case.n, case.tb, 2)?;
    let secs = time_it(budget, || {
        a.matmul(&b)?;
        Ok(())
    })?;
    Ok(case.flops() / secs / 1e9)
}

/// The `gemm` crate called directly on preallocated buffers with `Parallelism::Rayon(threads)`;
/// for batches, the faster of that (batch in order) and one single-threaded GEMM per rayon task.
fn raw_gflops(case: &Case, threads: usize, budget: Budget) -> Result<f64> {
    let (bt, m, k, n) = (case.batch, case.m, case.k, case.n);
    let fill = |len: usize| (0..len).map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5).collect::<Vec<f32>>();
    let (a, b) = (fill(bt * m * k), fill(bt * k * n));
    let mut c = vec![0f32; bt * m * n];
    // (row stride, column stride) of A (m×k) and B (k×n) inside each batch matrix.
    let (ars, acs) = if case.ta { (1, m as isize) } else { (k as isize, 1) };
    let (brs, bcs) = if case.tb { (1, k as isize) } else { (n as isize, 1) };
    let one = |c: &mut [f32], i: usize, par: Parallelism| {
        // SAFETY: every batch matrix lies inside `a`/`b` (sizes above), `c` holds m·n elements.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr().add(i * m * k),
                acs,
                ars,
                b.as_ptr().add(i * k * n),
                bcs,
                brs,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                par,
            )
        }
    };
    let threaded = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
    let mut secs = time_it(budget, || {
        c.chunks_mut(m * n).enumerate().for_each(|(i, c)| one(c, i, threaded));
        Ok(())
    })?;
    if bt > 1 && threads > 1 {
        let batch_par = time_it(budget, || {
            c.par_chunks_mut(m * n).enumerate().for_each(|(i, c)| one(c, i, Parallelism::None));
            Ok(())
        })?;
        secs = secs.min(batch_par);
    }
    Ok(case.flops() / secs / 1e9)
}

const NUMPY_SCRIPT: &str = r#"
import sys, time, numpy as np
secs, iters = float(sys.argv[1]), int(sys.argv[2])
def operand(b, r, c, t):
    x = np.random.rand(b, c, r).astype(np.float32).transpose(0, 2, 1) if t else np.random.rand(b, r, c).astype(np.float32)
    return x[0] if b == 1 else x
for spec in sys.argv[3:]:
    b, m, k, n, ta, tb = (int(x) for x in spec.split(","))
    a, w = operand(b, m, k, ta), operand(b, k, n, tb)
    np.matmul(a, w)
    ts, start = [], time.perf_counter()
    while (len(ts) < iters) if iters > 0 else (len(ts) < 3 or (time.perf_counter() - start < secs and len(ts) < 1000)):
        t0 = time.perf_counter(); np.matmul(a, w); ts.append(time.perf_counter() - t0)
    ts.sort()
    print(2.0 * b * m * k * n / ts[len(ts) // 2] / 1e9, flush=True)
"#;

/// The OpenBLAS kernel to force: SkylakeX (AVX-512) where the CPU has AVX-512, since numpy's
/// wheels may otherwise pick an older one; elsewhere OpenBLAS's own choice (forcing SkylakeX on
/// an AVX2-only CPU would crash it).
fn openblas_coretype() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        return Some("SkylakeX");
    }
    None
}

/// Whether `python3 -c 'import numpy'` works.
fn numpy_available() -> bool {
    Command::new("python3").args(["-c", "import numpy"]).output().is_ok_and(|o| o.status.success())
}

/// numpy's GFLOP/s on one case (a python subprocess per case, so that kiln, the raw kernel and
/// numpy run back to back and share whatever else the machine is doing), or `None` on failure.
fn numpy_gflops(case: &Case, threads: usize, budget: Budget) -> Option<f64> {
    let (secs, iters) = match budget {
        Budget::Seconds(s) => (s, 0),
        Budget::Iters(n) => (0.0, n.max(1)),
    };
    let spec = format!("{},{},{},{},{},{}", case.batch, case.m, case.k, case.n, case.ta as u8, case.tb as u8);
    let t = threads.to_string();
    let mut cmd = Command::new("python3");
    if openblas_coretype().is_none() {
        // Let OpenBLAS pick its kernel for this CPU (a preset coretype may name another one).
        cmd.env_remove("OPENBLAS_CORETYPE").env_remove("OPENBLAS_L2_SIZE");
    }
    let out = cmd
        .arg("-c")
        .arg(NUMPY_SCRIPT)
        .arg(secs.to_string())
        .arg(iters.to_string())
        .arg(spec)
        .envs(openblas_coretype().map(|c| ("OPENBLAS_CORETYPE", c)))
        .env("OPENBLAS_NUM_THREADS", &t)
        .env("OMP_NUM_THREADS", &t)
        .env("MKL_NUM_THREADS", &t)
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| l.trim().parse().ok())
}

fn cell(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map_or_else(|| "-".into(), f)
}

/// Mean of the `Some` values, as a percentage.
fn mean_pct(xs: &[Option<f64>]) -> Option<f64> {
    let v: Vec<f64> = xs.iter().flatten().copied().collect();
    (!v.is_empty()).then(|| 100.0 * v.iter().sum::<f64>() / v.len() as f64)
}

/// Runs the benchmark on `threads` threads (rayon's global pool must already have that size) and
/// prints the table.
pub fn run(rows: &[usize], width: usize, threads: usize, budget: Budget) -> Result<()> {
    let pool_threads = rayon::current_num_threads();
    anyhow::ensure!(
        pool_threads == threads,
        "rayon's global pool has {pool_threads} threads, not the requested {threads}"
    );
    let cases = cases(rows, width);
    let how = match budget {
        Budget::Seconds(s) => format!("median of ≥3 timed calls over {s} s per shape after a warm-up call"),
        Budget::Iters(n) => format!("median of {n} timed calls per shape after a warm-up call"),
    };
    println!("kiln bench gemm — fp32, {threads} threads (rayon pool: {pool_threads}), {how}");
    #[cfg(target_arch = "x86_64")]
    println!(
        "CPU: avx512f {}, avx2+fma {}; gemm crate built with x86-v4 (AVX-512 kernels)",
        is_x86_feature_detected!("avx512f"),
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    );
    let peak = fma::peak_gflops(threads);
    match peak {
        Some((p, isa)) => println!("FMA peak ({isa}, {threads} threads, best of 5): {p:.0} GFLOP/s"),
        None => println!("FMA peak: no AVX2/AVX-512 FMA on this CPU"),
    }
    let numpy = numpy_available();
    println!(
        "baseline: {}",
        if numpy {
            match openblas_coretype() {
                Some(_) => "numpy (OpenBLAS, OPENBLAS_CORETYPE=SkylakeX), same shapes and views, same thread count",
                None => {
                    "numpy (OpenBLAS, its own kernel choice for this CPU), same shapes and views, same thread count"
                }
            }
        } else {
            "numpy not importable (pip install numpy to add it): FMA peak and the raw gemm crate only"
        }
    );
    println!();
    println!(
        "{:<40} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8}",
        "shape (GFLOP/s)", "kiln", "raw gemm", "numpy", "kiln/raw", "kiln/np", "of peak"
    );
    let (mut vs_raw, mut vs_np, mut vs_peak) = (Vec::new(), Vec::new(), Vec::new());
    for c in &cases {
        let g = kiln_gflops(c, budget).with_context(|| format!("benchmarking kiln on {}", c.name))?;
        let raw = raw_gflops(c, threads, budget).with_context(|| format!("benchmarking gemm on {}", c.name))?;
        let np = if numpy { numpy_gflops(c, threads, budget) } else { None };
        let pk = peak.map(|(p, _)| g / p);
        println!(
            "{:<40} {:>8.1} {:>8.1} {:>8} {:>9.2} {:>8} {:>8}",
            c.name,
            g,
            raw,
            cell(np, |x| format!("{x:.1}")),
            g / raw,
            cell(np, |x| format!("{:.2}", g / x)),
            cell(pk, |x| format!("{:.0}%", 100.0 * x)),
        );
        if c.large {
            vs_raw.push(Some(g / raw));
            vs_np.push(np.map(|x| g / x));
            vs_peak.push(pk);
        }
    }
    println!();
    if let Some(p) = mean_pct(&vs_np) {
        println!("large shapes: kiln at {p:.0}% of baseline numpy/OpenBLAS (mean ratio)");
    }
    if let Some(p) = mean_pct(&vs_peak) {
        println!("large shapes: kiln at {p:.0}% of the FMA peak (mean)");
    }
    if let Some(p) = mean_pct(&vs_raw) {
        println!("large shapes: kiln at {p:.0}% of the gemm crate called directly (mean; <100% = kiln overhead)");
    }
    Ok(())
}

/// The measured GEMM ceiling for MFU: the best of the `gemm` crate called directly on the MLP's
/// up-projection shape with 2048 rows and on a 2048³ square, on `threads` threads.
pub fn ceiling_gflops(threads: usize, budget: Budget) -> Result<f64> {
    let case = |name: &str, m, k, n| Case { name: name.into(), batch: 1, m, k, n, ta: false, tb: false, large: true };
    [case("mlp up", 2048, 768, 3072), case("square", 2048, 2048, 2048)]
        .iter()
        .map(|c| raw_gflops(c, threads, budget))
        .try_fold(0.0f64, |best, g| Ok(best.max(g?)))
}
