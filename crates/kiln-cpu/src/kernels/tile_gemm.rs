//! Small dense products for attention tiles: `C (m×n) = β·A(m×k)·B(k×n) (+ C)`, with A at any
//! strides, B's rows and C's rows contiguous, and m, n, k ≤ a few hundred (a 64×64 tile against
//! a head dim of 32–128). The `gemm` crate is built for large products: at these sizes its
//! setup, packing and thread-local buffers cost as much as the arithmetic, so attention tiles
//! get this kernel instead.
//!
//! Register blocking (AVX2 + FMA, 16 ymm registers): a 4×16 block of C lives in 8 accumulators
//! over the whole k loop; per step p the kernel loads B's row segment (2 vectors), broadcasts
//! four A elements (any stride: a broadcast is a scalar load) and issues 8 FMAs — FMA-bound,
//! with no packing of either operand. Rows beyond a multiple of 4 take 1-row blocks, columns
//! beyond a multiple of 16 an 8-wide block, and the last n mod 8 columns the scalar loop.
//!
//! [`tile_gemm_ref`] is the plain triple loop the tests hold the kernel to.

// The kernel indexes A, B and C with explicit counters in lockstep; iterators would hide that.
#![allow(clippy::needless_range_loop, clippy::too_many_arguments)]

/// Strides of a tile product: A is `a[i·a_rs + p·a_cs]`, B is `b[p·ldb + j]`, C is `c[i·ldc + j]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TileStrides {
    pub(crate) a_rs: usize,
    pub(crate) a_cs: usize,
    pub(crate) ldb: usize,
    pub(crate) ldc: usize,
}

/// Whether the vector kernel can run here (AVX2 + FMA, detected once and cached by std).
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether slices of these lengths hold every element an (m, n, k) product with `st` touches.
pub(crate) fn fits(c: usize, a: usize, b: usize, st: TileStrides, (m, n, k): (usize, usize, usize)) -> bool {
    if m == 0 || n == 0 {
        return true;
    }
    let c_ok = c >= (m - 1) * st.ldc + n;
    let ab_ok = k == 0 || (a > (m - 1) * st.a_rs + (k - 1) * st.a_cs && b >= (k - 1) * st.ldb + n);
    c_ok && ab_ok && st.ldc >= n && st.ldb >= n
}

/// The reference: `C = β·A·B (+ C when accumulate)`, summed in p order.
#[cfg(test)]
pub(crate) fn tile_gemm_ref(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    st: TileStrides,
    (m, n, k): (usize, usize, usize),
    beta: f32,
    accumulate: bool,
) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f32;
            for p in 0..k {
                s += a[i * st.a_rs + p * st.a_cs] * b[p * st.ldb + j];
            }
            let o = &mut c[i * st.ldc + j];
            *o = if accumulate { *o + beta * s } else { beta * s };
        }
    }
}

/// `C = β·A·B (+ C)` with the AVX2 kernel. Returns false (and does nothing) when the CPU lacks
/// AVX2/FMA or the slices are too short for the shape; the caller then takes another path.
pub(crate) fn tile_gemm(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    st: TileStrides,
    shape: (usize, usize, usize),
    beta: f32,
    accumulate: bool,
) -> bool {
    if !available() || !fits(c.len(), a.len(), b.len(), st, shape) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: AVX2/FMA are present (checked above) and `fits` bounds every access of the kernel.
    unsafe {
        avx2::tile_gemm(c.as_mut_ptr(), a.as_ptr(), b.as_ptr(), st, shape, beta, accumulate);
    }
    true
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::TileStrides;
    use std::arch::x86_64::*;

    /// One MR×(8·NV) block of C at (i0, j0): accumulate over k, then store `β·acc (+ C)`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block<const MR: usize, const NV: usize>(
        c: *mut f32,
        a: *const f32,
        b: *const f32,
        st: TileStrides,
        (i0, j0, k): (usize, usize, usize),
        beta: __m256,
        accumulate: bool,
    ) {
        let mut acc = [[_mm256_setzero_ps(); NV]; MR];
        let mut ap = a.add(i0 * st.a_rs);
        let mut bp = b.add(j0);
        for _ in 0..k {
            let mut bv = [_mm256_setzero_ps(); NV];
            for v in 0..NV {
                bv[v] = _mm256_loadu_ps(bp.add(8 * v));
            }
            for r in 0..MR {
                let x = _mm256_broadcast_ss(&*ap.add(r * st.a_rs));
                for v in 0..NV {
                    acc[r][v] = _mm256_fmadd_ps(x, bv[v], acc[r][v]);
                }
            }
            ap = ap.add(st.a_cs);
            bp = bp.add(st.ldb);
        }
        for r in 0..MR {
            let cp = c.add((i0 + r) * st.ldc + j0);
            for v in 0..NV {
                let out = if accumulate {
                    _mm256_fmadd_ps(beta, acc[r][v], _mm256_loadu_ps(cp.add(8 * v)))
                } else {
                    _mm256_mul_ps(beta, acc[r][v])
                };
                _mm256_storeu_ps(cp.add(8 * v), out);
            }
        }
    }

    /// Rows in blocks of 4 (then 1) for one column block of width 8·NV at `j0`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn column<const NV: usize>(
        c: *mut f32,
        a: *const f32,
        b: *const f32,
        st: TileStrides,
        (m, j0, k): (usize, usize, usize),
        beta: __m256,
        accumulate: bool,
    ) {
        let mut i = 0;
        while i + 4 <= m {
            block::<4, NV>(c, a, b, st, (i, j0, k), beta, accumulate);
            i += 4;
        }
        while i < m {
            block::<1, NV>(c, a, b, st, (i, j0, k), beta, accumulate);
            i += 1;
        }
    }

    /// The whole product; the caller guarantees AVX2/FMA and in-bounds strides.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tile_gemm(
        c: *mut f32,
        a: *const f32,
        b: *const f32,
        st: TileStrides,
        (m, n, k): (usize, usize, usize),
        beta: f32,
        accumulate: bool,
    ) {
        let bv = _mm256_set1_ps(beta);
        let mut j = 0;
        while j + 16 <= n {
            column::<2>(c, a, b, st, (m, j, k), bv, accumulate);
            j += 16;
        }
        if j + 8 <= n {
            column::<1>(c, a, b, st, (m, j, k), bv, accumulate);
            j += 8;
        }
        // the last n mod 8 columns: scalar, same summation order as the vector lanes
        for jj in j..n {
            for i in 0..m {
                let mut s = 0.0f32;
                for p in 0..k {
                    s = (*a.add(i * st.a_rs + p * st.a_cs)).mul_add(*b.add(p * st.ldb + jj), s);
                }
                let o = c.add(i * st.ldc + jj);
                *o = if accumulate { beta.mul_add(s, *o) } else { beta * s };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn matches_the_reference_on_every_edge() {
        if !available() {
            eprintln!("SKIP: no AVX2/FMA on this CPU (the reference path runs instead)");
            return;
        }
        let mut seed = 1;
        for &(m, n, k) in &[(64, 64, 32), (64, 32, 64), (7, 19, 5), (1, 8, 1), (5, 16, 64), (64, 3, 32), (3, 41, 0)] {
            // A: row-major, or transposed (row stride 1) as attention's Pᵀ and dSᵀ are
            for a_t in [false, true] {
                for accumulate in [false, true] {
                    seed += 1;
                    let (ldb, ldc) = (n + 3, n + 5);
                    let st = if a_t {
                        TileStrides { a_rs: 1, a_cs: m + 2, ldb, ldc }
                    } else {
                        TileStrides { a_rs: k + 1, a_cs: 1, ldb, ldc }
                    };
                    let a = rand((m + 2) * (k + 1) + 1, seed);
                    let b = rand(k.max(1) * ldb, seed + 100);
                    let c0 = rand(m * ldc, seed + 200);
                    let (mut want, mut got) = (c0.clone(), c0.clone());
                    tile_gemm_ref(&mut want, &a, &b, st, (m, n, k), 0.7, accumulate);
                    assert!(tile_gemm(&mut got, &a, &b, st, (m, n, k), 0.7, accumulate));
                    for (i, (w, g)) in want.iter().zip(&got).enumerate() {
                        // FMA rounding differs from mul-then-add by < 1 ulp per step
                        assert!((w - g).abs() <= 1e-5 * (k as f32 + 1.0), "({m},{n},{k}) a_t={a_t} [{i}]: {w} vs {g}");
                    }
                    // the padding columns between rows are never written
                    for i in 0..m {
                        assert_eq!(&got[i * ldc + n..(i + 1) * ldc], &c0[i * ldc + n..(i + 1) * ldc]);
                    }
                }
            }
        }
    }

    #[test]
    fn refuses_slices_too_short_for_the_shape() {
        let st = TileStrides { a_rs: 4, a_cs: 1, ldb: 8, ldc: 8 };
        let (a, b) = (vec![0.0; 16], vec![0.0; 32]);
        let mut c = vec![0.0; 31]; // needs 4·8
        assert!(!tile_gemm(&mut c, &a, &b, st, (4, 8, 4), 1.0, false));
        assert!(!fits(32, 15, 32, st, (4, 8, 4)));
        assert!(fits(32, 16, 32, st, (4, 8, 4)));
    }
}
