//! AVX2 kernels of [`super::vec_dot::dot_rows`] on packed weight rows
//! ([`super::vec_dot::pack_row`]: a row's f16 scales, then its f16 minima for Q4_1, then its
//! quants).
//!
//! Per group of eight blocks the weight scales convert to f32 in one `vcvtph2ps`, multiply the
//! eight activation scales in one `vmulps`, and (Q4_1) the minima meet the activation sums
//! `s = d·Σq` in one FMA. Per block: the 32 weights as bytes (nibbles split for Q4_1; |v| and
//! the activations' signs moved over for Q8_0), one `maddubs` (u8·i8 pairs → i16, no overflow:
//! 15·127·2 and 127·127·2 < 32767), one `madd` with ones (→ i32), one conversion and one FMA
//! with the block's scale. Prompts take the `_x4` kernels, which unpack each weight block once
//! for four activation rows; a panel of weight rows stays in L1 while the tiles pass over it.

// The kernels walk blocks and rows with counters that index several arrays and pointers in
// lockstep; iterator chains would hide that.
#![allow(clippy::needless_range_loop)]

use super::vec_dot::Q8Row;
use super::{GgmlType, QK};
use std::arch::x86_64::*;

/// Whether these kernels can run (AVX2 + FMA + F16C; detected once and cached by std).
pub(super) fn available() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

/// Weight rows per L1-resident panel in [`dot_rows`] (16 Q4_1 rows of 1536 = 15 KiB).
const PANEL: usize = 16;

/// Horizontal sum of 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
}

/// The f16 at `p` as f32.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn f16_at(p: *const u8) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(p as *const u16) as i32)))
}

/// Eight f16 at `p` as f32.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn f16x8(p: *const u8) -> __m256 {
    _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i))
}

/// A Q4_1 block's 16 bytes of nibbles at `p` as 32 unsigned bytes (low nibbles, then high).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn nibbles(p: *const u8) -> __m256i {
    let nib = _mm_loadu_si128(p as *const __m128i);
    let low = _mm_set1_epi8(0x0F);
    _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(nib, 4), low), _mm_and_si128(nib, low))
}

/// A block's 32 weights as bytes: Q4_1 nibbles unpacked (unsigned), Q8_0 values as they are.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn load_block(q4: bool, p: *const u8) -> __m256i {
    if q4 {
        nibbles(p)
    } else {
        _mm256_loadu_si256(p as *const __m256i)
    }
}

/// Σ u·v of 32 unsigned bytes `u` and 32 signed activations at `q`, as 8 f32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn dot_u8(u: __m256i, q: *const i8) -> __m256 {
    let v = _mm256_loadu_si256(q as *const __m256i);
    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(u, v), _mm256_set1_epi16(1)))
}

/// Σ w·v of 32 signed weights `w` and 32 signed activations at `q`, as 8 f32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8(w: __m256i, q: *const i8) -> __m256 {
    let v = _mm256_loadu_si256(q as *const __m256i);
    let prod = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(v, w));
    _mm256_cvtepi32_ps(_mm256_madd_epi16(prod, _mm256_set1_epi16(1)))
}

/// One packed row (`nb` blocks of `ty` at `w`) against `R` activation rows: the weights of each
/// block are loaded and unpacked once and dotted with every row (prompts). `C` accumulators per
/// row split its FMA chain.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn row_tile<const R: usize, const C: usize>(ty: GgmlType, w: *const u8, x: [&Q8Row; R], nb: usize) -> [f32; R] {
    let q4 = ty == GgmlType::Q4_1;
    let (dh, mh) = (w, w.add(2 * nb));
    let (qs, qbytes) = if q4 { (w.add(4 * nb), 16) } else { (w.add(2 * nb), QK) };
    let mut acc = [[_mm256_setzero_ps(); C]; R];
    let mut mins = [_mm256_setzero_ps(); R];
    let mut sc = [[0f32; 8]; R];
    let mut b = 0;
    while b + 8 <= nb {
        let dw = f16x8(dh.add(2 * b));
        for i in 0..R {
            _mm256_storeu_ps(sc[i].as_mut_ptr(), _mm256_mul_ps(dw, _mm256_loadu_ps(x[i].d.as_ptr().add(b))));
        }
        if q4 {
            let mw = f16x8(mh.add(2 * b));
            for i in 0..R {
                mins[i] = _mm256_fmadd_ps(mw, _mm256_loadu_ps(x[i].s.as_ptr().add(b)), mins[i]);
            }
        }
        for k in 0..8 {
            let u = load_block(q4, qs.add((b + k) * qbytes));
            for i in 0..R {
                let q = x[i].q.as_ptr().add((b + k) * QK);
                let p = if q4 { dot_u8(u, q) } else { dot_i8(u, q) };
                acc[i][k % C] = _mm256_fmadd_ps(_mm256_set1_ps(sc[i][k]), p, acc[i][k % C]);
            }
        }
        b += 8;
    }
    let mut tail = [0f32; R];
    while b < nb {
        let (dw, u) = (f16_at(dh.add(2 * b)), load_block(q4, qs.add(b * qbytes)));
        for i in 0..R {
            let q = x[i].q.as_ptr().add(b * QK);
            let p = if q4 { dot_u8(u, q) } else { dot_i8(u, q) };
            acc[i][0] = _mm256_fmadd_ps(_mm256_set1_ps(dw * *x[i].d.get_unchecked(b)), p, acc[i][0]);
            if q4 {
                tail[i] += f16_at(mh.add(2 * b)) * *x[i].s.get_unchecked(b);
            }
        }
        b += 1;
    }
    let mut out = [0f32; R];
    for i in 0..R {
        let sum = acc[i].iter().fold(mins[i], |a, &v| _mm256_add_ps(a, v));
        out[i] = hsum(sum) + tail[i];
    }
    out
}

/// `W` packed weight rows (`nb` blocks each, `row_bytes` apart from `w`) against one activation
/// row — decoding's matrix–vector product: the activation block is loaded once for the `W` rows,
/// each row's FMA chain is independent, and the per-row horizontal sums are done together.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_x1<const W: usize>(ty: GgmlType, w: *const u8, row_bytes: usize, x: &Q8Row, nb: usize) -> [f32; W] {
    let q4 = ty == GgmlType::Q4_1;
    let (qoff, qbytes) = if q4 { (4 * nb, 16) } else { (2 * nb, QK) };
    let mut acc = [_mm256_setzero_ps(); W];
    let mut mins = [_mm256_setzero_ps(); W];
    let mut sc = [[0f32; 8]; W];
    let (xd, xs, xq) = (x.d.as_ptr(), x.s.as_ptr(), x.q.as_ptr());
    let mut b = 0;
    while b + 8 <= nb {
        let (d8, s8) = (_mm256_loadu_ps(xd.add(b)), _mm256_loadu_ps(xs.add(b)));
        for r in 0..W {
            let row = w.add(r * row_bytes);
            _mm256_storeu_ps(sc[r].as_mut_ptr(), _mm256_mul_ps(f16x8(row.add(2 * b)), d8));
            if q4 {
                mins[r] = _mm256_fmadd_ps(f16x8(row.add(2 * nb + 2 * b)), s8, mins[r]);
            }
        }
        for k in 0..8 {
            let q = xq.add((b + k) * QK);
            for r in 0..W {
                let u = load_block(q4, w.add(r * row_bytes + qoff + (b + k) * qbytes));
                let p = if q4 { dot_u8(u, q) } else { dot_i8(u, q) };
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(sc[r][k]), p, acc[r]);
            }
        }
        b += 8;
    }
    let mut tail = [0f32; W];
    while b < nb {
        let q = xq.add(b * QK);
        for r in 0..W {
            let row = w.add(r * row_bytes);
            let u = load_block(q4, row.add(qoff + b * qbytes));
            let p = if q4 { dot_u8(u, q) } else { dot_i8(u, q) };
            acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(f16_at(row.add(2 * b)) * *x.d.get_unchecked(b)), p, acc[r]);
            if q4 {
                tail[r] += f16_at(row.add(2 * nb + 2 * b)) * *x.s.get_unchecked(b);
            }
        }
        b += 1;
    }
    let mut out = [0f32; W];
    for r in 0..W {
        out[r] = hsum(_mm256_add_ps(acc[r], mins[r])) + tail[r];
    }
    out
}

/// `out (rows, m)` for packed rows `w` (whole rows of `row_bytes`) against `xs` (every row with
/// `row_bytes / type_size` blocks, as `dot_rows` checked).
///
/// # Safety
/// The CPU must have AVX2, FMA and F16C ([`available`]); sizes as above.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_rows(ty: GgmlType, w: &[u8], row_bytes: usize, xs: &[Q8Row], out: &mut [f32]) {
    let (nb, m) = (row_bytes / ty.type_size(), xs.len());
    if let [x] = xs {
        // matrix–vector: four weight rows at a time
        let mut rows = w.chunks_exact(4 * row_bytes);
        let mut outs = out.chunks_exact_mut(4);
        for (r4, o4) in (&mut rows).zip(&mut outs) {
            // ask for the rows two tiles ahead now: a tile is short (four rows of K = 576 are
            // ~1.4 KB), too short for the hardware prefetcher to pick up the stream by itself
            let ahead = r4.as_ptr().wrapping_add(8 * row_bytes);
            for line in (0..4 * row_bytes).step_by(64) {
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line) as *const i8);
            }
            o4.copy_from_slice(&rows_x1::<4>(ty, r4.as_ptr(), row_bytes, x, nb));
        }
        for (row, o) in rows.remainder().chunks_exact(row_bytes).zip(outs.into_remainder()) {
            *o = rows_x1::<1>(ty, row.as_ptr(), row_bytes, x, nb)[0];
        }
        return;
    }
    let (four, rest) = xs.split_at(m / 4 * 4);
    for (panel, res) in w.chunks(PANEL * row_bytes).zip(out.chunks_mut(PANEL * m)) {
        for (t, x4) in four.chunks_exact(4).enumerate() {
            let x4 = [&x4[0], &x4[1], &x4[2], &x4[3]];
            for (row, o) in panel.chunks_exact(row_bytes).zip(res.chunks_exact_mut(m)) {
                o[4 * t..4 * t + 4].copy_from_slice(&row_tile::<4, 1>(ty, row.as_ptr(), x4, nb));
            }
        }
        for (row, o) in panel.chunks_exact(row_bytes).zip(res.chunks_exact_mut(m)) {
            for (o, x) in o[four.len()..].iter_mut().zip(rest) {
                *o = rows_x1::<1>(ty, row.as_ptr(), row_bytes, x, nb)[0];
            }
        }
    }
}
