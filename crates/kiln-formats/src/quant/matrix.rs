//! [`QMatrix`]: a ggml-quantized weight matrix kept as its blocks, implementing
//! [`kiln_core::quant::QuantMatrix`]: `y = x·Wᵀ` dequantizes each weight row once (into a
//! per-task scratch row) and dots it with every input row, rows split over rayon's threads, so
//! memory traffic is the quantized bytes (Q4_1: 0.625 bytes per weight instead of 4).

use super::{dequantize_into, dequantize_row_into, GgmlType};
use crate::{FormatError, Result};
use kiln_core::quant::QuantMatrix;
use rayon::prelude::*;

/// Weight rows handled per rayon task.
const ROWS_PER_TASK: usize = 16;

/// A (rows, cols) matrix of ggml blocks, row-major; each row is `cols / block` blocks.
#[derive(Clone, Debug)]
pub struct QMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: Vec<u8>,
}

impl QMatrix {
    /// Wraps `data` (all blocks of a rows × cols matrix of `ty`); the sizes must agree and `ty`
    /// must be a type kiln dequantizes.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: Vec<u8>) -> Result<QMatrix> {
        let bad = |msg: String| FormatError::BadLength { ty, msg: format!("QMatrix {rows}×{cols}: {msg}") };
        if !ty.can_dequantize() {
            return Err(bad("cannot be dequantized".into()));
        }
        if cols == 0 || !cols.is_multiple_of(ty.block_size()) {
            return Err(bad(format!("row length is not a multiple of the block size {}", ty.block_size())));
        }
        let row_bytes = cols / ty.block_size() * ty.type_size();
        if rows.checked_mul(row_bytes) != Some(data.len()) {
            return Err(bad(format!("{} bytes for {rows} rows of {row_bytes}", data.len())));
        }
        Ok(QMatrix { ty, rows, cols, row_bytes, data })
    }

    /// Rows (output features).
    pub fn shape_rows(&self) -> usize {
        self.rows
    }

    /// The block type.
    pub fn ggml_type(&self) -> GgmlType {
        self.ty
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// The raw bytes of row `r`.
    pub fn row(&self, r: usize) -> &[u8] {
        &self.data[r * self.row_bytes..(r + 1) * self.row_bytes]
    }

    /// A new matrix of the rows `order[i]` of `parts` stacked (all of one type and width): the
    /// row permutations and concatenations of fused projections, on the blocks themselves.
    pub fn gather_rows(parts: &[&QMatrix], order: &[(usize, usize)]) -> Result<QMatrix> {
        let first = parts
            .first()
            .ok_or_else(|| FormatError::BadLength { ty: GgmlType::F32, msg: "gather_rows of nothing".into() })?;
        let bad = |msg: String| FormatError::BadLength { ty: first.ty, msg: format!("gather_rows: {msg}") };
        if parts.iter().any(|p| p.ty != first.ty || p.cols != first.cols) {
            return Err(bad("parts differ in type or width".into()));
        }
        let mut data = Vec::with_capacity(order.len() * first.row_bytes);
        for &(p, r) in order {
            let part =
                parts.get(p).filter(|m| r < m.rows).ok_or_else(|| bad(format!("row ({p}, {r}) does not exist")))?;
            data.extend_from_slice(part.row(r));
        }
        QMatrix::new(first.ty, order.len(), first.cols, data)
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // 8 independent partial sums so the loop vectorises
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// f16 from two little-endian bytes, as f32.
fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// `Σ_k W[row, k]·x[k]` straight from the blocks for Q4_1 (20 bytes → 32 weights: f16 d, f16 m,
/// 16 bytes of nibbles, weight j in the low nibble of byte j and weight j + 16 in its high
/// nibble; w = d·q + m) and Q8_0 (34 bytes → 32 weights: f16 d, 32 × i8; w = d·q): per block
/// `d·Σ q·x (+ m·Σ x)`, no dequantized row. Other types: `None`.
fn fused_dot(ty: GgmlType, row: &[u8], x: &[f32]) -> Option<f32> {
    match ty {
        GgmlType::Q4_1 => Some(
            row.chunks_exact(20)
                .zip(x.chunks_exact(32))
                .map(|(b, xs)| {
                    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                    let (mut lo, mut hi, mut sx) = ([0f32; 16], [0f32; 16], [0f32; 16]);
                    for j in 0..16 {
                        let q = b[4 + j];
                        lo[j] = (q & 0x0F) as f32 * xs[j];
                        hi[j] = (q >> 4) as f32 * xs[j + 16];
                        sx[j] = xs[j] + xs[j + 16];
                    }
                    let (lo, hi, sx): (f32, f32, f32) = (lo.iter().sum(), hi.iter().sum(), sx.iter().sum());
                    d * (lo + hi) + m * sx
                })
                .sum(),
        ),
        GgmlType::Q8_0 => Some(
            row.chunks_exact(34)
                .zip(x.chunks_exact(32))
                .map(|(b, xs)| {
                    let mut acc = [0f32; 32];
                    for j in 0..32 {
                        acc[j] = (b[2 + j] as i8) as f32 * xs[j];
                    }
                    f16_at(b, 0) * acc.iter().sum::<f32>()
                })
                .sum(),
        ),
        _ => None,
    }
}

impl QuantMatrix for QMatrix {
    fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    fn format(&self) -> &'static str {
        self.ty.name()
    }

    fn bytes(&self) -> usize {
        self.data.len()
    }

    fn matmul_t(&self, x: &[f32], m: usize, out: &mut [f32]) -> kiln_core::Result<()> {
        let (rows, cols) = (self.rows, self.cols);
        if x.len() != m * cols || out.len() != m * rows {
            return Err(kiln_core::Error::ShapeMismatch {
                op: "QMatrix::matmul_t",
                lhs: vec![m, cols],
                rhs: vec![rows, cols],
            });
        }
        // (rows, m) results per task, transposed into out (m, rows) afterwards
        let mut cols_major = vec![0f32; rows * m];
        cols_major.par_chunks_mut(ROWS_PER_TASK * m).enumerate().try_for_each(|(t, chunk)| {
            let fused = matches!(self.ty, GgmlType::Q4_1 | GgmlType::Q8_0);
            let mut w = if fused { Vec::new() } else { vec![0f32; cols] };
            for (j, res) in chunk.chunks_mut(m).enumerate() {
                let r = t * ROWS_PER_TASK + j;
                if fused {
                    for (i, o) in res.iter_mut().enumerate() {
                        *o = fused_dot(self.ty, self.row(r), &x[i * cols..(i + 1) * cols]).unwrap_or(0.0);
                    }
                    continue;
                }
                dequantize_row_into(self.ty, self.row(r), &mut w)?;
                for (i, o) in res.iter_mut().enumerate() {
                    *o = dot(&x[i * cols..(i + 1) * cols], &w);
                }
            }
            Ok::<(), FormatError>(())
        })?;
        for r in 0..rows {
            for i in 0..m {
                out[i * rows + r] = cols_major[r * m + i];
            }
        }
        Ok(())
    }

    fn dequantize(&self) -> kiln_core::Result<Vec<f32>> {
        let mut out = vec![0f32; self.rows * self.cols];
        dequantize_into(self.ty, &self.data, &mut out)?;
        Ok(out)
    }
}

impl QMatrix {
    /// The 2-D tensor `name` of a GGUF file, kept quantized: GGUF dims (ne0, ne1) are
    /// (cols, rows).
    pub fn from_gguf(g: &crate::GgufFile, name: &str) -> Result<QMatrix> {
        let info = g.tensor_info(name).ok_or_else(|| FormatError::TensorNotFound(name.to_string()))?;
        let &[cols, rows] = info.dims.as_slice() else {
            return Err(FormatError::BadDims {
                tensor: name.to_string(),
                dims: info.dims.clone(),
                msg: "a weight matrix must have 2 dims".into(),
            });
        };
        let (rows, cols) = (usize::try_from(rows), usize::try_from(cols));
        let (Ok(rows), Ok(cols)) = (rows, cols) else {
            return Err(FormatError::BadDims {
                tensor: name.to_string(),
                dims: info.dims.clone(),
                msg: "too large".into(),
            });
        };
        QMatrix::new(info.ggml_type, rows, cols, g.tensor_data(info).to_vec())
    }
}
