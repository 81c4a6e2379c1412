//! GPTQ (Frantar et al. 2022, "Accurate Post-Training Quantization for Generative Pre-trained
//! Transformers"; seed ch. 22 "quantization"): quantize a weight matrix column by column and,
//! after each column, spread its rounding error over the columns not yet quantized so that the
//! layer's *output* on calibration inputs changes as little as possible.
//!
//! For a layer `y = W·x` with calibration inputs `X` (cols × n), the objective per row `w` is
//! `‖(w − q)·X‖²`, a quadratic with Hessian `H = 2·X·Xᵀ` (cols × cols). Optimal Brain Surgeon says
//! that after fixing weight `j` to its quantized value `q_j`, the best change of the remaining
//! weights `F` is `δ_F = −(w_j − q_j) / [H_F⁻¹]_jj · [H_F⁻¹]_{j,F}`, after which `j` leaves `F`.
//! GPTQ takes the columns in order, so the successive inverses are all read from one upper
//! triangular `U` with `H⁻¹ = Uᵀ·U` (row `j` of `U` is `[H_F⁻¹]_{j,F} / √[H_F⁻¹]_jj`):
//!
//! ```text
//! for j in 0..cols:
//!     q_j  = nearest grid point to w_j        (the block's grid fixed at its first column)
//!     e    = (w_j − q_j) / U_jj
//!     w_k -= e · U_jk   for k > j
//! ```
//!
//! The grids are ggml's 32-weight blocks ([`BlockGrid`]) or the INT4 groups of 32/64/128,
//! chosen when the sweep reaches a group's first column from the weights as updated so far
//! (GPTQ's group-wise mode, "groupsize 32/128"), or one int8 scale per row fixed before the sweep
//! (its per-channel mode, W8A16/W8A8); the output is an ordinary matrix of that format for the
//! integer kernels.
//! Dampening adds `λ·mean(diag H)` to the diagonal (λ = 0.01 in the paper); inputs that never
//! fire (`H_jj = 0`) get `H_jj = 1` and weight 0, as the reference implementation does. Rows are
//! independent given `U`: they are swept in tiles of [`ROW_TILE`] (one row of `U` serves the
//! whole tile from L1) in parallel.

use super::int_matrix::{int4_code, int4_grid, IntFormat, IntMatrix};
use super::quantize::BlockGrid;
use super::{GgmlType, QMatrix, QuantWeight, WeightFormat, QK};
use crate::{FormatError, Result};
use half::f16;
use rayon::prelude::*;

/// Rows swept together: each `U` row is read once per tile.
const ROW_TILE: usize = 8;

fn bad(msg: String) -> FormatError {
    FormatError::Gptq(msg)
}

/// `V` (n × n, upper triangular, row-major) with `H = V·Vᵀ`: the Cholesky factorisation taken
/// from the bottom-right corner. Errors when `H` is not positive definite.
fn upper_cholesky(h: &[f64], n: usize) -> Result<Vec<f64>> {
    let mut v = vec![0f64; n * n];
    for j in (0..n).rev() {
        // V_jj² = H_jj − Σ_{k>j} V_jk²
        let tail = &v[j * n + j + 1..(j + 1) * n];
        let d = h[j * n + j] - tail.iter().map(|x| x * x).sum::<f64>();
        if d <= 0.0 || !d.is_finite() {
            return Err(bad(format!(
                "the Hessian is not positive definite at column {j} (pivot {d:e}): raise the dampening"
            )));
        }
        let d = d.sqrt();
        v[j * n + j] = d;
        // V_ij = (H_ij − Σ_{k>j} V_ik·V_jk) / V_jj   for i < j
        for i in 0..j {
            let (top, bottom) = v.split_at_mut(j * n);
            let vj = &bottom[j + 1..n];
            let vi = &top[i * n + j + 1..(i + 1) * n];
            let dot: f64 = vi.iter().zip(vj).map(|(a, b)| a * b).sum();
            top[i * n + j] = (h[i * n + j] - dot) / d;
        }
    }
    Ok(v)
}

/// `U = V⁻¹` for an upper triangular `V`, row by row from the bottom:
/// `U_i· = −(Σ_{k>i} V_ik·U_k·) / V_ii`, `U_ii = 1/V_ii`. Then `H⁻¹ = V⁻ᵀ·V⁻¹ = Uᵀ·U`.
fn upper_inverse(v: &[f64], n: usize) -> Vec<f64> {
    let mut u = vec![0f64; n * n];
    for i in (0..n).rev() {
        let (top, bottom) = u.split_at_mut((i + 1) * n);
        let row = &mut top[i * n..];
        for k in i + 1..n {
            let c = v[i * n + k];
            if c != 0.0 {
                let uk = &bottom[(k - i - 1) * n..(k - i) * n];
                for (r, x) in row[k..].iter_mut().zip(&uk[k..]) {
                    *r += c * x;
                }
            }
        }
        let inv = 1.0 / v[i * n + i];
        for r in row[i + 1..].iter_mut() {
            *r *= -inv;
        }
        row[i] = inv;
    }
    u
}

/// The factor `U` (upper, `H⁻¹ = Uᵀ·U`) of the dampened Hessian, and which columns are dead.
fn inverse_factor(gram: &[f64], n: usize, damp: f64) -> Result<(Vec<f64>, Vec<bool>)> {
    let mut h = gram.to_vec();
    let dead: Vec<bool> = (0..n).map(|j| h[j * n + j] == 0.0).collect();
    for (j, &d) in dead.iter().enumerate() {
        if d {
            h[j * n + j] = 1.0;
        }
    }
    let mean_diag = (0..n).map(|j| h[j * n + j]).sum::<f64>() / n as f64;
    for j in 0..n {
        h[j * n + j] += damp * mean_diag;
    }
    Ok((upper_inverse(&upper_cholesky(&h, n)?, n), dead))
}

/// GPTQ of `w` (rows × cols, row-major, as `nn.Linear` stores (out, in)) to `ty` (Q8_0, Q4_0 or
/// Q4_1) given `gram` = `Σ x·xᵀ` over the calibration inputs (cols × cols, row-major; any positive
/// multiple of the Hessian gives the same result) and the relative dampening `damp`.
pub fn gptq_quantize(ty: GgmlType, rows: usize, cols: usize, w: &[f32], gram: &[f64], damp: f64) -> Result<QMatrix> {
    if !matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q4_1) {
        return Err(bad(format!("{ty} has no GPTQ grid (Q8_0, Q4_0, Q4_1)")));
    }
    let swept = sweep(rows, cols, QK, w, gram, damp, |x| Ok(BlockGrid::of(ty, x)?.stored()), BlockGrid::nearest)?;
    let row_bytes = cols / QK * ty.type_size();
    let mut data = vec![0u8; rows * row_bytes];
    for ((codes, grids), out) in swept.iter().zip(data.chunks_exact_mut(row_bytes)) {
        for ((c, g), o) in codes.chunks_exact(QK).zip(grids).zip(out.chunks_exact_mut(ty.type_size())) {
            g.write_block(c, o);
        }
    }
    QMatrix::new(ty, rows, cols, data)
}

/// GPTQ to any [`WeightFormat`]: ggml's blocks as [`gptq_quantize`]; per-channel int8 (W8A16,
/// W8A8) with each row's scale fixed from the whole row before the sweep (GPTQ's per-channel
/// mode); INT4-G*g* with each group's scale and minimum chosen when the sweep reaches it (its
/// group-wise mode, e.g. the usual "4-bit, group size 128").
pub fn gptq_quantize_weight(
    fmt: WeightFormat,
    rows: usize,
    cols: usize,
    w: &[f32],
    gram: &[f64],
    damp: f64,
) -> Result<QuantWeight> {
    let f = match fmt {
        WeightFormat::Blocks(ty) => return Ok(gptq_quantize(ty, rows, cols, w, gram, damp)?.into()),
        WeightFormat::Int(f) => f,
    };
    let parts: Vec<Vec<u8>> = match f {
        IntFormat::Int4 { group } => {
            let choose = |x: &[f32]| {
                let (d, m) = int4_grid(x);
                Ok((d.to_f32(), m.to_f32()))
            };
            let nearest = |&(d, m): &(f32, f32), v: f32| {
                let c = int4_code(v, d, m);
                (c, c as f32 * d + m)
            };
            let swept = sweep(rows, cols, group, w, gram, damp, choose, nearest)?;
            let mut codes = Vec::with_capacity(rows * cols / 2);
            let (mut ds, mut ms) = (Vec::new(), Vec::new());
            for (c, grids) in &swept {
                for blk in c.chunks_exact(QK) {
                    codes.extend((0..QK / 2).map(|j| blk[j] | (blk[j + QK / 2] << 4)));
                }
                for &(d, m) in grids {
                    ds.extend(f16::from_f32(d).to_le_bytes());
                    ms.extend(f16::from_f32(m).to_le_bytes());
                }
            }
            vec![codes, ds, ms]
        }
        _ => {
            let choose = |x: &[f32]| Ok(x.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0);
            let nearest = |&s: &f32, v: f32| {
                let c = if s > 0.0 { (v / s).round().clamp(-127.0, 127.0) } else { 0.0 };
                ((c as i8) as u8, c * s)
            };
            let swept = sweep(rows, cols, cols, w, gram, damp, choose, nearest)?;
            let codes = swept.iter().flat_map(|(c, _)| c.iter().copied()).collect();
            let scales = swept.iter().flat_map(|(_, g)| g[0].to_le_bytes()).collect();
            vec![codes, scales]
        }
    };
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    Ok(QuantWeight::Int(IntMatrix::from_parts(f, rows, cols, &refs)?))
}

/// Checks the inputs, factors the Hessian and sweeps every row in tiles of [`ROW_TILE`] in
/// parallel: per row, the code of every weight and the grid of every `group` consecutive
/// weights (`choose` picks a grid from the group's current values, `nearest` rounds one value
/// on it and gives the value it stands for).
#[allow(clippy::too_many_arguments)] // the sweep's inputs plus the two grid functions
fn sweep<G: Send>(
    rows: usize,
    cols: usize,
    group: usize,
    w: &[f32],
    gram: &[f64],
    damp: f64,
    choose: impl Fn(&[f32]) -> Result<G> + Sync,
    nearest: impl Fn(&G, f32) -> (u8, f32) + Sync,
) -> Result<Vec<(Vec<u8>, Vec<G>)>> {
    if w.len() != rows * cols || gram.len() != cols * cols || group == 0 || !cols.is_multiple_of(group) {
        return Err(bad(format!(
            "weights {} for ({rows}, {cols}), Gram matrix {} for ({cols}, {cols}); cols must be a multiple of {group}",
            w.len(),
            gram.len()
        )));
    }
    if !(damp.is_finite() && damp >= 0.0) || gram.iter().any(|g| !g.is_finite()) {
        return Err(bad(format!("dampening {damp} and the Gram matrix must be finite and non-negative")));
    }
    let (u, dead) = inverse_factor(gram, cols, damp)?;
    let tiles: Vec<Vec<(Vec<u8>, Vec<G>)>> = w
        .par_chunks(ROW_TILE * cols)
        .map(|t| sweep_tile(cols, group, t, &u, &dead, &choose, &nearest))
        .collect::<Result<_>>()?;
    Ok(tiles.into_iter().flatten().collect())
}

/// The GPTQ sweep over a tile of rows `w` (≤ ROW_TILE rows of `cols`): each row's codes and
/// group grids.
fn sweep_tile<G>(
    cols: usize,
    group: usize,
    w: &[f32],
    u: &[f64],
    dead: &[bool],
    choose: &impl Fn(&[f32]) -> Result<G>,
    nearest: &impl Fn(&G, f32) -> (u8, f32),
) -> Result<Vec<(Vec<u8>, Vec<G>)>> {
    let n_rows = w.len() / cols;
    // Working copies (f64) with dead inputs zeroed.
    let mut work: Vec<Vec<f64>> = w
        .chunks_exact(cols)
        .map(|r| r.iter().zip(dead).map(|(&x, &d)| if d { 0.0 } else { x as f64 }).collect())
        .collect();
    let mut out: Vec<(Vec<u8>, Vec<G>)> =
        (0..n_rows).map(|_| (vec![0u8; cols], Vec::with_capacity(cols / group))).collect();
    let mut scratch = vec![0f32; group];
    let mut err = [0f64; ROW_TILE];
    for j in 0..cols {
        for r in 0..n_rows {
            if j % group == 0 {
                for (s, &x) in scratch.iter_mut().zip(&work[r][j..j + group]) {
                    *s = x as f32;
                }
                out[r].1.push(choose(&scratch)?);
            }
            let grid = out[r].1.last().ok_or_else(|| bad("no grid".into()))?;
            let (code, q) = nearest(grid, work[r][j] as f32);
            out[r].0[j] = code;
            err[r] = (work[r][j] - q as f64) / u[j * cols + j];
        }
        let uj = &u[j * cols + j + 1..(j + 1) * cols];
        for (r, row) in work.iter_mut().enumerate() {
            let e = err[r];
            for (x, &c) in row[j + 1..].iter_mut().zip(uj) {
                *x -= e * c;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        }
    }

    /// `Uᵀ·U` is the inverse of the (dampened) Hessian.
    #[test]
    fn factor_inverts_the_hessian() {
        let n = 40;
        let mut r = lcg(3);
        let x: Vec<f64> = (0..n * 100).map(|_| r()).collect();
        let mut g = vec![0f64; n * n];
        for a in 0..n {
            for b in 0..n {
                g[a * n + b] = (0..100).map(|t| x[a * 100 + t] * x[b * 100 + t]).sum();
            }
        }
        let Ok((u, _)) = inverse_factor(&g, n, 0.0) else { panic!("factor failed") };
        for a in 0..n {
            for b in 0..n {
                // (H · UᵀU)_ab
                let hinv = |i: usize, k: usize| (0..n).map(|t| u[t * n + i] * u[t * n + k]).sum::<f64>();
                let v: f64 = (0..n).map(|k| g[a * n + k] * hinv(k, b)).sum();
                assert!((v - if a == b { 1.0 } else { 0.0 }).abs() < 1e-9, "({a},{b}) {v}");
            }
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert!(gptq_quantize(GgmlType::Q4_K, 1, 32, &[0.0; 32], &[0.0; 1024], 0.01).is_err());
        assert!(gptq_quantize(GgmlType::Q4_0, 1, 31, &[0.0; 31], &[0.0; 961], 0.01).is_err());
        assert!(gptq_quantize(GgmlType::Q4_0, 2, 32, &[0.0; 32], &[0.0; 1024], 0.01).is_err());
        assert!(gptq_quantize(GgmlType::Q4_0, 1, 32, &[0.0; 32], &[f64::NAN; 1024], 0.01).is_err());
        // Not positive definite and no dampening: an error, not a NaN matrix.
        let mut g = vec![1.0f64; 1024];
        g[0] = 1.0;
        assert!(gptq_quantize(GgmlType::Q4_0, 1, 32, &[0.5; 32], &g, 0.0).is_err());
    }
}
