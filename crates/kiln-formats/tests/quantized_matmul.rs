//! `Tensor::quantized_matmul` (the tensor op over the backend's quantized kernel) with a
//! `QMatrix`: batched shapes, the output equals `QMatrix::matmul_t`, the gradient reaching `x`
//! is `g·W` with `W` dequantized (straight through the activations' 8-bit rounding), and shape
//! errors are named.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::quant::QuantMatrix;
use kiln_core::{DType, Error, Tensor};
use kiln_formats::{GgmlType, QMatrix};
use std::sync::Arc;

/// A (rows, cols) Q8_0 matrix with deterministic values.
fn q8_matrix(rows: usize, cols: usize) -> QMatrix {
    let mut data = Vec::new();
    for b in 0..rows * cols / 32 {
        data.extend_from_slice(&half::f16::from_f32(0.01 + 0.001 * (b % 5) as f32).to_le_bytes());
        data.extend((0..32).map(|j| ((b * 31 + j * 7) % 255) as u8));
    }
    QMatrix::new(GgmlType::Q8_0, rows, cols, data).unwrap()
}

#[test]
fn forward_backward_and_errors() {
    let dev = kiln_cpu::cpu();
    let w: Arc<dyn QuantMatrix> = Arc::new(q8_matrix(24, 64));
    let x = Tensor::rand(&[2, 3, 64], -1.0, 1.0, DType::F32, 5, &dev).unwrap().requires_grad_();
    let y = x.quantized_matmul(&w).unwrap();
    assert_eq!(y.dims(), [2, 3, 24]);
    let mut want = vec![0f32; 6 * 24];
    w.matmul_t(&x.to_vec::<f32>().unwrap(), 6, &mut want).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), want);
    let g = Tensor::rand(&[2, 3, 24], -1.0, 1.0, DType::F32, 6, &dev).unwrap();
    y.backward_with(g.clone()).unwrap();
    let wd = Tensor::from_vec(w.dequantize().unwrap(), &[24, 64], &dev).unwrap();
    let dx = g.matmul(&wd).unwrap().to_vec::<f32>().unwrap();
    assert_eq!(x.grad().unwrap().to_vec::<f32>().unwrap(), dx);
    let bad = Tensor::zeros(&[3, 63], DType::F32, &dev).unwrap();
    assert!(matches!(bad.quantized_matmul(&w), Err(Error::ShapeMismatch { op: "quantized_matmul", .. })));
}
