//! Integer block dot products: the inner loop of a quantized matmul (ggml's `vec_dot_q4_1_q8_1`
//! and `vec_dot_q8_0_q8_0` design; seed 004 "quantization: weights in int4/int8, dequantize on
//! the fly").
//!
//! The activation row `x` is quantized once per product to 8 bits in blocks of 32
//! ([`Q8Row`]: `x ≈ d·q`, `q ∈ [-127, 127]`, and `s = d·Σq`); a weight block then dots with an
//! activation block in integers:
//!
//! ```text
//! Q4_1 (w = dw·u + mw, u ∈ 0..15):  Σ w·x ≈ dw·dx·Σ u·q + mw·sx
//! Q8_0 (w = dw·v,      v ∈ ±127):   Σ w·x ≈ dw·dx·Σ v·q
//! ```
//!
//! The weight rows are kept in a *packed* layout ([`pack_row`], done once at load): a row's
//! f16 scales together, then its f16 minima (Q4_1), then its quants — the same bytes as ggml's
//! interleaved blocks, but eight blocks' scales convert to f32 in one instruction and multiply
//! the activation scales as one vector.
//!
//! With AVX2 one block is one 256-bit `maddubs` (u8 × i8 → pairs summed in i16, which cannot
//! overflow: 15·127·2 and 128·127·2 are below 32767), one `madd` against ones (→ i32), one
//! int→float conversion and one FMA with the two scales. Q8_0 weights are signed, so they go
//! through `maddubs` as |v| against sign(v)·q. The only rounding beyond the weights' own is the
//! activation's 8-bit quantization (relative error ≤ 1/254 per element, unbiased), the same
//! trade llama.cpp makes; tests bound it against the f32 product.
//!
//! [`dot_rows`] picks the AVX2 kernels (`vec_dot_avx2.rs`) when the CPU has them (checked once
//! per call, at run time) and otherwise the scalar references [`dot_q4_1_scalar`] /
//! [`dot_q8_0_scalar`], which compute the same integer sums.

use super::{GgmlType, QK};

/// A row of activations quantized to 8 bits in blocks of [`QK`]: element `i` ≈ `d[i/32]·q[i]`.
#[derive(Clone, Debug, Default)]
pub struct Q8Row {
    /// Per-block scale `max|x| / 127`.
    pub d: Vec<f32>,
    /// Per-block `d·Σq` (the term Q4_1's block minimum multiplies).
    pub s: Vec<f32>,
    /// The quantized values, `round(x / d)`.
    pub q: Vec<i8>,
}

impl Q8Row {
    /// Quantizes `x` (its length a multiple of 32) into `self`, reusing its buffers.
    pub fn quantize_from(&mut self, x: &[f32]) {
        let nb = x.len() / QK;
        self.d.resize(nb, 0.0);
        self.s.resize(nb, 0.0);
        self.q.resize(nb * QK, 0);
        for (b, xs) in x.chunks_exact(QK).enumerate() {
            let amax = xs.iter().fold(0f32, |a, v| a.max(v.abs()));
            let d = amax / 127.0;
            let id = if amax > 0.0 { 127.0 / amax } else { 0.0 };
            let mut sum = 0i32;
            for (q, &v) in self.q[b * QK..(b + 1) * QK].iter_mut().zip(xs) {
                *q = (v * id).round_ties_even() as i8;
                sum += *q as i32;
            }
            self.d[b] = d;
            self.s[b] = d * sum as f32;
        }
    }

    /// Every `cols`-long row of `x` (row-major) quantized: a product's activations.
    pub fn rows(x: &[f32], cols: usize) -> Vec<Q8Row> {
        x.chunks_exact(cols.max(1))
            .map(|r| {
                let mut q = Q8Row::default();
                q.quantize_from(r);
                q
            })
            .collect()
    }

    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        self.d.len()
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Bytes of the per-block header a packed row gathers at its front: Q4_1 d and m (2 × f16),
/// Q8_0 d (f16).
fn header(ty: GgmlType) -> usize {
    if ty == GgmlType::Q4_1 {
        4
    } else {
        2
    }
}

/// Rewrites one row of ggml blocks (`src`, GGUF layout) into the packed layout (`dst`, same
/// length): `[d₀ … d_{nb−1}] [m₀ … m_{nb−1}] (Q4_1 only) [quants₀ … quants_{nb−1}]`. Types
/// without an integer kernel are copied unchanged.
pub fn pack_row(ty: GgmlType, src: &[u8], dst: &mut [u8]) {
    if !has_int_kernel(ty) {
        dst.copy_from_slice(src);
        return;
    }
    let (size, hdr) = (ty.type_size(), header(ty));
    let nb = src.len() / size;
    let (heads, quants) = dst.split_at_mut(hdr * nb);
    for (b, blk) in src.chunks_exact(size).enumerate() {
        for h in 0..hdr / 2 {
            heads[h * 2 * nb + 2 * b..][..2].copy_from_slice(&blk[2 * h..2 * h + 2]);
        }
        quants[(size - hdr) * b..][..size - hdr].copy_from_slice(&blk[hdr..]);
    }
}

/// The inverse of [`pack_row`]: a packed row back to ggml blocks.
pub fn unpack_row(ty: GgmlType, src: &[u8], dst: &mut [u8]) {
    if !has_int_kernel(ty) {
        dst.copy_from_slice(src);
        return;
    }
    let (size, hdr) = (ty.type_size(), header(ty));
    let nb = src.len() / size;
    let (heads, quants) = src.split_at(hdr * nb);
    for (b, blk) in dst.chunks_exact_mut(size).enumerate() {
        for h in 0..hdr / 2 {
            blk[2 * h..2 * h + 2].copy_from_slice(&heads[h * 2 * nb + 2 * b..][..2]);
        }
        blk[hdr..].copy_from_slice(&quants[(size - hdr) * b..][..size - hdr]);
    }
}

/// Weight types with an integer kernel here.
pub fn has_int_kernel(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_1 | GgmlType::Q8_0)
}

/// `out[r·m + i] = Σ_k W[r, k]·x_i[k]` for the packed weight rows `w` ([`pack_row`]; whole
/// rows of `ty`, each `xs[0].blocks()` blocks) against the `m = xs.len()` quantized activation
/// rows: each weight row is read once and dotted with every activation row. Returns `false`
/// (writing nothing) when `ty` has no integer kernel ([`has_int_kernel`]) or the sizes disagree.
pub fn dot_rows(ty: GgmlType, w: &[u8], xs: &[Q8Row], out: &mut [f32]) -> bool {
    let Some(nb) = xs.first().map(Q8Row::blocks) else { return true };
    let row_bytes = nb * ty.type_size();
    if !has_int_kernel(ty)
        || xs.iter().any(|x| x.blocks() != nb || x.s.len() != nb || x.q.len() != nb * QK)
        || row_bytes == 0
        || !w.len().is_multiple_of(row_bytes)
        || out.len() != w.len() / row_bytes * xs.len()
    {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if super::vec_dot_avx2::available() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked above), and every row of `w` and every
        // activation row holds exactly `nb` blocks (checked above): the kernels read within them.
        unsafe { super::vec_dot_avx2::dot_rows(ty, w, row_bytes, xs, out) };
        return true;
    }
    let dot = if ty == GgmlType::Q4_1 { dot_q4_1_scalar } else { dot_q8_0_scalar };
    for (row, res) in w.chunks_exact(row_bytes).zip(out.chunks_exact_mut(xs.len())) {
        for (o, x) in res.iter_mut().zip(xs) {
            *o = dot(row, x);
        }
    }
    true
}

/// `Σ_k W[k]·x[k]` for one packed Q4_1 row (ggml block: f16 d, f16 m, 16 bytes of nibbles —
/// weight j in the low nibble of byte j, weight j+16 in its high nibble; w = d·u + m), one
/// element at a time.
pub fn dot_q4_1_scalar(row: &[u8], x: &Q8Row) -> f32 {
    let nb = row.len() / 20;
    let (heads, quants) = row.split_at(4 * nb);
    let mut sum = 0f32;
    for (b, nib) in quants.chunks_exact(16).enumerate() {
        let q = &x.q[b * QK..(b + 1) * QK];
        let mut isum = 0i32;
        for j in 0..16 {
            isum += (nib[j] & 0x0F) as i32 * q[j] as i32 + (nib[j] >> 4) as i32 * q[j + 16] as i32;
        }
        sum += f16_at(heads, 2 * b) * x.d[b] * isum as f32 + f16_at(heads, 2 * nb + 2 * b) * x.s[b];
    }
    sum
}

/// `Σ_k W[k]·x[k]` for one packed Q8_0 row (ggml block: f16 d, 32 × i8; w = d·v), one element
/// at a time.
pub fn dot_q8_0_scalar(row: &[u8], x: &Q8Row) -> f32 {
    let nb = row.len() / 34;
    let (heads, quants) = row.split_at(2 * nb);
    let mut sum = 0f32;
    for (b, vs) in quants.chunks_exact(QK).enumerate() {
        let q = &x.q[b * QK..(b + 1) * QK];
        let isum: i32 = vs.iter().zip(q).map(|(&w, &v)| (w as i8) as i32 * v as i32).sum();
        sum += f16_at(heads, 2 * b) * x.d[b] * isum as f32;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{dequantize_row_into, GgmlType};

    /// Deterministic pseudo-random values in [-1, 1).
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

    /// Random blocks of `ty` with sane f16 scales (random bytes for the quants).
    fn random_row(ty: GgmlType, blocks: usize, seed: u64) -> Vec<u8> {
        let size = ty.type_size();
        let bytes: Vec<u8> = values(blocks * size, seed).iter().map(|v| ((v + 1.0) * 127.9) as u8).collect();
        let mut row = bytes;
        let scales = values(blocks * 2, seed ^ 77);
        for b in 0..blocks {
            let d = half::f16::from_f32(0.01 + scales[2 * b].abs() * 0.05).to_le_bytes();
            row[b * size..b * size + 2].copy_from_slice(&d);
            if ty == GgmlType::Q4_1 {
                let m = half::f16::from_f32(scales[2 * b + 1] * 0.1).to_le_bytes();
                row[b * size + 2..b * size + 4].copy_from_slice(&m);
            }
        }
        row
    }

    /// Several activation rows at once (the four-row tiles and the remainder) give what each row
    /// gives alone.
    #[test]
    fn many_rows_equal_one_at_a_time() {
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0] {
            let (rows, blocks, m) = (3, 9, 7);
            let w: Vec<u8> = (0..rows).flat_map(|r| packed(ty, &random_row(ty, blocks, 200 + r as u64))).collect();
            let xs: Vec<Q8Row> = (0..m)
                .map(|i| {
                    let mut q = Q8Row::default();
                    q.quantize_from(&values(blocks * QK, 300 + i as u64));
                    q
                })
                .collect();
            let mut all = vec![0f32; rows * m];
            assert!(dot_rows(ty, &w, &xs, &mut all));
            let rb = blocks * ty.type_size();
            for r in 0..rows {
                for i in 0..m {
                    let mut one = [0f32];
                    assert!(dot_rows(ty, &w[r * rb..(r + 1) * rb], std::slice::from_ref(&xs[i]), &mut one));
                    let d = (all[r * m + i] - one[0]).abs();
                    assert!(d <= 1e-5 * (1.0 + one[0].abs()), "{ty:?} ({r}, {i}): {} vs {}", all[r * m + i], one[0]);
                }
            }
            assert!(!dot_rows(ty, &w[1..], &xs, &mut all), "ragged rows are refused");
            assert!(!dot_rows(GgmlType::Q4_0, &w, &xs, &mut all), "no integer kernel for Q4_0");
        }
    }

    fn packed(ty: GgmlType, gguf: &[u8]) -> Vec<u8> {
        let mut p = vec![0u8; gguf.len()];
        pack_row(ty, gguf, &mut p);
        p
    }

    #[test]
    fn pack_and_unpack_round_trip() {
        for ty in [GgmlType::Q4_1, GgmlType::Q8_0, GgmlType::Q4_0] {
            let row = random_row(ty, 11, 5);
            let p = packed(ty, &row);
            if ty != GgmlType::Q4_0 {
                assert_ne!(p, row);
            }
            let mut back = vec![0u8; row.len()];
            unpack_row(ty, &p, &mut back);
            assert_eq!(back, row);
        }
    }

    #[test]
    fn q8_row_round_trips_within_half_a_step() {
        let x = values(96, 1);
        let mut r = Q8Row::default();
        r.quantize_from(&x);
        for (i, &v) in x.iter().enumerate() {
            let d = r.d[i / QK];
            assert!((d * r.q[i] as f32 - v).abs() <= 0.5 * d + 1e-7, "element {i}");
        }
        for b in 0..3 {
            let s: i32 = r.q[b * QK..(b + 1) * QK].iter().map(|&q| q as i32).sum();
            assert_eq!(r.s[b], r.d[b] * s as f32);
        }
        r.quantize_from(&[0.0; 32]);
        assert_eq!((r.d[0], r.s[0], r.blocks()), (0.0, 0.0, 1));
    }

    /// The fast kernels equal the scalar integer reference (up to f32 summation order), and the
    /// reference is close to the f32 dot of the dequantized row with the unquantized activations
    /// (the activation rounding bounds the gap: |Σ w·(x − x̂)| ≤ Σ |w|·d/2).
    #[test]
    fn kernels_match_reference_and_f32_dot() {
        for (ty, slow) in
            [(GgmlType::Q4_1, dot_q4_1_scalar as fn(&[u8], &Q8Row) -> f32), (GgmlType::Q8_0, dot_q8_0_scalar)]
        {
            for blocks in [1usize, 7, 8, 9, 18, 48] {
                let row = random_row(ty, blocks, blocks as u64);
                let x = values(blocks * QK, 100 + blocks as u64);
                let mut xq = Q8Row::default();
                xq.quantize_from(&x);
                let mut f = [0f32];
                let pr = packed(ty, &row);
                assert!(dot_rows(ty, &pr, std::slice::from_ref(&xq), &mut f));
                let (f, s) = (f[0], slow(&pr, &xq));
                assert!((f - s).abs() <= 1e-5 * (1.0 + s.abs()), "{ty:?} {blocks}: fast {f} vs scalar {s}");
                let mut w = vec![0f32; blocks * QK];
                dequantize_row_into(ty, &row, &mut w).unwrap();
                let exact: f32 = w.iter().zip(&x).map(|(a, b)| a * b).sum();
                let bound: f32 = w.iter().enumerate().map(|(i, a)| a.abs() * xq.d[i / QK] * 0.5).sum();
                assert!((s - exact).abs() <= bound + 1e-4, "{ty:?} {blocks}: {s} vs f32 {exact} (bound {bound})");
            }
        }
    }
}
