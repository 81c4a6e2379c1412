//! GPTQ against its definition: the Cholesky sweep of `gptq_quantize` gives exactly the codes of
//! the textbook Optimal Brain Quantizer loop (explicit inverse Hessian, downdated after every
//! column), and on correlated inputs its layer output error `‖(W − Ŵ)·X‖²` is well below
//! round-to-nearest's with the same block format.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_formats::quant::{dequantize, gptq_quantize, quantize, BlockGrid, QK};
use kiln_formats::GgmlType;

const TYPES: [GgmlType; 3] = [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_1];

fn lcg(seed: u64) -> impl FnMut() -> f64 {
    let mut s = seed;
    move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// Calibration inputs `X` (cols × n) with correlated features (a random mixing of independent
/// ones plus a shared component), and their Gram matrix `X·Xᵀ`.
fn correlated_inputs(cols: usize, n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut r = lcg(seed);
    let z: Vec<f64> = (0..cols * n).map(|_| r()).collect();
    let mix: Vec<f64> = (0..cols * cols).map(|_| r() * 0.3).collect();
    let shared: Vec<f64> = (0..n).map(|_| r()).collect();
    let mut x = vec![0f64; cols * n];
    for i in 0..cols {
        for k in 0..cols {
            let m = mix[i * cols + k] + if i == k { 1.0 } else { 0.0 };
            for t in 0..n {
                x[i * n + t] += m * z[k * n + t];
            }
        }
        for t in 0..n {
            x[i * n + t] += 2.0 * shared[t];
        }
    }
    let mut g = vec![0f64; cols * cols];
    for a in 0..cols {
        for b in 0..cols {
            g[a * cols + b] = (0..n).map(|t| x[a * n + t] * x[b * n + t]).sum();
        }
    }
    (x, g)
}

/// Gauss–Jordan inverse (n × n, f64), partial pivoting.
fn inverse(a: &[f64], n: usize) -> Vec<f64> {
    let mut m = a.to_vec();
    let mut inv: Vec<f64> = (0..n * n).map(|i| if i / n == i % n { 1.0 } else { 0.0 }).collect();
    for c in 0..n {
        let p = (c..n).max_by(|&i, &j| m[i * n + c].abs().total_cmp(&m[j * n + c].abs())).unwrap();
        for k in 0..n {
            m.swap(c * n + k, p * n + k);
            inv.swap(c * n + k, p * n + k);
        }
        let d = m[c * n + c];
        for k in 0..n {
            m[c * n + k] /= d;
            inv[c * n + k] /= d;
        }
        for r in 0..n {
            if r != c {
                let f = m[r * n + c];
                for k in 0..n {
                    m[r * n + k] -= f * m[c * n + k];
                    inv[r * n + k] -= f * inv[c * n + k];
                }
            }
        }
    }
    inv
}

/// The Optimal Brain Quantizer loop, written from the definition: quantize column `j`, move the
/// remaining weights by `−e/[H⁻¹]_jj · [H⁻¹]_j,k`, remove `j` from `H⁻¹` by a rank-1 downdate.
/// Returns the dequantized weights.
fn obq_reference(ty: GgmlType, rows: usize, cols: usize, w: &[f32], gram: &[f64], damp: f64) -> Vec<f32> {
    let mut h = gram.to_vec();
    let dead: Vec<bool> = (0..cols).map(|j| h[j * cols + j] == 0.0).collect();
    for j in 0..cols {
        if dead[j] {
            h[j * cols + j] = 1.0;
        }
    }
    let mean = (0..cols).map(|j| h[j * cols + j]).sum::<f64>() / cols as f64;
    for j in 0..cols {
        h[j * cols + j] += damp * mean;
    }
    let hinv0 = inverse(&h, cols);
    let mut out = vec![0f32; rows * cols];
    for r in 0..rows {
        let mut hinv = hinv0.clone();
        let mut row: Vec<f64> = (0..cols).map(|j| if dead[j] { 0.0 } else { w[r * cols + j] as f64 }).collect();
        let mut grid = BlockGrid { ty, d: 0.0, m: 0.0 };
        for j in 0..cols {
            if j % QK == 0 {
                let block: Vec<f32> = row[j..j + QK].iter().map(|&x| x as f32).collect();
                grid = BlockGrid::of(ty, &block).unwrap().stored();
            }
            let (_, q) = grid.nearest(row[j] as f32);
            out[r * cols + j] = q;
            let d = hinv[j * cols + j];
            let e = (row[j] - q as f64) / d;
            for k in j + 1..cols {
                row[k] -= e * hinv[j * cols + k];
            }
            let hj: Vec<f64> = (0..cols).map(|k| hinv[j * cols + k]).collect();
            for a in 0..cols {
                for b in 0..cols {
                    hinv[a * cols + b] -= hj[a] * hj[b] / d;
                }
            }
        }
    }
    out
}

/// `‖(W − Ŵ)·X‖²_F`.
fn output_error(w: &[f32], wq: &[f32], x: &[f64], rows: usize, cols: usize, n: usize) -> f64 {
    let mut total = 0.0;
    for r in 0..rows {
        for t in 0..n {
            let y: f64 = (0..cols).map(|j| (w[r * cols + j] - wq[r * cols + j]) as f64 * x[j * n + t]).sum();
            total += y * y;
        }
    }
    total
}

#[test]
fn equals_the_obq_loop() {
    let (rows, cols, n) = (11, 64, 200);
    let (_, gram) = correlated_inputs(cols, n, 5);
    let mut r = lcg(17);
    let w: Vec<f32> = (0..rows * cols).map(|_| r() as f32 * 0.1).collect();
    for ty in TYPES {
        let q = gptq_quantize(ty, rows, cols, &w, &gram, 0.01).unwrap();
        let got = dequantize(ty, &q.to_ggml_bytes(), rows * cols).unwrap();
        let want = obq_reference(ty, rows, cols, &w, &gram, 0.01);
        // Equal values (code 0 of Q8_0 may come back as −0.0 from the reference).
        let same = got.iter().zip(&want).filter(|(a, b)| a == b).count();
        assert_eq!(same, rows * cols, "{ty}: {} of {} weights differ", rows * cols - same, rows * cols);
    }
}

#[test]
fn beats_round_to_nearest_on_correlated_inputs() {
    let (rows, cols, n) = (24, 128, 400);
    let (x, gram) = correlated_inputs(cols, n, 9);
    let mut r = lcg(23);
    let w: Vec<f32> = (0..rows * cols).map(|_| r() as f32 * 0.05).collect();
    for ty in TYPES {
        let rtn = dequantize(ty, &quantize(ty, &w).unwrap(), rows * cols).unwrap();
        let q = gptq_quantize(ty, rows, cols, &w, &gram, 0.01).unwrap();
        let g = dequantize(ty, &q.to_ggml_bytes(), rows * cols).unwrap();
        let (e_rtn, e_gptq) = (output_error(&w, &rtn, &x, rows, cols, n), output_error(&w, &g, &x, rows, cols, n));
        println!("{ty}: ‖ΔW·X‖² round-to-nearest {e_rtn:.4e}, GPTQ {e_gptq:.4e} ({:.2}×)", e_gptq / e_rtn);
        assert!(e_gptq < 0.7 * e_rtn, "{ty}: GPTQ {e_gptq:e} vs RTN {e_rtn:e}");
    }
}

/// With uncorrelated unit inputs (`H ∝ I`) there is nothing to compensate: every weight is the
/// nearest point of its block's grid, within half a step.
#[test]
fn identity_hessian_is_nearest_rounding() {
    let (rows, cols) = (5, 96);
    let gram: Vec<f64> = (0..cols * cols).map(|i| if i / cols == i % cols { 3.0 } else { 0.0 }).collect();
    let mut r = lcg(2);
    let w: Vec<f32> = (0..rows * cols).map(|_| r() as f32).collect();
    for ty in TYPES {
        let q = gptq_quantize(ty, rows, cols, &w, &gram, 0.0).unwrap();
        let g = dequantize(ty, &q.to_ggml_bytes(), rows * cols).unwrap();
        for (b, (wb, gb)) in w.chunks(QK).zip(g.chunks(QK)).enumerate() {
            let grid = BlockGrid::of(ty, wb).unwrap().stored();
            for (&a, &c) in wb.iter().zip(gb) {
                assert_eq!(grid.nearest(a).1, c, "{ty} block {b}");
            }
        }
    }
}

/// An input that never fires gets weight 0 before quantizing (its weight cannot matter), and a
/// singular Hessian is rescued by the dampening.
#[test]
fn dead_inputs_and_singular_hessians() {
    let (rows, cols, n) = (4, 64, 50);
    let (_, mut gram) = correlated_inputs(cols, n, 4); // rank ≤ 50 < 64: singular
    for k in 0..cols {
        gram[7 * cols + k] = 0.0;
        gram[k * cols + 7] = 0.0;
    }
    let w = vec![0.25f32; rows * cols];
    let q = gptq_quantize(GgmlType::Q8_0, rows, cols, &w, &gram, 0.01).unwrap();
    let g = dequantize(GgmlType::Q8_0, &q.to_ggml_bytes(), rows * cols).unwrap();
    assert!(g.iter().all(|v| v.is_finite()));
    for r in 0..rows {
        assert_eq!(g[r * cols + 7], 0.0, "row {r}: the dead input's weight");
    }
}

/// The per-channel int8 and group-wise int4 formats through the same sweep: with `H ∝ I` GPTQ
/// is exactly round-to-nearest (`IntMatrix::quantize`), and on correlated inputs it cuts the
/// layer's output error as it does for the ggml blocks.
#[test]
fn channel_and_group_formats() {
    use kiln_core::quant::QuantMatrix;
    use kiln_formats::quant::{gptq_quantize_weight, IntFormat, QuantWeight, WeightFormat};
    let formats = ["w8a16", "w8a8", "int4-g32", "int4-g64", "int4-g128"].map(|n| WeightFormat::from_name(n).unwrap());
    let (rows, cols, n) = (24, 128, 400);
    let eye: Vec<f64> = (0..cols * cols).map(|i| if i / cols == i % cols { 2.0 } else { 0.0 }).collect();
    let (x, gram) = correlated_inputs(cols, n, 9);
    let mut r = lcg(23);
    let w: Vec<f32> = (0..rows * cols).map(|_| r() as f32 * 0.05).collect();
    for fmt in formats {
        let rtn = QuantWeight::quantize(fmt, rows, cols, &w).unwrap().dequantize().unwrap();
        let same = gptq_quantize_weight(fmt, rows, cols, &w, &eye, 0.0).unwrap();
        assert_eq!(same.weight_format(), fmt);
        assert_eq!(same.dequantize().unwrap(), rtn, "{}: identity Hessian = round to nearest", fmt.name());
        let g = gptq_quantize_weight(fmt, rows, cols, &w, &gram, 0.01).unwrap().dequantize().unwrap();
        let (e_rtn, e_gptq) = (output_error(&w, &rtn, &x, rows, cols, n), output_error(&w, &g, &x, rows, cols, n));
        println!("{}: ‖ΔW·X‖² round-to-nearest {e_rtn:.4e}, GPTQ {e_gptq:.4e} ({:.2}×)", fmt.name(), e_gptq / e_rtn);
        assert!(e_gptq < 0.7 * e_rtn, "{}: GPTQ {e_gptq:e} vs RTN {e_rtn:e}", fmt.name());
    }
    let int4 = WeightFormat::Int(IntFormat::Int4 { group: 128 });
    assert!(gptq_quantize_weight(int4, 2, 64, &[0.0; 128], &eye[..64 * 64], 0.01).is_err(), "64 < group");
}
