//! [`QMatrix`]: a ggml-quantized weight matrix kept as its blocks, implementing
//! [`kiln_core::quant::QuantMatrix`]: `y = x·Wᵀ` never materialises `W`. For Q4_1 and Q8_0 the
//! input rows are quantized to 8 bits once and each weight row is dotted with them in integers
//! (`vec_dot.rs`); other types dequantize each weight row once into a per-task scratch row. Rows
//! are split over rayon's threads, and every weight byte is read once per product, so a decoding
//! step streams the quantized bytes (Q4_1: 0.625 bytes per weight instead of 4).

use super::vec_dot::{dot_rows, has_int_kernel, pack_row, unpack_row, Q8Row};
use super::{dequantize_row_into, GgmlType};
use crate::{FormatError, Result};
use kiln_core::quant::QuantMatrix;
use rayon::prelude::*;

/// A (rows, cols) matrix of ggml blocks, row-major; each row is `cols / block` blocks.
#[derive(Clone, Debug)]
pub struct QMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    /// Row-major rows, each in the kernels' packed layout (`vec_dot::pack_row`).
    data: Vec<u8>,
}

impl QMatrix {
    /// Takes `data` (all blocks of a rows × cols matrix of `ty`, ggml's layout as in a GGUF
    /// file) and packs each row for the kernels; the sizes must agree and `ty` must be a type
    /// kiln dequantizes.
    pub fn new(ty: GgmlType, rows: usize, cols: usize, data: Vec<u8>) -> Result<QMatrix> {
        let mut m = QMatrix::check(ty, rows, cols, data)?;
        if has_int_kernel(ty) {
            let mut packed = vec![0u8; m.data.len()];
            for (src, dst) in m.data.chunks_exact(m.row_bytes).zip(packed.chunks_exact_mut(m.row_bytes)) {
                pack_row(ty, src, dst);
            }
            m.data = packed;
        }
        Ok(m)
    }

    /// Quantizes a row-major (rows, cols) f32 matrix to `ty` (Q8_0, Q4_0 or Q4_1; `cols` a
    /// multiple of 32) with ggml's reference quantizers, rows in parallel.
    pub fn quantize(ty: GgmlType, rows: usize, cols: usize, w: &[f32]) -> Result<QMatrix> {
        if rows.checked_mul(cols) != Some(w.len()) || cols == 0 {
            return Err(FormatError::BadLength { ty, msg: format!("{} values for a {rows}×{cols} matrix", w.len()) });
        }
        let row_bytes = super::byte_len(ty, cols)?;
        let mut data = vec![0u8; rows * row_bytes];
        data.par_chunks_mut(row_bytes)
            .zip(w.par_chunks(cols))
            .try_for_each(|(o, x)| super::quantize_row_into(ty, x, o))?;
        QMatrix::new(ty, rows, cols, data)
    }

    /// The blocks in ggml's layout (as a GGUF file stores them), row after row.
    pub fn to_ggml_bytes(&self) -> Vec<u8> {
        if !has_int_kernel(self.ty) {
            return self.data.clone();
        }
        let mut out = vec![0u8; self.data.len()];
        for (src, dst) in self.data.chunks_exact(self.row_bytes).zip(out.chunks_exact_mut(self.row_bytes)) {
            unpack_row(self.ty, src, dst);
        }
        out
    }

    /// Validates sizes and wraps `data` as it is (already packed, or of a type without packing).
    fn check(ty: GgmlType, rows: usize, cols: usize, data: Vec<u8>) -> Result<QMatrix> {
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

    /// The stored bytes of row `r` (packed layout for Q4_1/Q8_0, ggml's blocks otherwise).
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
        QMatrix::check(first.ty, order.len(), first.cols, data) // rows stay packed
    }

    /// Row `r` as ggml blocks into `blocks` (`row_bytes` long).
    fn gguf_row(&self, r: usize, blocks: &mut [u8]) {
        unpack_row(self.ty, self.row(r), blocks);
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

/// The integer kernel's status as a result (`false` means the sizes QMatrix checked disagreed,
/// which would be a bug here rather than bad input).
fn check_kernel(ok: bool, ty: GgmlType) -> kiln_core::Result<()> {
    if ok {
        Ok(())
    } else {
        Err(kiln_core::Error::Invalid {
            op: "QMatrix::matmul_t",
            msg: format!("{} kernel refused its sizes", ty.name()),
        })
    }
}

/// `out (m, rows)` = transpose of `src (rows, m)`.
fn transpose_into(src: &[f32], rows: usize, m: usize, out: &mut [f32]) {
    for r in 0..rows {
        for i in 0..m {
            out[i * rows + r] = src[r * m + i];
        }
    }
}

/// Checks the operands of `out (m, rows) = x (m, cols) · Wᵀ`.
pub(super) fn check_matmul_t(
    op: &'static str,
    (rows, cols): (usize, usize),
    x_len: usize,
    m: usize,
    out_len: usize,
) -> kiln_core::Result<()> {
    if x_len != m * cols || out_len != m * rows {
        return Err(kiln_core::Error::ShapeMismatch {
            op,
            lhs: vec![x_len / cols.max(1), cols],
            rhs: vec![rows, cols],
        });
    }
    Ok(())
}

/// Weight rows per parallel task of a product: two tasks per thread (fork/join costs
/// microseconds, a decoding product takes tens), a multiple of 4 (the kernels' row tile), at
/// least 16 rows.
fn rows_per_task(rows: usize) -> usize {
    rows.div_ceil(2 * rayon::current_num_threads()).next_multiple_of(4).max(16)
}

/// The parallel skeleton of a quantized `out (m, rows) = x (m, cols) · Wᵀ`: the weight rows
/// are split into tasks over rayon's pool and `f(r0, chunk)` fills `chunk`, the rows `r0 ..
/// r0 + chunk.len()/m` of the (rows, m) product, row-major (each weight row is read once and
/// dotted with all m activation rows); then the product is transposed into `out` (for m = 1
/// the layouts agree and `f` writes `out` directly). Returns whether every task returned true.
pub(super) fn split_rows_t(
    rows: usize,
    m: usize,
    out: &mut [f32],
    f: impl Fn(usize, &mut [f32]) -> bool + Sync,
) -> bool {
    if m == 0 || rows == 0 {
        return true;
    }
    let per_task = rows_per_task(rows);
    if m == 1 {
        return out.par_chunks_mut(per_task).enumerate().all(|(t, o)| f(t * per_task, o));
    }
    let mut rows_major = vec![0f32; rows * m]; // (rows, m)
    let ok = rows_major.par_chunks_mut(per_task * m).enumerate().all(|(t, c)| f(t * per_task, c));
    transpose_into(&rows_major, rows, m, out);
    ok
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
        check_matmul_t("QMatrix::matmul_t", (rows, cols), x.len(), m, out.len())?;
        if m == 0 {
            return Ok(());
        }
        if has_int_kernel(self.ty) {
            // activations quantized once; each weight row streamed once and dotted with all m rows
            let xq = Q8Row::rows(x, cols);
            let rb = self.row_bytes;
            let ok = split_rows_t(rows, m, out, |r0, chunk| {
                dot_rows(self.ty, &self.data[r0 * rb..(r0 + chunk.len() / m) * rb], &xq, chunk)
            });
            return check_kernel(ok, self.ty);
        }
        // other types: each weight row dequantized once into a per-task scratch row
        let ok = split_rows_t(rows, m, out, |r0, chunk| {
            let mut w = vec![0f32; cols];
            chunk.chunks_mut(m).enumerate().all(|(j, res)| {
                let ok = dequantize_row_into(self.ty, self.row(r0 + j), &mut w).is_ok();
                for (i, o) in res.iter_mut().enumerate() {
                    *o = dot(&x[i * cols..(i + 1) * cols], &w);
                }
                ok
            })
        });
        check_kernel(ok, self.ty)
    }

    fn dequantize_row(&self, r: usize, out: &mut [f32]) -> kiln_core::Result<()> {
        if r >= self.rows || out.len() != self.cols {
            return Err(kiln_core::Error::Invalid {
                op: "QMatrix::dequantize_row",
                msg: format!("row {r} into {} values of a {}×{} matrix", out.len(), self.rows, self.cols),
            });
        }
        let mut blocks = vec![0u8; self.row_bytes];
        self.gguf_row(r, &mut blocks);
        Ok(dequantize_row_into(self.ty, &blocks, out)?)
    }

    fn dequantize(&self) -> kiln_core::Result<Vec<f32>> {
        let mut out = vec![0f32; self.rows * self.cols];
        out.par_chunks_mut(self.cols).enumerate().try_for_each(|(r, o)| {
            let mut blocks = vec![0u8; self.row_bytes];
            self.gguf_row(r, &mut blocks);
            dequantize_row_into(self.ty, &blocks, o)
        })?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random bytes for a `rows × cols` matrix of `ty`, with every block's f16 scale(s)
    /// set to small sane values (random bytes there could be inf/NaN).
    fn random(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> QMatrix {
        let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let n = rows * cols / ty.block_size() * ty.type_size();
        let mut data: Vec<u8> = (0..n)
            .map(|_| {
                z ^= z << 13;
                z ^= z >> 7;
                z ^= z << 17;
                (z >> 32) as u8
            })
            .collect();
        let f16 = |v: f32| half::f16::from_f32(v).to_le_bytes();
        for (i, blk) in data.chunks_exact_mut(ty.type_size()).enumerate() {
            let d = 0.002 + (i % 7) as f32 * 0.001;
            match ty {
                GgmlType::Q6_K => blk[208..210].copy_from_slice(&f16(d)),
                _ => blk[..2].copy_from_slice(&f16(d)),
            }
            if ty == GgmlType::Q4_1 {
                blk[2..4].copy_from_slice(&f16(-0.01 * (i % 3) as f32));
            }
        }
        QMatrix::new(ty, rows, cols, data).unwrap()
    }

    /// `x (m, cols) · Wᵀ` in f64 from the dequantized matrix.
    fn reference(w: &QMatrix, x: &[f32], m: usize) -> Vec<f64> {
        let (rows, cols) = w.shape();
        let wd = w.dequantize().unwrap();
        let mut out = vec![0f64; m * rows];
        for i in 0..m {
            for r in 0..rows {
                out[i * rows + r] = (0..cols).map(|k| wd[r * cols + k] as f64 * x[i * cols + k] as f64).sum();
            }
        }
        out
    }

    /// Every path of `matmul_t` (integer kernels for Q4_1/Q8_0 at m = 1 and m > 1, dequantized
    /// rows for the other types) against the f64 product of the dequantized matrix. The integer
    /// paths differ by the activations' 8-bit rounding, bounded by Σ|w|·(block max/254).
    #[test]
    fn matmul_t_matches_dequantized_product() {
        let (rows, cols) = (70, 256);
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q6_K] {
            let w = random(ty, rows, cols, ty as u64);
            let wd = w.dequantize().unwrap();
            for m in [1usize, 3] {
                let x: Vec<f32> = (0..m * cols).map(|i| ((i * 37 % 101) as f32 / 50.0 - 1.0) * 0.7).collect();
                let mut out = vec![0f32; m * rows];
                w.matmul_t(&x, m, &mut out).unwrap();
                let want = reference(&w, &x, m);
                for i in 0..m {
                    for r in 0..rows {
                        let bound = if has_int_kernel(ty) {
                            (0..cols)
                                .map(|k| {
                                    let blk = &x[i * cols + k / 32 * 32..][..32];
                                    let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
                                    (wd[r * cols + k].abs() * amax / 254.0) as f64
                                })
                                .sum::<f64>()
                                + 1e-4
                        } else {
                            1e-4 * (1.0 + want[i * rows + r].abs())
                        };
                        let got = out[i * rows + r] as f64;
                        assert!(
                            (got - want[i * rows + r]).abs() <= bound,
                            "{ty:?} m {m} ({i}, {r}): {got} vs {}",
                            want[i * rows + r]
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn rows_gather_and_shapes_are_checked() {
        let w = random(GgmlType::Q8_0, 4, 64, 1);
        let mut row = vec![0f32; 64];
        w.dequantize_row(2, &mut row).unwrap();
        assert_eq!(row, w.dequantize().unwrap()[128..192]);
        assert!(w.dequantize_row(4, &mut row).is_err());
        assert!(w.dequantize_row(0, &mut row[..32]).is_err());
        assert!(w.matmul_t(&[0.0; 63], 1, &mut [0.0; 4]).is_err());
        assert!(w.matmul_t(&[0.0; 64], 1, &mut [0.0; 3]).is_err());
        // rows (1, 3) of w then row 0 of v, stacked
        let v = random(GgmlType::Q8_0, 2, 64, 2);
        let g = QMatrix::gather_rows(&[&w, &v], &[(0, 1), (0, 3), (1, 0)]).unwrap();
        assert_eq!((g.shape(), g.row(1), g.row(2)), ((3, 64), w.row(3), v.row(0)));
        assert!(QMatrix::gather_rows(&[&w], &[(0, 4)]).is_err());
        assert!(QMatrix::gather_rows(&[&w, &random(GgmlType::Q4_1, 1, 64, 3)], &[(0, 0)]).is_err());
        assert!(QMatrix::new(GgmlType::Q8_0, 2, 64, vec![0; 67]).is_err());
        assert!(QMatrix::new(GgmlType::Q8_0, 2, 48, vec![0; 68]).is_err());
    }
}
