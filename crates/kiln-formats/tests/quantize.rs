//! f32 → Q8_0/Q4_0/Q4_1: bytes equal to gguf-py's quantizers (`tools/make_quantize_fixtures.py`),
//! round-trip error within half a step, and `QMatrix::quantize` products against the f32 matrix.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::quant::QuantMatrix;
use kiln_formats::quant::{dequantize, quantize};
use kiln_formats::{GgmlType, QMatrix};

fn fixture() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/quantize.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

const TYPES: [(GgmlType, &str); 3] = [(GgmlType::Q8_0, "Q8_0"), (GgmlType::Q4_0, "Q4_0"), (GgmlType::Q4_1, "Q4_1")];

#[test]
fn bytes_equal_gguf_py() {
    let f = fixture();
    let x: Vec<f32> = f["values"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
    for (ty, name) in TYPES {
        let got = quantize(ty, &x).unwrap();
        let want = hex(f[name].as_str().unwrap());
        assert_eq!(got.len(), want.len(), "{name}");
        let diff = got.iter().zip(&want).position(|(a, b)| a != b);
        assert!(diff.is_none(), "{name}: first differing byte {diff:?} (block {})", diff.unwrap_or(0) / ty.type_size());
    }
}

#[test]
fn round_trip_is_within_half_a_step() {
    let mut s = 99u64;
    let x: Vec<f32> = (0..32 * 40)
        .map(|i| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * (1.0 + (i / 32) as f32)
        })
        .collect();
    for (ty, name) in TYPES {
        let back = dequantize(ty, &quantize(ty, &x).unwrap(), x.len()).unwrap();
        for (b, (xs, ys)) in x.chunks(32).zip(back.chunks(32)).enumerate() {
            let (lo, hi) = xs.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            let amax = lo.abs().max(hi.abs());
            // half a quantization step, plus the f16 rounding (2⁻¹¹ relative) of the scale times
            // the largest quant, and of Q4_1's stored minimum
            let (step, qmax, m) = match ty {
                GgmlType::Q8_0 => (amax / 127.0, 127.0, 0.0),
                GgmlType::Q4_0 => (amax / 8.0, 8.0, 0.0),
                _ => ((hi - lo) / 15.0, 15.0, lo.abs()),
            };
            // Q4_0's grid is (q − 8)·d, q ∈ 0..=15: it reaches −8d = the extreme value but only
            // +7d on the other side, so values there may clip by up to a whole step (ggml's design)
            let half = if ty == GgmlType::Q4_0 { 1.0 } else { 0.5 };
            let bound = half * step + (qmax * step + m) / 2048.0 + 1e-6;
            for (&a, &r) in xs.iter().zip(ys) {
                assert!((a - r).abs() <= bound, "{name} block {b}: {a} -> {r} (step {step})");
            }
        }
    }
    // a length that is not whole blocks, and an unsupported type, are errors
    assert!(quantize(GgmlType::Q8_0, &x[..33]).is_err());
    assert!(quantize(GgmlType::Q6_K, &x[..256]).is_err());
}

#[test]
fn quantized_matrix_multiplies_like_its_dequantized_weights() {
    let (rows, cols) = (40, 96);
    let w: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.1).collect();
    let x: Vec<f32> = (0..3 * cols).map(|i| (i % 17) as f32 / 17.0 - 0.4).collect();
    for (ty, name) in TYPES {
        let q = QMatrix::quantize(ty, rows, cols, &w).unwrap();
        assert_eq!(q.shape(), (rows, cols));
        let bytes = q.to_ggml_bytes();
        assert_eq!(bytes, quantize(ty, &w).unwrap(), "{name}: packed rows unpack to ggml's layout");
        let wd = dequantize(ty, &bytes, w.len()).unwrap();
        let mut y = vec![0.0f32; 3 * rows];
        q.matmul_t(&x, 3, &mut y).unwrap();
        for m in 0..3 {
            for r in 0..rows {
                let want: f32 = (0..cols).map(|c| x[m * cols + c] * wd[r * cols + c]).sum();
                // activations are rounded to 8 bits per block for the integer kernels
                let bound: f32 = (0..cols).map(|c| wd[r * cols + c].abs()).sum::<f32>() * 0.6 / 254.0 + 1e-4;
                assert!((y[m * rows + r] - want).abs() <= bound, "{name} ({m},{r}): {} vs {want}", y[m * rows + r]);
            }
        }
    }
    assert!(QMatrix::quantize(GgmlType::Q8_0, rows, cols, &w[1..]).is_err());
}
