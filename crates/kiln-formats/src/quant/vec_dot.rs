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
//! With AVX2 one block is one 256-bit `maddubs` (u8 × i8 → pairs summed in i16, which cannot
//! overflow: 15·127·2 and 128·127·2 are below 32767), one `madd` against ones (→ i32), one
//! int→float conversion and one FMA with the two scales. Q8_0 weights are signed, so they go
//! through `maddubs` as |v| against sign(v)·q. The only rounding beyond the weights' own is the
//! activation's 8-bit quantization (relative error ≤ 1/254 per element, unbiased), the same
//! trade llama.cpp makes; tests bound it against the f32 product.
//!
//! [`dot_rows`] picks the AVX2 kernels when the CPU has them (checked once per call, at run
//! time) and otherwise the scalar references [`dot_q4_1_scalar`] / [`dot_q8_0_scalar`], which
//! compute the same integer sums.

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

    /// Number of blocks.
    pub fn blocks(&self) -> usize {
        self.d.len()
    }
}

fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// Weight types with an integer kernel here.
pub fn has_int_kernel(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q4_1 | GgmlType::Q8_0)
}

/// `out[r·m + i] = Σ_k W[r, k]·x_i[k]` for the weight rows `w` (whole rows of `ty`, each
/// `xs[0].blocks()` blocks) against the `m = xs.len()` quantized activation rows: each weight
/// row is read once and dotted with every activation row. Returns `false` (writing nothing) when
/// `ty` has no integer kernel ([`has_int_kernel`]) or the sizes disagree.
pub fn dot_rows(ty: GgmlType, w: &[u8], xs: &[Q8Row], out: &mut [f32]) -> bool {
    let Some(nb) = xs.first().map(Q8Row::blocks) else { return true };
    let row_bytes = nb * ty.type_size();
    if !has_int_kernel(ty)
        || xs.iter().any(|x| x.blocks() != nb)
        || row_bytes == 0
        || !w.len().is_multiple_of(row_bytes)
        || out.len() != w.len() / row_bytes * xs.len()
    {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked above), and every row of `w` and every
        // activation row holds exactly `nb` blocks (checked above): the kernels read within them.
        unsafe { avx2::dot_rows(ty, w, row_bytes, xs, out) };
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

/// Whether the AVX2 kernels can run (AVX2 + FMA + F16C, detected once and cached by std).
#[cfg(target_arch = "x86_64")]
pub fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

/// `Σ_k W[k]·x[k]` for one Q4_1 row (20-byte blocks: f16 d, f16 m, 16 bytes of nibbles — weight
/// j in the low nibble of byte j, weight j+16 in its high nibble), one element at a time.
pub fn dot_q4_1_scalar(row: &[u8], x: &Q8Row) -> f32 {
    let mut sum = 0f32;
    for (b, blk) in row.chunks_exact(20).enumerate() {
        let q = &x.q[b * QK..(b + 1) * QK];
        let mut isum = 0i32;
        for j in 0..16 {
            isum += (blk[4 + j] & 0x0F) as i32 * q[j] as i32 + (blk[4 + j] >> 4) as i32 * q[j + 16] as i32;
        }
        sum += f16_at(blk, 0) * x.d[b] * isum as f32 + f16_at(blk, 2) * x.s[b];
    }
    sum
}

/// `Σ_k W[k]·x[k]` for one Q8_0 row (34-byte blocks: f16 d, 32 × i8), one element at a time.
pub fn dot_q8_0_scalar(row: &[u8], x: &Q8Row) -> f32 {
    let mut sum = 0f32;
    for (b, blk) in row.chunks_exact(34).enumerate() {
        let q = &x.q[b * QK..(b + 1) * QK];
        let isum: i32 = blk[2..].iter().zip(q).map(|(&w, &v)| (w as i8) as i32 * v as i32).sum();
        sum += f16_at(blk, 0) * x.d[b] * isum as f32;
    }
    sum
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{GgmlType, Q8Row, QK};
    use std::arch::x86_64::*;

    /// Horizontal sum of 8 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
    }

    /// The f16 at `p` as f32.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn f16_at(p: *const u8) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(p as *const u16) as i32)))
    }

    /// Σ u·q of one Q4_1 block's nibbles (at `p + 4`) and 32 activations, as 8 i32 lanes → f32.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn q4_block(p: *const u8, q: *const i8) -> __m256 {
        let nib = _mm_loadu_si128(p.add(4) as *const __m128i);
        let low = _mm_set1_epi8(0x0F);
        let u = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(nib, 4), low), _mm_and_si128(nib, low));
        let v = _mm256_loadu_si256(q as *const __m256i);
        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(u, v), _mm256_set1_epi16(1)))
    }

    /// Σ v·q of one Q8_0 block's values (at `p + 2`) and 32 activations → 8 f32 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn q8_block(p: *const u8, q: *const i8) -> __m256 {
        let w = _mm256_loadu_si256(p.add(2) as *const __m256i);
        let v = _mm256_loadu_si256(q as *const __m256i);
        let prod = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(v, w));
        _mm256_cvtepi32_ps(_mm256_madd_epi16(prod, _mm256_set1_epi16(1)))
    }

    /// One Q4_1 row (`nb` blocks at `w`) · one activation row; two independent accumulator chains.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn row_q4_1(w: *const u8, x: &Q8Row, nb: usize) -> f32 {
        let (q, d, s) = (x.q.as_ptr(), x.d.as_ptr(), x.s.as_ptr());
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (mut m0, mut m1) = (0f32, 0f32);
        let mut b = 0;
        while b + 2 <= nb {
            let (p0, p1) = (w.add(b * 20), w.add(b * 20 + 20));
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(p0) * *d.add(b)), q4_block(p0, q.add(b * QK)), a0);
            a1 = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(p1) * *d.add(b + 1)), q4_block(p1, q.add(b * QK + QK)), a1);
            m0 = f16_at(p0.add(2)).mul_add(*s.add(b), m0);
            m1 = f16_at(p1.add(2)).mul_add(*s.add(b + 1), m1);
            b += 2;
        }
        if b < nb {
            let p = w.add(b * 20);
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(p) * *d.add(b)), q4_block(p, q.add(b * QK)), a0);
            m0 = f16_at(p.add(2)).mul_add(*s.add(b), m0);
        }
        hsum(_mm256_add_ps(a0, a1)) + m0 + m1
    }

    /// One Q8_0 row (`nb` blocks at `w`) · one activation row.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn row_q8_0(w: *const u8, x: &Q8Row, nb: usize) -> f32 {
        let (q, d) = (x.q.as_ptr(), x.d.as_ptr());
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut b = 0;
        while b + 2 <= nb {
            let (p0, p1) = (w.add(b * 34), w.add(b * 34 + 34));
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(p0) * *d.add(b)), q8_block(p0, q.add(b * QK)), a0);
            a1 = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(p1) * *d.add(b + 1)), q8_block(p1, q.add(b * QK + QK)), a1);
            b += 2;
        }
        if b < nb {
            let p = w.add(b * 34);
            a0 = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(p) * *d.add(b)), q8_block(p, q.add(b * QK)), a0);
        }
        hsum(_mm256_add_ps(a0, a1))
    }

    /// One Q4_1 row against four activation rows: each weight block is unpacked once and
    /// dotted with the four (a prompt's rows share the weight loads and the nibble unpacking).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn row_q4_1_x4(w: *const u8, x: &[Q8Row; 4], nb: usize) -> [f32; 4] {
        let low = _mm_set1_epi8(0x0F);
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut mins = [0f32; 4];
        for b in 0..nb {
            let p = w.add(b * 20);
            let (dw, mw) = (f16_at(p), f16_at(p.add(2)));
            let nib = _mm_loadu_si128(p.add(4) as *const __m128i);
            let u = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(nib, 4), low), _mm_and_si128(nib, low));
            for i in 0..4 {
                let xi = &x[i];
                let v = _mm256_loadu_si256(xi.q.as_ptr().add(b * QK) as *const __m256i);
                let dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(u, v), ones));
                acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(dw * *xi.d.get_unchecked(b)), dot, acc[i]);
                mins[i] = mw.mul_add(*xi.s.get_unchecked(b), mins[i]);
            }
        }
        [0, 1, 2, 3].map(|i| hsum(acc[i]) + mins[i])
    }

    /// One Q8_0 row against four activation rows (see [`row_q4_1_x4`]).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn row_q8_0_x4(w: *const u8, x: &[Q8Row; 4], nb: usize) -> [f32; 4] {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); 4];
        for b in 0..nb {
            let p = w.add(b * 34);
            let dw = f16_at(p);
            let wv = _mm256_loadu_si256(p.add(2) as *const __m256i);
            let aw = _mm256_sign_epi8(wv, wv);
            for i in 0..4 {
                let xi = &x[i];
                let v = _mm256_loadu_si256(xi.q.as_ptr().add(b * QK) as *const __m256i);
                let dot =
                    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(v, wv)), ones));
                acc[i] = _mm256_fmadd_ps(_mm256_set1_ps(dw * *xi.d.get_unchecked(b)), dot, acc[i]);
            }
        }
        [0, 1, 2, 3].map(|i| hsum(acc[i]))
    }

    /// Weight rows per L1-resident panel in [`dot_rows`] (16 Q4_1 rows of 1536 = 15 KiB).
    const PANEL: usize = 16;

    /// [`super::dot_rows`] after its checks: `w` is whole rows of `row_bytes`, every `xs[i]` has
    /// `row_bytes / type_size` blocks, `out` is (rows, xs.len()). Blocked like a GEMM: a panel of
    /// weight rows stays in L1 while every four-row tile of activations passes over it (the
    /// `_x4` kernels unpack each weight block once for four rows); leftover rows go one by one.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_rows(ty: GgmlType, w: &[u8], row_bytes: usize, xs: &[Q8Row], out: &mut [f32]) {
        let (nb, m) = (row_bytes / ty.type_size(), xs.len());
        let (four, rest) = xs.split_at(m / 4 * 4);
        for (panel, res) in w.chunks(PANEL * row_bytes).zip(out.chunks_mut(PANEL * m)) {
            for (t, x4) in four.chunks_exact(4).enumerate() {
                let Ok(x4) = <&[Q8Row; 4]>::try_from(x4) else { continue }; // always 4 long
                for (row, o) in panel.chunks_exact(row_bytes).zip(res.chunks_exact_mut(m)) {
                    let r = match ty {
                        GgmlType::Q4_1 => row_q4_1_x4(row.as_ptr(), x4, nb),
                        _ => row_q8_0_x4(row.as_ptr(), x4, nb),
                    };
                    o[4 * t..4 * t + 4].copy_from_slice(&r);
                }
            }
            for (row, o) in panel.chunks_exact(row_bytes).zip(res.chunks_exact_mut(m)) {
                for (o, x) in o[four.len()..].iter_mut().zip(rest) {
                    *o = match ty {
                        GgmlType::Q4_1 => row_q4_1(row.as_ptr(), x, nb),
                        _ => row_q8_0(row.as_ptr(), x, nb),
                    };
                }
            }
        }
    }
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
            let w: Vec<u8> = (0..rows).flat_map(|r| random_row(ty, blocks, 200 + r as u64)).collect();
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
                assert!(dot_rows(ty, &row, std::slice::from_ref(&xq), &mut f));
                let (f, s) = (f[0], slow(&row, &xq));
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
