//! `kiln bench gemm`: GFLOP/s of kiln's matmul on transformer shapes against baselines measured in
//! the same run — numpy's OpenBLAS (SkylakeX kernel) when `python3 -c 'import numpy'` works, and
//! always the machine's FMA peak.

use super::{fma, time_it};
use anyhow::{Context, Result};
use kiln_core::{DType, Tensor};
use std::process::Command;

/// One benchmark case: batch × (m×k)·(k×n), and whether A is a transposed view.
struct Case {
    name: String,
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    a_transposed: bool,
    large: bool,
}

fn cases(rows: usize) -> Vec<Case> {
    let c = |name: &str, batch, m, k, n, a_transposed, large| Case {
        name: name.into(),
        batch,
        m,
        k,
        n,
        a_transposed,
        large,
    };
    vec![
        c(&format!("qkv-like    ({rows}×768)·(768×768)"), 1, rows, 768, 768, false, true),
        c(&format!("mlp up      ({rows}×768)·(768×3072)"), 1, rows, 768, 3072, false, true),
        c(&format!("mlp down    ({rows}×3072)·(3072×768)"), 1, rows, 3072, 768, false, true),
        c(&format!("weight grad (768×{rows})ᵀ·({rows}×3072)"), 1, 768, rows, 3072, true, true),
        c("square      2048³", 1, 2048, 2048, 2048, false, true),
        c("attn scores 96×(256×64)·(64×256)", 96, 256, 64, 256, false, false),
        c("attn values 96×(256×256)·(256×64)", 96, 256, 256, 64, false, false),
    ]
}

fn kiln_gflops(case: &Case, seconds: f64) -> Result<f64> {
    let dev = kiln_cpu::cpu();
    let a = if case.a_transposed {
        Tensor::randn(&[case.batch, case.k, case.m], 0.0, 1.0, DType::F32, 1, &dev)?.t()?
    } else {
        Tensor::randn(&[case.batch, case.m, case.k], 0.0, 1.0, DType::F32, 1, &dev)?
    };
    let b = Tensor::randn(&[case.batch, case.k, case.n], 0.0, 1.0, DType::F32, 2, &dev)?;
    let (a, b) = if case.batch == 1 { (a.squeeze(0)?, b.squeeze(0)?) } else { (a, b) };
    let secs = time_it(seconds, || {
        a.matmul(&b)?;
        Ok(())
    })?;
    Ok(2.0 * (case.batch * case.m * case.k * case.n) as f64 / secs / 1e9)
}

const NUMPY_SCRIPT: &str = r#"
import sys, time, numpy as np
for spec in sys.argv[1:]:
    b, m, k, n, t = (int(x) for x in spec.split(","))
    a = np.random.rand(b, k, m).astype(np.float32).transpose(0, 2, 1) if t else np.random.rand(b, m, k).astype(np.float32)
    w = np.random.rand(b, k, n).astype(np.float32)
    if b == 1:
        a, w = a[0], w[0]
    np.matmul(a, w)
    ts, start = [], time.perf_counter()
    while len(ts) < 3 or time.perf_counter() - start < float(__SECONDS__):
        t0 = time.perf_counter(); np.matmul(a, w); ts.append(time.perf_counter() - t0)
    ts.sort()
    print(2.0 * b * m * k * n / ts[len(ts) // 2] / 1e9, flush=True)
"#;

/// numpy's GFLOP/s per case, or `None` when numpy is not importable.
fn numpy_gflops(cases: &[Case], threads: usize, seconds: f64) -> Option<Vec<f64>> {
    let ok = Command::new("python3").args(["-c", "import numpy"]).output().ok()?.status.success();
    if !ok {
        return None;
    }
    let specs: Vec<String> =
        cases.iter().map(|c| format!("{},{},{},{},{}", c.batch, c.m, c.k, c.n, c.a_transposed as u8)).collect();
    let t = threads.to_string();
    let out = Command::new("python3")
        .arg("-c")
        .arg(NUMPY_SCRIPT.replace("__SECONDS__", &seconds.to_string()))
        .args(&specs)
        .env("OPENBLAS_CORETYPE", "SkylakeX")
        .env("OPENBLAS_NUM_THREADS", &t)
        .env("OMP_NUM_THREADS", &t)
        .env("MKL_NUM_THREADS", &t)
        .output()
        .ok()?;
    let v: Vec<f64> = String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.trim().parse().ok()).collect();
    (v.len() == cases.len()).then_some(v)
}

/// Runs the benchmark and prints the table.
pub fn run(rows: usize, seconds: f64) -> Result<()> {
    let threads = kiln_cpu::num_threads();
    let cases = cases(rows);
    println!("kiln bench gemm — fp32, {threads} threads (KILN_NUM_THREADS overrides), median of ≥3 runs per shape");
    let peak = fma::peak_gflops(threads);
    match peak {
        Some((p, isa)) => println!("FMA peak ({isa}, {threads} threads): {p:.0} GFLOP/s"),
        None => println!("FMA peak: no AVX2/AVX-512 FMA on this CPU"),
    }
    let numpy = numpy_gflops(&cases, threads, seconds);
    println!(
        "baseline: {}",
        if numpy.is_some() {
            "numpy (OpenBLAS, OPENBLAS_CORETYPE=SkylakeX), same shapes, same threads"
        } else {
            "numpy not importable: FMA peak only"
        }
    );
    println!();
    println!("{:<44} {:>10} {:>10} {:>9} {:>8}", "shape", "kiln", "numpy", "kiln/np", "of peak");
    let (mut ratio_sum, mut peak_sum, mut n_large) = (0.0, 0.0, 0);
    for (i, c) in cases.iter().enumerate() {
        let g = kiln_gflops(c, seconds).with_context(|| format!("benchmarking {}", c.name))?;
        let np = numpy.as_ref().map(|v| v[i]);
        let pk = peak.map(|(p, _)| g / p);
        println!(
            "{:<44} {:>10.1} {:>10} {:>9} {:>8}",
            c.name,
            g,
            np.map_or("-".into(), |x| format!("{x:.1}")),
            np.map_or("-".into(), |x| format!("{:.2}", g / x)),
            pk.map_or("-".into(), |x| format!("{:.0}%", 100.0 * x)),
        );
        if c.large {
            n_large += 1;
            ratio_sum += np.map_or(0.0, |x| g / x);
            peak_sum += pk.unwrap_or(0.0);
        }
    }
    println!();
    if numpy.is_some() {
        println!("large shapes: kiln at {:.0}% of numpy/OpenBLAS (mean ratio)", 100.0 * ratio_sum / n_large as f64);
    }
    if peak.is_some() {
        println!("large shapes: kiln at {:.0}% of the FMA peak (mean)", 100.0 * peak_sum / n_large as f64);
    }
    Ok(())
}
