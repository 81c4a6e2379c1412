//! AVX2 dot products of [`super::int_matrix::IntMatrix`]'s formats: one weight row against one
//! activation row. The scalar references in `int_matrix.rs` compute the same sums; tests hold
//! the two together.
//!
//! - W8A8: 32 int8 weights × 32 int8 activations per step as `maddubs(|w|, sign(w)·q)` (pairs
//!   summed in i16: at most 2·128·127 = 32512, no overflow) and `madd` with ones (→ i32),
//!   accumulated in **integers** over the whole row — one conversion per row, then the two
//!   scales (weight row, activation token).
//! - W8A16: 8 int8 weights sign-extended to i32 and converted to f32 per FMA against the f32
//!   activations (four independent accumulators); the row's scale once at the end.
//! - INT4 (asymmetric, groups of 32·k): Q4_1's block dot (`nibbles`, `dot_u8`) against 8-bit
//!   activation blocks, each block's integer sum scaled by `d_group·d_block` (two alternating
//!   FMA chains); the minima meet the activation sums once per group.

// The kernels index several arrays in lockstep with counters; iterator chains would hide that.
#![allow(clippy::needless_range_loop)]

use super::vec_dot::Q8Row;
use super::vec_dot_avx2::{dot_u8, f16_at, hsum, nibbles};
use super::QK;
use std::arch::x86_64::*;

pub(super) use super::vec_dot_avx2::available;

/// Horizontal sum of 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn hsum_i32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
    _mm_cvtsi128_si32(s)
}

/// Σ w·q of `n` signed weights at `w` and `n` signed activations at `q`, in integers.
///
/// # Safety
/// AVX2 ([`available`]); `w` and `q` hold `n` bytes each.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn dot_w8a8(w: *const i8, q: *const i8, n: usize) -> i32 {
    let ones = _mm256_set1_epi16(1);
    let step = |acc: __m256i, k: usize| {
        let a = _mm256_loadu_si256(w.add(k) as *const __m256i);
        let b = _mm256_loadu_si256(q.add(k) as *const __m256i);
        let p = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
        _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones))
    };
    let (mut a0, mut a1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
    let mut k = 0;
    while k + 64 <= n {
        a0 = step(a0, k);
        a1 = step(a1, k + 32);
        k += 64;
    }
    if k + 32 <= n {
        a0 = step(a0, k);
        k += 32;
    }
    let mut s = hsum_i32(_mm256_add_epi32(a0, a1));
    while k < n {
        s += *w.add(k) as i32 * *q.add(k) as i32;
        k += 1;
    }
    s
}

/// Σ w·x of `n` signed int8 weights at `w` and `n` f32 activations at `x`.
///
/// # Safety
/// AVX2 + FMA ([`available`]); `w` holds `n` bytes and `x` `n` floats.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_w8a16(w: *const i8, x: *const f32, n: usize) -> f32 {
    let widen = |k: usize| _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(w.add(k) as *const __m128i)));
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut k = 0;
    while k + 32 <= n {
        for (j, a) in acc.iter_mut().enumerate() {
            *a = _mm256_fmadd_ps(widen(k + 8 * j), _mm256_loadu_ps(x.add(k + 8 * j)), *a);
        }
        k += 32;
    }
    while k + 8 <= n {
        acc[0] = _mm256_fmadd_ps(widen(k), _mm256_loadu_ps(x.add(k)), acc[0]);
        k += 8;
    }
    let mut s = hsum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    while k < n {
        s += *w.add(k) as f32 * *x.add(k);
        k += 1;
    }
    s
}

/// [`dot_w8a8`] for four activation rows at once (prompts): each weight vector is loaded, and
/// its magnitude taken, once for the four.
///
/// # Safety
/// As [`dot_w8a8`], for every row of `q`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn dot_w8a8_x4(w: *const i8, q: [*const i8; 4], n: usize) -> [i32; 4] {
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_si256(); 4];
    let mut k = 0;
    while k + 32 <= n {
        let a = _mm256_loadu_si256(w.add(k) as *const __m256i);
        let mag = _mm256_sign_epi8(a, a);
        for i in 0..4 {
            let b = _mm256_loadu_si256(q[i].add(k) as *const __m256i);
            let p = _mm256_maddubs_epi16(mag, _mm256_sign_epi8(b, a));
            acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(p, ones));
        }
        k += 32;
    }
    let mut out = [0i32; 4];
    for i in 0..4 {
        out[i] = hsum_i32(acc[i]);
        for j in k..n {
            out[i] += *w.add(j) as i32 * *q[i].add(j) as i32;
        }
    }
    out
}

/// [`dot_w8a16`] for four activation rows at once: each group of 8 weights is widened to f32
/// once for the four.
///
/// # Safety
/// As [`dot_w8a16`], for every row of `x`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_w8a16_x4(w: *const i8, x: [*const f32; 4], n: usize) -> [f32; 4] {
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut k = 0;
    while k + 8 <= n {
        let wf = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(w.add(k) as *const __m128i)));
        for i in 0..4 {
            acc[i] = _mm256_fmadd_ps(wf, _mm256_loadu_ps(x[i].add(k)), acc[i]);
        }
        k += 8;
    }
    let mut out = [0f32; 4];
    for i in 0..4 {
        out[i] = hsum(acc[i]);
        for j in k..n {
            out[i] += *w.add(j) as f32 * *x[i].add(j);
        }
    }
    out
}

/// The f32 scales of the 8 blocks `b .. b + 8` of an INT4 row whose groups hold `bpg` blocks
/// (1, 2 or 4): the group scales at `d` (f16 bits) converted and spread over their blocks.
///
/// # Safety
/// F16C + AVX2; `d` holds the scales of groups `b / bpg .. (b + 8) / bpg`.
#[inline]
#[target_feature(enable = "avx2,f16c")]
unsafe fn block_scales(d: *const u16, b: usize, bpg: usize) -> __m256 {
    let g = d.add(b / bpg);
    match bpg {
        1 => _mm256_cvtph_ps(_mm_loadu_si128(g as *const __m128i)),
        2 => {
            let v = _mm256_cvtph_ps(_mm_loadl_epi64(g as *const __m128i));
            _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3))
        }
        4 => {
            let v = _mm256_cvtph_ps(_mm_cvtsi32_si128(std::ptr::read_unaligned(g as *const i32)));
            _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1))
        }
        _ => {
            let mut v = [0f32; 8];
            for (k, x) in v.iter_mut().enumerate() {
                *x = f16_at(d.add((b + k) / bpg) as *const u8);
            }
            _mm256_loadu_ps(v.as_ptr())
        }
    }
}

/// `W` INT4 weight rows against `R` 8-bit activation rows (R·W ≤ 4): `out[w][i] = Σ W_w·x_i`.
/// Per 8 blocks the weight scales convert in one instruction and meet the activation scales in
/// one multiply (Q4_1's scheme); per block the nibbles unpack once for the R rows and each
/// (w, i) pair has its own FMA chain. The minima meet the activation group sums 8 groups at a
/// time at the end.
///
/// # Safety
/// AVX2 + FMA + F16C; every `codes[w]` holds `nb` blocks of 16 bytes, `d[w]` and `mn[w]`
/// `nb / bpg` f16 values, every `x[i]` `nb` blocks and every `gsum[i]` `nb / bpg` sums;
/// `bpg ≥ 1` divides `nb`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn int4_tile<const R: usize, const W: usize>(
    codes: [*const u8; W],
    d: [*const u16; W],
    mn: [*const u16; W],
    bpg: usize,
    nb: usize,
    x: [&Q8Row; R],
    gsum: [&[f32]; R],
) -> [[f32; R]; W] {
    let mut acc = [[_mm256_setzero_ps(); R]; W];
    let mut sc = [[[0f32; 8]; R]; W];
    let mut b = 0;
    while b + 8 <= nb {
        for w in 0..W {
            let dw = block_scales(d[w], b, bpg);
            for i in 0..R {
                _mm256_storeu_ps(sc[w][i].as_mut_ptr(), _mm256_mul_ps(dw, _mm256_loadu_ps(x[i].d.as_ptr().add(b))));
            }
        }
        for k in 0..8 {
            let mut q = [_mm256_setzero_si256(); R];
            for i in 0..R {
                q[i] = _mm256_loadu_si256(x[i].q.as_ptr().add((b + k) * QK) as *const __m256i);
            }
            for w in 0..W {
                let u = nibbles(codes[w].add(16 * (b + k)));
                for i in 0..R {
                    let p = _mm256_madd_epi16(_mm256_maddubs_epi16(u, q[i]), _mm256_set1_epi16(1));
                    acc[w][i] = _mm256_fmadd_ps(_mm256_set1_ps(sc[w][i][k]), _mm256_cvtepi32_ps(p), acc[w][i]);
                }
            }
        }
        b += 8;
    }
    while b < nb {
        for w in 0..W {
            let (dg, u) = (f16_at(d[w].add(b / bpg) as *const u8), nibbles(codes[w].add(16 * b)));
            for i in 0..R {
                let p = dot_u8(u, x[i].q.as_ptr().add(b * QK));
                acc[w][i] = _mm256_fmadd_ps(_mm256_set1_ps(dg * *x[i].d.get_unchecked(b)), p, acc[w][i]);
            }
        }
        b += 1;
    }
    let ng = nb / bpg;
    let mut out = [[0f32; R]; W];
    for w in 0..W {
        let mut mins = [_mm256_setzero_ps(); R];
        let mut tail = [0f32; R];
        let mut g = 0;
        while g + 8 <= ng {
            let m8 = _mm256_cvtph_ps(_mm_loadu_si128(mn[w].add(g) as *const __m128i));
            for i in 0..R {
                mins[i] = _mm256_fmadd_ps(m8, _mm256_loadu_ps(gsum[i].as_ptr().add(g)), mins[i]);
            }
            g += 8;
        }
        while g < ng {
            let m = f16_at(mn[w].add(g) as *const u8);
            for i in 0..R {
                tail[i] += m * *gsum[i].get_unchecked(g);
            }
            g += 1;
        }
        for i in 0..R {
            out[w][i] = hsum(_mm256_add_ps(acc[w][i], mins[i])) + tail[i];
        }
    }
    out
}

/// Σ W[k]·x[k] for one INT4 row: `codes` = its `nb` 32-blocks of nibbles (16 bytes each, ggml's
/// order), `d`/`mn` = its per-group f16 scales and minima (bits), `bpg` blocks per group,
/// `gsum[g]` = Σ over the group's activation blocks of `d·Σq`.
///
/// # Safety
/// As [`int4_tile`] with one row of each.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_int4(
    codes: *const u8,
    d: *const u16,
    mn: *const u16,
    bpg: usize,
    nb: usize,
    x: &Q8Row,
    gsum: &[f32],
) -> f32 {
    int4_tile::<1, 1>([codes], [d], [mn], bpg, nb, [x], [gsum])[0][0]
}

/// [`dot_int4`] for four activation rows at once (prompts).
///
/// # Safety
/// As [`int4_tile`] with four activation rows.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_int4_x4(
    codes: *const u8,
    d: *const u16,
    mn: *const u16,
    bpg: usize,
    nb: usize,
    x: [&Q8Row; 4],
    gsum: [&[f32]; 4],
) -> [f32; 4] {
    int4_tile::<4, 1>([codes], [d], [mn], bpg, nb, x, gsum)[0]
}

/// [`dot_int4`] for four weight rows against one activation row (decoding).
///
/// # Safety
/// As [`int4_tile`] with four weight rows.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_int4_rows4(
    codes: [*const u8; 4],
    d: [*const u16; 4],
    mn: [*const u16; 4],
    bpg: usize,
    nb: usize,
    x: &Q8Row,
    gsum: &[f32],
) -> [f32; 4] {
    // the rows two tiles ahead (rows are contiguous): a tile is short, too short for the
    // hardware prefetcher to pick up the stream by itself
    let ahead = codes[0].wrapping_add(8 * 16 * nb);
    for line in (0..4 * 16 * nb).step_by(64) {
        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line) as *const i8);
    }
    int4_tile::<1, 4>(codes, d, mn, bpg, nb, [x], [gsum]).map(|r| r[0])
}
