//! The per-channel / group-wise integer formats (`IntMatrix`: W8A16, W8A8, INT4-G32/64/128):
//! rounding error, the fast kernels against the scalar references, the products against
//! dequantize-then-matmul, and the stored tensors.

use half::f16;
use kiln_core::quant::QuantMatrix;
use kiln_formats::quant::vec_dot::Q8Row;
use kiln_formats::quant::{
    dot_int4_scalar, dot_w8a16_scalar, dot_w8a8_scalar, IntFormat, IntMatrix, QuantWeight, TokenQ8, WeightFormat,
};
use safetensors::Dtype;

/// Deterministic pseudo-random values in [-1, 1), with a few rows scaled up (outlier channels).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn weights(rows: usize, cols: usize, seed: u64) -> Vec<f32> {
    let mut w = values(rows * cols, seed);
    for (r, row) in w.chunks_mut(cols).enumerate() {
        let s = 0.02 * (1.0 + (r % 5) as f32);
        row.iter_mut().for_each(|v| *v *= s);
    }
    w
}

const FORMATS: [IntFormat; 5] = [
    IntFormat::W8A16,
    IntFormat::W8A8,
    IntFormat::Int4 { group: 32 },
    IntFormat::Int4 { group: 64 },
    IntFormat::Int4 { group: 128 },
];

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn f16s(b: &[u8]) -> Vec<f16> {
    b.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]])).collect()
}

#[test]
fn names_parse() {
    for f in FORMATS {
        assert_eq!(IntFormat::from_name(&f.name().to_lowercase()), Some(f));
        assert_eq!(WeightFormat::from_name(f.name()), Some(WeightFormat::Int(f)));
    }
    assert_eq!(IntFormat::from_name("int4-g96"), None);
    assert_eq!(WeightFormat::from_name("q6_k"), None);
    assert!(matches!(WeightFormat::from_name("Q4_1"), Some(WeightFormat::Blocks(_))));
}

/// Rounding to nearest on the stored grid: W8 within half a step of each row's scale; INT4
/// within half a step of its group's scale (plus f16 rounding of the scale at the clamped top),
/// and finer groups are more accurate.
#[test]
fn rounding_error_is_half_a_step() {
    let (rows, cols) = (9, 256);
    let w = weights(rows, cols, 1);
    let mut rms = Vec::new();
    for f in FORMATS {
        let q = IntMatrix::quantize(f, rows, cols, &w).unwrap();
        let d = q.dequantize().unwrap();
        let g = if f.row_multiple() == 1 { cols } else { f.row_multiple() };
        for (r, (wr, dr)) in w.chunks(cols).zip(d.chunks(cols)).enumerate() {
            for (gw, gd) in wr.chunks(g).zip(dr.chunks(g)) {
                let (lo, hi) = gw.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
                let step = if g == cols { lo.abs().max(hi.abs()) / 127.0 } else { (hi - lo) / 15.0 };
                for (a, b) in gw.iter().zip(gd) {
                    assert!((a - b).abs() <= 0.5 * step * 1.002 + 1e-3 * (hi - lo), "{} row {r}: {a} vs {b}", f.name());
                }
            }
        }
        rms.push((w.iter().zip(&d).map(|(a, b)| (a - b).powi(2)).sum::<f32>() / w.len() as f32).sqrt());
    }
    assert!(rms[0] == rms[1] && rms[0] < rms[2], "int8 beats int4: {rms:?}");
    assert!(rms[2] < rms[3] && rms[3] < rms[4], "smaller groups are finer: {rms:?}");
}

/// `matmul_t` (AVX2 kernels where the CPU has them) equals the scalar references, for decode
/// (m = 1) and prompt (m > 1) shapes and row lengths with tails (W8: 100, 200).
#[test]
fn kernels_match_scalar_references() {
    for f in FORMATS {
        let colss: &[usize] = if f.row_multiple() == 1 { &[100, 200, 256, 576] } else { &[128, 256, 640] };
        for &cols in colss {
            let rows = 37;
            let q = IntMatrix::quantize(f, rows, cols, &weights(rows, cols, cols as u64)).unwrap();
            let parts = q.parts();
            for m in [1usize, 5] {
                let x: Vec<f32> = values(m * cols, 7 + m as u64).iter().map(|v| v * 3.0).collect();
                let mut got = vec![0f32; m * rows];
                q.matmul_t(&x, m, &mut got).unwrap();
                for i in 0..m {
                    let xi = &x[i * cols..(i + 1) * cols];
                    for r in 0..rows {
                        let want = match f {
                            IntFormat::W8A8 => {
                                let (c, s) = (&parts[0].1[r * cols..(r + 1) * cols], f32s(&parts[1].1)[r]);
                                let t = TokenQ8::new(xi);
                                s * t.d * dot_w8a8_scalar(c, &t.q) as f32
                            }
                            IntFormat::W8A16 => {
                                f32s(&parts[1].1)[r] * dot_w8a16_scalar(&parts[0].1[r * cols..(r + 1) * cols], xi)
                            }
                            IntFormat::Int4 { group } => {
                                let ng = cols / group;
                                let mut xq = Q8Row::default();
                                xq.quantize_from(xi);
                                let gs: Vec<f32> = xq.s.chunks(group / 32).map(|s| s.iter().sum()).collect();
                                let (d, mn) = (f16s(&parts[1].1), f16s(&parts[2].1));
                                dot_int4_scalar(
                                    &parts[0].1[r * cols / 2..(r + 1) * cols / 2],
                                    &d[r * ng..(r + 1) * ng],
                                    &mn[r * ng..(r + 1) * ng],
                                    &xq,
                                    &gs,
                                )
                            }
                        };
                        let g = got[i * rows + r];
                        // W8A8's integer sum is exact: bit-equal; the others differ in f32 order
                        let tol = if f == IntFormat::W8A8 { 0.0 } else { 1e-5 * (1.0 + want.abs()) };
                        assert!((g - want).abs() <= tol, "{} cols {cols} m {m} ({i}, {r}): {g} vs {want}", f.name());
                    }
                }
            }
        }
    }
}

/// Against the f64 product of the dequantized matrix: W8A16 is exact up to f32 rounding; W8A8
/// and INT4 differ by the activations' 8-bit rounding, at most Σ|w|·t/2 with t the activation
/// scale (per token for W8A8, per 32-block for INT4).
#[test]
fn products_match_dequantize_then_matmul() {
    let (rows, cols, m) = (21, 256, 3);
    for f in FORMATS {
        let q = IntMatrix::quantize(f, rows, cols, &weights(rows, cols, 3)).unwrap();
        let wd = q.dequantize().unwrap();
        let x: Vec<f32> = values(m * cols, 11).iter().enumerate().map(|(k, v)| v * (1.0 + (k % 13) as f32)).collect();
        let mut got = vec![0f32; m * rows];
        q.matmul_t(&x, m, &mut got).unwrap();
        for i in 0..m {
            let xi = &x[i * cols..(i + 1) * cols];
            let tok = xi.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
            for r in 0..rows {
                let wr = &wd[r * cols..(r + 1) * cols];
                let exact: f64 = wr.iter().zip(xi).map(|(&a, &b)| a as f64 * b as f64).sum();
                let bound = match f {
                    IntFormat::W8A16 => 1e-5 * (1.0 + exact.abs()),
                    IntFormat::W8A8 => wr.iter().map(|w| (w.abs() * tok * 0.5) as f64).sum::<f64>() + 1e-5,
                    IntFormat::Int4 { .. } => {
                        (0..cols)
                            .map(|k| {
                                let blk = &xi[k / 32 * 32..][..32];
                                let t = blk.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                                (wr[k].abs() * t * 0.5) as f64
                            })
                            .sum::<f64>()
                            + 1e-5
                    }
                };
                let g = got[i * rows + r] as f64;
                assert!((g - exact).abs() <= bound, "{} ({i}, {r}): {g} vs {exact} (bound {bound})", f.name());
            }
        }
        // and the matrix holds under a third of its f32 bytes (int8 + row scales, int4 + group
        // scales and minima)
        assert!(q.bytes() < rows * cols * 4 / 3, "{} keeps {} bytes", f.name(), q.bytes());
    }
}

/// The stored tensors read back to the same matrix; bad parts are refused with a message.
#[test]
fn stored_tensors_round_trip_and_are_checked() {
    let (rows, cols) = (6, 128);
    let w = weights(rows, cols, 5);
    for fmt in FORMATS.map(WeightFormat::Int).into_iter().chain([WeightFormat::from_name("q4_1").unwrap()]) {
        let q = QuantWeight::quantize(fmt, rows, cols, &w).unwrap();
        let t = q.tensors().unwrap();
        let desc = q.describe();
        let get = |s: &str| {
            let p = t.iter().find(|p| p.suffix == s).unwrap();
            Ok((p.dtype, p.shape.clone(), p.bytes.as_slice()))
        };
        let back = QuantWeight::from_tensors(&desc, get).unwrap();
        assert_eq!(back.dequantize().unwrap(), q.dequantize().unwrap(), "{desc}");
        assert_eq!(back.bytes(), q.bytes());
        assert!(QuantWeight::from_tensors(&format!("{} {rows} 64", fmt.name()), get).is_err(), "wrong shape");
        assert!(QuantWeight::from_tensors("W9A9 6 128", get).is_err());
        if let WeightFormat::Int(f) = fmt {
            // a part of the wrong dtype, and a negative scale
            let wrong = |s: &str| {
                let p = t.iter().find(|p| p.suffix == s).unwrap();
                Ok((Dtype::F64, p.shape.clone(), p.bytes.as_slice()))
            };
            let e = QuantWeight::from_tensors(&desc, wrong).unwrap_err().to_string();
            assert!(e.contains("expected"), "{e}");
            let mut scales = t[1].bytes.clone();
            let n = if f.row_multiple() == 1 { 4 } else { 2 };
            scales[n - 1] |= 0x80; // sign bit of the first scale
            let parts: Vec<&[u8]> =
                t.iter().enumerate().map(|(k, p)| if k == 1 { &scales[..] } else { &p.bytes[..] }).collect();
            let e = IntMatrix::from_parts(f, rows, cols, &parts).unwrap_err().to_string();
            assert!(e.contains("negative"), "{e}");
            assert!(IntMatrix::from_parts(f, rows, cols, &parts[..1]).is_err());
        }
    }
    assert!(
        IntMatrix::quantize(IntFormat::Int4 { group: 128 }, 2, 96, &[0.0; 192]).is_err(),
        "96 is not a multiple of 128"
    );
    assert!(IntMatrix::quantize(IntFormat::W8A8, 2, 3, &[0.0; 5]).is_err());
    assert!(IntMatrix::quantize(IntFormat::Int4 { group: 96 }, 1, 96, &[0.0; 96]).is_err(), "not a stored group size");
    assert!(IntMatrix::quantize(IntFormat::W8A16, 1, 2, &[f32::NAN, 0.0]).is_err());
    let z = IntMatrix::quantize(IntFormat::W8A8, 2, 40, &[0.0; 80]).unwrap();
    let mut out = [1f32; 2];
    z.matmul_t(&[1.0; 40], 1, &mut out).unwrap();
    assert_eq!(out, [0.0, 0.0], "an all-zero matrix");
    assert!(z.matmul_t(&[1.0; 39], 1, &mut out).is_err());
}
