//! Skinny products against row-major weights: `C (m, n) = A (m, k) · Wᵀ` for a few rows `m`
//! (2 … [`SKINNY_MAX_M`]: a batched decoding step, one row per running sequence) and a weight
//! `W (n, k)` whose rows are contiguous — how `Linear` stores (out, in).
//!
//! The `gemm` crate packs both operands into its micro-kernel layouts on every call; with a few
//! rows the weight panel is packed for only a few rows of use, so small batches (and the k + 1
//! rows of a speculative verification, the n rows of a beam step) ran at a fraction of the
//! GEMM's speed (2 rows: 15 GFLOP/s). Here nothing is packed: every output is a dot product of an activation row
//! with a weight row, both contiguous along `k`, so a register tile of 4 weight rows × 3
//! activation rows keeps 12 vector accumulators over a block of `k` (per 8 elements: 7 loads,
//! 12 FMAs — FMA-bound), then reduces each horizontally. The weight rows are split across the
//! threads and each is read from memory once per call; the activation rows (m·k floats) stay in
//! L2 and the current `k` block of the tile in L1.
//!
//! [`skinny_ref`] is the plain triple loop the tests hold the kernel to.

// The kernel indexes rows and lanes with explicit counters in lockstep; iterators would hide
// that. A GEMM call names its operands, strides and sizes, as BLAS does.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

use rayon::prelude::*;

/// The most activation rows the skinny path takes. Measured with `kiln bench gemm --width 576`
/// (2 threads, AVX2 EPYC; GFLOP/s of `(m×576)·(2304×576)ᵀ`, skinny vs the `gemm` crate called
/// directly, same run): m = 2: 63 vs 15, 4: 72 vs 28, 16: 59 vs 49, 24: 87 vs 68, 32: 75 vs 79,
/// 48: 81 vs 80, 64: 64 vs 93 — from 32 rows on, packing pays for itself.
pub(crate) const SKINNY_MAX_M: usize = 24;

/// Most reduction elements per block: a 4-row weight tile of 1024 floats is 16 KiB (L1). `k`
/// is cut into equal blocks of at most this (a multiple of 8), so no short tail block pays a
/// whole tile's horizontal sums.
const KC_MAX: usize = 1024;

/// Weight rows per register tile, activation rows per register tile.
const WR: usize = 4;
const AR: usize = 3;

/// Whether the AVX2 kernel can run here.
pub(crate) fn available() -> bool {
    super::tile_gemm::available()
}

/// `c (m, n) = a (m, k; row stride lda) · wᵀ` with `w (n, k; row stride ldw)`, plus `c`'s old
/// values when `acc` (a bias pre-filled into it). The caller checks the slices cover every
/// element (`a.len() ≥ (m−1)·lda + k`, `w.len() ≥ (n−1)·ldw + k`, `c.len() = m·n`) and that
/// [`available`] holds.
pub(crate) fn skinny_t(c: &mut [f32], a: &[f32], lda: usize, m: usize, w: &[f32], ldw: usize, k: usize, acc: bool) {
    let n = c.len() / m.max(1);
    if m == 0 || n == 0 {
        return;
    }
    // (n, m): each task owns a run of weight rows and writes their m products contiguously
    // from the buffer pool: a decoding step calls this for every projection of every layer
    let mut ct = crate::pool::filled(n * m, 0f32);
    let threads = rayon::current_num_threads();
    let per_task = n.div_ceil(2 * threads).next_multiple_of(WR).max(WR);
    let kc = k.div_ceil(k.div_ceil(KC_MAX).max(1)).next_multiple_of(8).max(8);
    ct.par_chunks_mut(per_task * m).enumerate().for_each(|(t, out)| {
        let j0 = t * per_task;
        let rows = out.len() / m;
        for k0 in (0..k).step_by(kc) {
            let kl = kc.min(k - k0);
            let mut j = 0;
            while j < rows {
                let wn = WR.min(rows - j);
                let wp: [*const f32; WR] = std::array::from_fn(|r| w[(j0 + j + r.min(wn - 1)) * ldw + k0..].as_ptr());
                let mut i = 0;
                while i < m {
                    let an = AR.min(m - i);
                    let ap: [*const f32; AR] = std::array::from_fn(|r| a[(i + r.min(an - 1)) * lda + k0..].as_ptr());
                    // SAFETY: AVX2/FMA checked by the caller; every pointer starts a run of `kl`
                    // elements inside its slice (rows clamped to the last valid one; the
                    // caller checked the slices' lengths).
                    let s = unsafe { tile(ap, wp, kl) };
                    for r in 0..wn {
                        for q in 0..an {
                            out[(j + r) * m + i + q] += s[r][q];
                        }
                    }
                    i += AR;
                }
                j += WR;
            }
        }
    });
    for (i, row) in c.chunks_exact_mut(n).enumerate() {
        for (j, o) in row.iter_mut().enumerate() {
            let v = ct[j * m + i];
            *o = if acc { *o + v } else { v };
        }
    }
    crate::pool::give(ct);
}

/// 4 weight rows × 3 activation rows over `k` elements: `out[r][q] = Σ_p w[r][p]·a[q][p]`.
///
/// # Safety
/// AVX2 + FMA; every pointer valid for `k` reads.
#[target_feature(enable = "avx2,fma")]
unsafe fn tile(a: [*const f32; AR], w: [*const f32; WR], k: usize) -> [[f32; AR]; WR] {
    use std::arch::x86_64::*;
    let mut acc = [[_mm256_setzero_ps(); AR]; WR];
    let mut p = 0;
    while p + 8 <= k {
        // plain loops, not closures: the intrinsics must inline into this AVX2 function
        let mut av = [_mm256_setzero_ps(); AR];
        for q in 0..AR {
            av[q] = _mm256_loadu_ps(a[q].add(p));
        }
        for r in 0..WR {
            let wv = _mm256_loadu_ps(w[r].add(p));
            for q in 0..AR {
                acc[r][q] = _mm256_fmadd_ps(wv, av[q], acc[r][q]);
            }
        }
        p += 8;
    }
    let mut out = [[0f32; AR]; WR];
    for r in 0..WR {
        for q in 0..AR {
            let v = acc[r][q];
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let mut t = _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
            for x in p..k {
                t += *w[r].add(x) * *a[q].add(x);
            }
            out[r][q] = t;
        }
    }
    out
}

/// The reference: `c[i·n + j] (+)= Σ_p a[i·lda + p]·w[j·ldw + p]`, summed in p order.
#[cfg(test)]
pub(crate) fn skinny_ref(c: &mut [f32], a: &[f32], lda: usize, m: usize, w: &[f32], ldw: usize, k: usize, acc: bool) {
    let n = c.len() / m.max(1);
    for i in 0..m {
        for j in 0..n {
            let s: f32 = (0..k).map(|p| a[i * lda + p] * w[j * ldw + p]).sum();
            c[i * n + j] = if acc { c[i * n + j] + s } else { s };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32 - 0.5)
            .collect()
    }

    /// Every remainder of the 4 × 3 tile and of the 8-wide lanes, k across block boundaries,
    /// padded row strides, with and without accumulation.
    #[test]
    fn matches_reference() {
        if !available() {
            eprintln!("SKIP: no AVX2/FMA");
            return;
        }
        for (m, n, k) in [(2, 5, 3), (3, 4, 8), (5, 9, 17), (7, 37, 100), (32, 66, 576), (64, 13, 1100)] {
            for acc in [false, true] {
                let (lda, ldw) = (k + 3, k + 5);
                let a = values(m * lda, 1);
                let w = values(n * ldw, 2);
                let start = values(m * n, 3);
                let (mut got, mut want) = (start.clone(), start);
                skinny_t(&mut got, &a, lda, m, &w, ldw, k, acc);
                skinny_ref(&mut want, &a, lda, m, &w, ldw, k, acc);
                for (g, r) in got.iter().zip(&want) {
                    assert!((g - r).abs() <= 1e-5 * (1.0 + k as f32).sqrt(), "({m},{n},{k}) acc {acc}: {g} vs {r}");
                }
            }
        }
    }
}
