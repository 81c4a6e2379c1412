//! Attention for a few query rows — decoding, where each step brings T = 1 query (or a handful
//! of draft tokens) against S cached keys (seed 003 "KV cache": O(S) work per token).
//!
//! For each (b, h) and query row i: `sⱼ = scale·q·kⱼ (+ mask)` over the visible keys (causal:
//! `j ≤ i + S − T`), `m = max sⱼ`, `pⱼ = e^(sⱼ−m)`, `ℓ = Σ pⱼ`, `o = Σ pⱼ vⱼ / ℓ`,
//! `lse = m + ln ℓ` — the same results as the tiled kernel in `attention.rs` (tested against it),
//! without its tiles: at one row the per-tile GEMM calls and query-tile copies cost more than the
//! arithmetic. K and V are read in place, head-strided (a KV cache's filled prefix), so a decode
//! step copies nothing. Heads are split over rayon's threads. No dropout (inference).

use super::attention::Geo;
use crate::pool::{self, scratch};
use crate::storage::Elem;
use kiln_core::backend::BoxStorage;
use rayon::prelude::*;

/// Query rows up to which the forward takes this path (and no dropout is asked for).
pub(super) const ROWS_MAX: usize = 4;

/// `Σ a·b` with 32 independent partial sums: four 8-lane vectors, so the FMAs of a 64-wide head
/// run as four parallel chains instead of one (it vectorises without reassociation).
#[inline]
fn dot<T: Elem>(a: &[T], b: &[T]) -> T {
    let mut acc = [[T::zero(); 8]; 4];
    let (ca, cb) = (a.chunks_exact(32), b.chunks_exact(32));
    let mut tail = T::zero();
    for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    for (x, y) in ca.zip(cb) {
        for c in 0..4 {
            for l in 0..8 {
                acc[c][l] += x[8 * c + l] * y[8 * c + l];
            }
        }
    }
    let mut lanes = [T::zero(); 8];
    for l in 0..8 {
        lanes[l] = (acc[0][l] + acc[1][l]) + (acc[2][l] + acc[3][l]);
    }
    lanes.iter().fold(tail, |s, &x| s + x)
}

/// `(out (B,H,T,D), lse (B,H,T))` for `q` (B,H,T,D) contiguous and `k`, `v` with (b, kv head)
/// blocks `g.hs` apart.
pub(super) fn forward<T: Elem>(g: &Geo<T>, q: &[T], k: &[T], v: &[T]) -> (BoxStorage, BoxStorage) {
    let (t, s, d) = (g.t, g.s, g.d);
    let mut out = pool::filled(g.b * g.h * t * d, T::zero());
    let mut lse = pool::filled(g.b * g.h * t, T::neg_infinity());
    if out.is_empty() || t == 0 {
        return (T::wrap(out), T::wrap(lse));
    }
    let group = g.h / g.hkv;
    out.par_chunks_mut(t * d).zip(lse.par_chunks_mut(t)).enumerate().for_each(|(bh, (o_bh, l_bh))| {
        let (bi, hi) = (bh / g.h, bh % g.h);
        let kvo = (bi * g.hkv + hi / group) * g.hs;
        let mut p: Vec<T> = scratch::take(s);
        for i in 0..t {
            let qrow = &q[(bh * t + i) * d..][..d];
            let n = if g.causal { (i + s + 1).saturating_sub(t).min(s) } else { s };
            let lo = g.window.map_or(0, |w| (i + s + 1).saturating_sub(t).saturating_sub(w)); // window start
            let mut m = T::neg_infinity();
            for (j, pj) in p[..n].iter_mut().enumerate() {
                if j < lo {
                    *pj = T::neg_infinity();
                    continue;
                }
                let mut x = dot(qrow, &k[kvo + j * d..][..d]) * g.scale;
                if let Some((md, ml)) = g.mask {
                    let st = ml.strides();
                    x += md[ml.offset() + bi * st[0] + hi * st[1] + i * st[2] + j * st[3]];
                }
                *pj = x;
                m = m.max(x);
            }
            let o = &mut o_bh[i * d..(i + 1) * d];
            if m == T::neg_infinity() {
                continue; // no visible key: output 0, lse −∞ (as filled)
            }
            // probabilities in one vectorisable pass, then o = Σ pⱼ vⱼ four keys per pass over o
            p[..n].iter_mut().for_each(|x| *x = (*x - m).fexp());
            let l = p[..n].iter().fold(T::zero(), |a, &x| a + x);
            let mut j = 0;
            while j + 4 <= n {
                let (p0, p1, p2, p3) = (p[j], p[j + 1], p[j + 2], p[j + 3]);
                let vs = &v[kvo + j * d..][..4 * d];
                let (v0, rest) = vs.split_at(d);
                let (v1, rest) = rest.split_at(d);
                let (v2, v3) = rest.split_at(d);
                for c in 0..d {
                    o[c] += p0 * v0[c] + p1 * v1[c] + p2 * v2[c] + p3 * v3[c];
                }
                j += 4;
            }
            for (jj, &pj) in p[j..n].iter().enumerate() {
                o.iter_mut().zip(&v[kvo + (j + jj) * d..][..d]).for_each(|(a, &b)| *a += pj * b);
            }
            let inv = l.recip();
            o.iter_mut().for_each(|x| *x *= inv);
            l_bh[i] = m + l.ln();
        }
        scratch::give(p);
    });
    (T::wrap(out), T::wrap(lse))
}
