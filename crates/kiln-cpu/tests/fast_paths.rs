//! Fast CPU paths against simple reference loops: the gemm-backed matmul (single, batched,
//! transposed operands, broadcast batches, both the threaded-GEMM and the GEMM-per-thread regimes,
//! and the one-row GEMV of decoding),
//! strided and parallel elementwise loops, and parallel reductions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cloned_ref_to_slice_refs)] // tests fail loudly by design

use kiln_core::{DType, Tensor};

/// f32 GEMM against an f64-accumulated loop: error grows like √K·ε·|a||b|.
const MATMUL_RTOL: f64 = 1e-4;

fn rand(shape: &[usize], seed: u64) -> Tensor {
    Tensor::rand(shape, -1.0, 1.0, DType::F32, seed, &kiln_cpu::cpu()).unwrap()
}

/// Reference batched matmul of row-major host copies.
fn naive_matmul(a: &[f64], b: &[f64], batch: usize, m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; batch * m * n];
    for z in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    s += a[z * m * k + i * k + p] * b[z * k * n + p * n + j];
                }
                c[z * m * n + i * n + j] = s;
            }
        }
    }
    c
}

fn assert_close(got: &[f64], want: &[f64], rtol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= rtol * scale, "{what}: element {i}: {g} vs {w}");
    }
}

fn check_matmul(a: &Tensor, b: &Tensor, what: &str) {
    let c = a.matmul(b).unwrap();
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k, n) = (a.dims()[ra - 2], a.dims()[ra - 1], b.dims()[rb - 1]);
    let batch = c.numel() / (m * n);
    // Materialise broadcast operands on the host, row-major.
    let mut bs = c.dims()[..c.rank() - 2].to_vec();
    let mut sa = bs.clone();
    sa.extend([m, k]);
    bs.extend([k, n]);
    let av = a.broadcast_as(&sa).unwrap().to_vec_f64().unwrap();
    let bv = b.broadcast_as(&bs).unwrap().to_vec_f64().unwrap();
    assert_close(&c.to_vec_f64().unwrap(), &naive_matmul(&av, &bv, batch, m, k, n), MATMUL_RTOL, what);
}

#[test]
fn matmul_matches_naive_in_every_regime() {
    // Small: single-threaded GEMM.
    check_matmul(&rand(&[5, 7], 1), &rand(&[7, 3], 2), "small");
    // Large enough for the threaded GEMM.
    check_matmul(&rand(&[130, 257], 3), &rand(&[257, 96], 4), "large");
    // Many small batches: one GEMM per rayon task (attention shape).
    check_matmul(&rand(&[2, 6, 33, 16], 5), &rand(&[2, 6, 16, 33], 6), "batched");
    // Transposed operands are read in place through their strides.
    let a = rand(&[64, 48], 7).t().unwrap();
    let b = rand(&[80, 64], 8).t().unwrap();
    check_matmul(&a, &b, "both transposed");
    // Broadcast batch dims and the folded (…,K)·(K,N) path.
    check_matmul(&rand(&[3, 1, 4, 8], 9), &rand(&[1, 2, 8, 5], 10), "broadcast batches");
    check_matmul(&rand(&[2, 9, 12], 11), &rand(&[12, 7], 12), "folded batch");
    // Degenerate sizes.
    check_matmul(&rand(&[4, 1], 13), &rand(&[1, 3], 14), "k = 1");
    // One row against a transposed row-major weight (x·Wᵀ while decoding): the GEMV path, serial
    // and split across threads, k not a multiple of its 16 lanes, a strided weight view, a bias.
    for (k, n) in [(37, 5), (768, 2304), (300, 1001)] {
        let w = rand(&[n, k], 15);
        check_matmul(&rand(&[1, k], 16), &w.t().unwrap(), &format!("gemv {k}×{n}"));
        let x = rand(&[1, k], 17);
        let bias = rand(&[n], 18);
        let got = x.linear(&w, Some(&bias)).unwrap().to_vec_f64().unwrap();
        let plain = x.matmul(&w.t().unwrap()).unwrap().to_vec_f64().unwrap();
        let want: Vec<f64> = plain.iter().zip(bias.to_vec_f64().unwrap()).map(|(p, b)| p + b).collect();
        assert_close(&got, &want, MATMUL_RTOL, &format!("gemv + bias {k}×{n}"));
    }
    let wide = rand(&[50, 80], 19); // rows of 80, use the first 64 columns: row stride 80 ≠ k
    check_matmul(&rand(&[1, 64], 20), &wide.narrow(1, 0, 64).unwrap().t().unwrap(), "gemv strided weight");
}

#[test]
fn strided_elementwise_matches_contiguous() {
    // Large enough (≥ 32768) for the parallel loops, transposed so the strided path is taken.
    let a = rand(&[300, 200], 20);
    let b = rand(&[300, 200], 21);
    let at = a.t().unwrap();
    let bt = b.t().unwrap();
    let fast = at.mul(&bt).unwrap().gelu().unwrap().to_vec::<f32>().unwrap();
    let slow =
        at.contiguous().unwrap().mul(&bt.contiguous().unwrap()).unwrap().gelu().unwrap().to_vec::<f32>().unwrap();
    assert_eq!(fast, slow);
    // Row-broadcast bias add equals an explicit loop.
    let bias = rand(&[200], 22);
    let y = a.add(&bias).unwrap().to_vec::<f32>().unwrap();
    let (av, bv) = (a.to_vec::<f32>().unwrap(), bias.to_vec::<f32>().unwrap());
    for (i, v) in y.iter().enumerate() {
        assert_eq!(*v, av[i] + bv[i % 200]);
    }
}

#[test]
fn parallel_reductions_match_sequential() {
    let x = rand(&[257, 300], 30);
    let v = x.to_vec_f64().unwrap();
    let rows = x.sum(&[1], false).unwrap().to_vec_f64().unwrap();
    let cols = x.sum(&[0], false).unwrap().to_vec_f64().unwrap();
    let mx = x.max(&[1], false).unwrap().to_vec_f64().unwrap();
    for r in 0..257 {
        let s: f64 = v[r * 300..(r + 1) * 300].iter().sum();
        assert!((rows[r] - s).abs() < 1e-4, "row {r}");
        let m = v[r * 300..(r + 1) * 300].iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(mx[r], m);
    }
    for c in 0..300 {
        let s: f64 = (0..257).map(|r| v[r * 300 + c]).sum();
        assert!((cols[c] - s).abs() < 1e-4, "col {c}");
    }
    let total = x.sum_all().unwrap().to_scalar().unwrap();
    assert!((total - v.iter().sum::<f64>()).abs() < 1e-3);
}

/// Sums over leading dims of a contiguous tensor (the column-sum fast path of every broadcast
/// backward) equal the general strided path on the same values, bit for bit (both accumulate in
/// f64 in row order), at sizes on both sides of the parallel threshold.
#[test]
fn leading_dim_sums_match_the_strided_path() {
    for (shape, seed) in [([3usize, 5, 7], 40u64), ([4, 129, 200], 41)] {
        let x = rand(&shape, seed);
        let fast = x.sum(&[0, 1], false).unwrap().to_vec_f64().unwrap();
        // The same values behind a non-contiguous view: (C, A, B) permuted back to (A, B, C).
        let xt = x.permute(&[2, 0, 1]).unwrap().contiguous().unwrap().permute(&[1, 2, 0]).unwrap();
        assert!(!xt.is_contiguous());
        let slow = xt.sum(&[0, 1], false).unwrap().to_vec_f64().unwrap();
        assert_eq!(fast, slow, "shape {shape:?}");
        let v = x.to_vec_f64().unwrap();
        let c = shape[2];
        for (j, &f) in fast.iter().enumerate() {
            let s: f64 = v.iter().skip(j).step_by(c).sum();
            assert!((f - s).abs() < 1e-4, "column {j}");
        }
    }
}

#[test]
fn random_fills_are_seeded_and_thread_independent() {
    let dev = kiln_cpu::cpu();
    let a = Tensor::randn(&[100_000], 0.0, 1.0, DType::F32, 7, &dev).unwrap().to_vec::<f32>().unwrap();
    let b = Tensor::randn(&[100_000], 0.0, 1.0, DType::F32, 7, &dev).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(a, b);
    let mean = a.iter().map(|&x| x as f64).sum::<f64>() / a.len() as f64;
    let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
    assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.02, "mean {mean} var {var}");
    // Element i depends only on (seed, i): a prefix of a longer fill is the shorter fill.
    let short = Tensor::randn(&[1000], 0.0, 1.0, DType::F32, 7, &dev).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(&a[..1000], &short[..]);
    let u = Tensor::rand(&[10_000], 2.0, 3.0, DType::F64, 1, &dev).unwrap().to_vec::<f64>().unwrap();
    assert!(u.iter().all(|&x| (2.0..3.0).contains(&x)));
}
