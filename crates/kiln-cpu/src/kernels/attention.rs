//! Scaled-dot-product attention, tiled with the online softmax: the FlashAttention-2 algorithm
//! (Dao 2023; seed 003 "FlashAttention", seed 002 "online softmax") on the CPU. Forward and
//! backward never hold more than one Br×Bc tile of scores per task, so memory is O(T·D), not
//! O(T·S).
//!
//! Forward, for each (b, h) and query tile Qᵢ, over key tiles (Kⱼ, Vⱼ):
//! `S = scale·QᵢKⱼᵀ (+ mask, causal −∞)`, `m' = max(m, rowmax S)`, `P = e^(S−m')`,
//! `ℓ = e^(m−m')·ℓ + rowsum P`, `O = e^(m−m')·O + P̃Vⱼ` with `P̃ = P ⊙ Z/(1−p)` (dropout mask Z,
//! statistics from the undropped P). Finally `O /= ℓ`, `lse = m + ln ℓ`. (Seed 003's pseudo-code
//! forgets to rescale ℓ and subtracts ℓ where the max belongs; this is the standard form.)
//!
//! Backward, with `Dᵢ = rowsum(dO ⊙ O)` and `P = e^(S − lse)` recomputed per tile:
//! `dV += P̃ᵀdO`, `dP = (dO·Vᵀ) ⊙ Z/(1−p)`, `dS = P ⊙ (dP − D)`, `dQ += scale·dS·K`,
//! `dK += scale·dSᵀ·Q`. Pass 1 is parallel over key tiles (dK, dV), pass 2 over query tiles (dQ):
//! no two tasks write the same rows, so results are deterministic.
//!
//! Grouped-query attention: query head h reads kv head h / (H/Hkv); dK/dV of a kv head sum over
//! its query heads. Rows whose keys are all masked output 0 with `lse = −∞` and zero gradients.

use super::float::{max_lanes, sum_lanes, KFloat};
use super::random::uniform;
use crate::pool;
use crate::storage::{dispatch_float, Elem};
use gemm::Parallelism;
use kiln_core::backend::{Arg, AttentionArgs, BoxStorage};
use kiln_core::{Error, Layout, Result};
use rayon::prelude::*;

/// Query rows per tile.
const BR: usize = 64;
/// Key columns per tile.
const BC: usize = 64;

/// `out (m×n) = beta·A(m×k)·B(k×n) (+ out when accumulate)`, strided operands, one thread.
#[allow(clippy::too_many_arguments)]
fn mm<T: KFloat>(
    out: &mut [T],
    out_rs: usize,
    accumulate: bool,
    a: &[T],
    a_rs: usize,
    a_cs: usize,
    b: &[T],
    b_rs: usize,
    b_cs: usize,
    (m, n, k): (usize, usize, usize),
    beta: T,
) {
    if m == 0 || n == 0 {
        return;
    }
    let reach = |rs: usize, cs: usize, r: usize, c: usize| (r.max(1) - 1) * rs + (c.max(1) - 1) * cs + 1;
    let ok = out.len() >= reach(out_rs, 1, m, n)
        && (k == 0 || (a.len() >= reach(a_rs, a_cs, m, k) && b.len() >= reach(b_rs, b_cs, k, n)));
    // INVARIANT: callers pass tiles cut from buffers of the checked sizes; a violation is a bug
    // in this file, caught in debug builds, and skipped (never an out-of-bounds access) otherwise.
    debug_assert!(ok, "attention tile out of bounds");
    if !ok {
        return;
    }
    // SAFETY: the reach check above keeps every read and write inside the slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            out_rs as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            T::one(),
            beta,
            false,
            false,
            false,
            Parallelism::None,
        )
    }
}

/// Problem geometry and the (strided) additive mask.
struct Geo<'a, T> {
    b: usize,
    h: usize,
    hkv: usize,
    t: usize,
    s: usize,
    d: usize,
    scale: T,
    causal: bool,
    keep: f64,
    seed: u64,
    mask: Option<(&'a [T], &'a Layout)>,
}

impl<T: Elem> Geo<'_, T> {
    /// Scores tile for queries `q0..q0+br` of head (bi, hi) against keys `k0..k0+bc`: fills
    /// `st` (br×BC, row stride BC) with `scale·QKᵀ + mask`, −∞ where causally masked.
    #[allow(clippy::too_many_arguments)]
    fn scores(&self, st: &mut [T], q: &[T], k: &[T], bi: usize, hi: usize, q0: usize, br: usize, k0: usize, bc: usize) {
        let d = self.d;
        let qo = ((bi * self.h + hi) * self.t + q0) * d;
        let ko = ((bi * self.hkv + hi / (self.h / self.hkv)) * self.s + k0) * d;
        mm(st, BC, false, &q[qo..], d, 1, &k[ko..], 1, d, (br, bc, d), self.scale);
        let off = self.s as isize - self.t as isize;
        for i in 0..br {
            let row = &mut st[i * BC..i * BC + bc];
            if let Some((md, ml)) = self.mask {
                let str = ml.strides();
                let base = ml.offset() + bi * str[0] + hi * str[1] + (q0 + i) * str[2];
                for (j, v) in row.iter_mut().enumerate() {
                    *v += md[base + (k0 + j) * str[3]];
                }
            }
            if self.causal {
                let lim = (q0 + i) as isize + off; // last visible key
                for (j, v) in row.iter_mut().enumerate() {
                    if (k0 + j) as isize > lim {
                        *v = T::neg_infinity();
                    }
                }
            }
        }
    }

    /// Dropout multiplier of element (bi, hi, i, j): 0 or 1/(1−p).
    #[inline]
    fn drop(&self, bi: usize, hi: usize, i: usize, j: usize) -> T {
        let counter = (((bi * self.h + hi) * self.t + i) * self.s + j) as u64;
        if uniform(self.seed, counter) >= 1.0 - self.keep {
            T::c(1.0 / self.keep)
        } else {
            T::zero()
        }
    }

    /// Key tiles a query tile can see under the causal mask.
    fn key_tiles(&self, q0: usize, br: usize) -> usize {
        let last = if self.causal {
            let lim = (q0 + br) as isize - 1 + self.s as isize - self.t as isize;
            if lim < 0 {
                return 0;
            }
            (lim as usize + 1).min(self.s)
        } else {
            self.s
        };
        last.div_ceil(BC)
    }
}

#[allow(clippy::type_complexity)]
fn geometry<'a, T: Elem>(
    args: &AttentionArgs,
    q: Arg<'a>,
    k: Arg<'a>,
    v: Arg<'a>,
    mask: Option<Arg<'a>>,
) -> Result<(Geo<'a, T>, &'a [T], &'a [T], &'a [T])> {
    let (qs, ks, vs) = (q.1.shape(), k.1.shape(), v.1.shape());
    let bad = || Error::ShapeMismatch { op: "attention", lhs: qs.to_vec(), rhs: ks.to_vec() };
    if qs.len() != 4
        || ks.len() != 4
        || ks != vs
        || qs[0] != ks[0]
        || qs[3] != ks[3]
        || ks[1] == 0
        || qs[1] % ks[1] != 0
    {
        return Err(bad());
    }
    let mask = match mask {
        None => None,
        Some((ms, ml)) => {
            if ml.shape() != [qs[0], qs[1], qs[2], ks[2]] {
                return Err(Error::ShapeMismatch { op: "attention", lhs: qs.to_vec(), rhs: ml.shape().to_vec() });
            }
            let data = T::vec_of(ms).ok_or(Error::UnsupportedDType {
                op: "attention",
                dtype: ms.dtype(),
                msg: "mask dtype must match q",
            })?;
            Some((data.as_slice(), ml))
        }
    };
    let g = Geo {
        b: qs[0],
        h: qs[1],
        hkv: ks[1],
        t: qs[2],
        s: ks[2],
        d: qs[3],
        scale: T::c(args.scale),
        causal: args.causal,
        keep: 1.0 - args.dropout_p,
        seed: args.seed,
        mask,
    };
    Ok((g, T::slice("attention", q)?, T::slice("attention", k)?, T::slice("attention", v)?))
}

fn forward_t<T: Elem>(
    args: &AttentionArgs,
    q: Arg,
    k: Arg,
    v: Arg,
    mask: Option<Arg>,
) -> Result<(BoxStorage, BoxStorage)> {
    let (g, qd, kd, vd) = geometry::<T>(args, q, k, v, mask)?;
    let (t, d) = (g.t, g.d);
    let mut out = pool::filled(g.b * g.h * t * d, T::zero());
    let mut lse = pool::filled(g.b * g.h * t, T::neg_infinity());
    if out.is_empty() || t == 0 {
        return Ok((T::wrap(out), T::wrap(lse)));
    }
    let dropout = g.keep < 1.0;
    out.par_chunks_mut(t * d).zip(lse.par_chunks_mut(t)).enumerate().for_each(|(bh, (o_bh, l_bh))| {
        let (bi, hi) = (bh / g.h, bh % g.h);
        let kvo = (bi * g.hkv + hi / (g.h / g.hkv)) * g.s * d;
        o_bh.par_chunks_mut(BR * d).zip(l_bh.par_chunks_mut(BR)).enumerate().for_each(|(qt, (o, lrow))| {
            let q0 = qt * BR;
            let br = lrow.len();
            let mut st: Vec<T> = pool::take(BR * BC);
            let mut m = pool::filled(br, T::neg_infinity());
            let mut l = pool::filled(br, T::zero());
            for kt in 0..g.key_tiles(q0, br) {
                let k0 = kt * BC;
                let bc = BC.min(g.s - k0);
                g.scores(&mut st, qd, kd, bi, hi, q0, br, k0, bc);
                for i in 0..br {
                    let row = &mut st[i * BC..i * BC + bc];
                    let mt = max_lanes(row);
                    if mt == T::neg_infinity() {
                        row.iter_mut().for_each(|p| *p = T::zero());
                        continue;
                    }
                    let mn = m[i].max(mt);
                    let alpha = (m[i] - mn).fexp(); // 0 when m was −∞
                    row.iter_mut().for_each(|p| *p = (*p - mn).fexp());
                    let sum = sum_lanes(row);
                    if dropout {
                        for (j, p) in row.iter_mut().enumerate() {
                            *p *= g.drop(bi, hi, q0 + i, k0 + j);
                        }
                    }
                    l[i] = alpha * l[i] + sum;
                    m[i] = mn;
                    o[i * d..(i + 1) * d].iter_mut().for_each(|x| *x *= alpha);
                }
                mm(o, d, true, &st, BC, 1, &vd[kvo + k0 * d..], d, 1, (br, d, bc), T::one());
            }
            for i in 0..br {
                if l[i] > T::zero() {
                    let inv = l[i].recip();
                    o[i * d..(i + 1) * d].iter_mut().for_each(|x| *x *= inv);
                    lrow[i] = m[i] + l[i].ln();
                } else {
                    o[i * d..(i + 1) * d].iter_mut().for_each(|x| *x = T::zero());
                    lrow[i] = T::neg_infinity();
                }
            }
            pool::give(st);
            pool::give(m);
            pool::give(l);
        });
    });
    Ok((T::wrap(out), T::wrap(lse)))
}

/// Recomputes, for one (query tile, key tile) pair, `P` (into `p`) and `dS` (into `ds`), and
/// leaves `P̃ = P ⊙ Z/(1−p)` in `pt`. Returns false when the tile is entirely masked.
#[allow(clippy::too_many_arguments)]
fn tile_grads<T: Elem>(
    g: &Geo<T>,
    (qd, kd, vd, dod): (&[T], &[T], &[T], &[T]),
    (lse, dsum): (&[T], &[T]),
    (bi, hi, q0, br, k0, bc): (usize, usize, usize, usize, usize, usize),
    p: &mut [T],
    pt: &mut [T],
    ds: &mut [T],
) -> bool {
    let d = g.d;
    g.scores(p, qd, kd, bi, hi, q0, br, k0, bc);
    let bh = bi * g.h + hi;
    let mut any = false;
    for i in 0..br {
        let l = lse[bh * g.t + q0 + i];
        for j in 0..bc {
            let e = if l == T::neg_infinity() { T::zero() } else { (p[i * BC + j] - l).fexp() };
            p[i * BC + j] = e;
            any |= e != T::zero();
        }
    }
    if !any {
        return false;
    }
    // dP̃ = dO·Vᵀ (br×bc)
    let kvo = (bi * g.hkv + hi / (g.h / g.hkv)) * g.s * d;
    let qo = (bh * g.t + q0) * d;
    mm(ds, BC, false, &dod[qo..], d, 1, &vd[kvo + k0 * d..], 1, d, (br, bc, d), T::one());
    let dropout = g.keep < 1.0;
    for i in 0..br {
        let di = dsum[bh * g.t + q0 + i];
        for j in 0..bc {
            let z = if dropout { g.drop(bi, hi, q0 + i, k0 + j) } else { T::one() };
            let pij = p[i * BC + j];
            pt[i * BC + j] = pij * z;
            ds[i * BC + j] = pij * (ds[i * BC + j] * z - di);
        }
    }
    true
}

#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn backward_t<T: Elem>(
    args: &AttentionArgs,
    q: Arg,
    k: Arg,
    v: Arg,
    mask: Option<Arg>,
    out: Arg,
    lse: Arg,
    dout: Arg,
) -> Result<(BoxStorage, BoxStorage, BoxStorage)> {
    let (g, qd, kd, vd) = geometry::<T>(args, q, k, v, mask)?;
    let (od, ld, dod) =
        (T::slice("attention_bwd", out)?, T::slice("attention_bwd", lse)?, T::slice("attention_bwd", dout)?);
    let (t, s, d) = (g.t, g.s, g.d);
    if od.len() != qd.len() || dod.len() != qd.len() || ld.len() != g.b * g.h * t {
        return Err(Error::ShapeMismatch {
            op: "attention_bwd",
            lhs: q.1.shape().to_vec(),
            rhs: dout.1.shape().to_vec(),
        });
    }
    // D_i = rowsum(dO ⊙ O)
    let mut dsum: Vec<T> = pool::take(g.b * g.h * t);
    dsum.par_iter_mut()
        .zip(od.par_chunks(d.max(1)).zip(dod.par_chunks(d.max(1))))
        .for_each(|(s, (o, g))| *s = o.iter().zip(g).map(|(&a, &b)| a * b).sum());
    let mut dq = pool::filled(qd.len(), T::zero());
    let mut dk = pool::filled(kd.len(), T::zero());
    let mut dv = pool::filled(vd.len(), T::zero());
    if qd.is_empty() || kd.is_empty() {
        return Ok((T::wrap(dq), T::wrap(dk), T::wrap(dv)));
    }
    let group = g.h / g.hkv;
    let bufs = (qd, kd, vd, dod);
    // Pass 1: dK, dV, parallel over (b, kv head, key tile).
    dk.par_chunks_mut(s * d).zip(dv.par_chunks_mut(s * d)).enumerate().for_each(|(bkv, (dk_h, dv_h))| {
        let (bi, hk) = (bkv / g.hkv, bkv % g.hkv);
        dk_h.par_chunks_mut(BC * d).zip(dv_h.par_chunks_mut(BC * d)).enumerate().for_each(|(kt, (dkt, dvt))| {
            let k0 = kt * BC;
            let bc = dkt.len() / d.max(1);
            let (mut p, mut pt, mut ds) = (pool::take(BR * BC), pool::take(BR * BC), pool::take(BR * BC));
            for hi in hk * group..(hk + 1) * group {
                let bh = bi * g.h + hi;
                for qt in 0..t.div_ceil(BR) {
                    let q0 = qt * BR;
                    let br = BR.min(t - q0);
                    if g.key_tiles(q0, br) <= kt {
                        continue;
                    }
                    if !tile_grads(&g, bufs, (ld, &dsum), (bi, hi, q0, br, k0, bc), &mut p, &mut pt, &mut ds) {
                        continue;
                    }
                    let qo = (bh * t + q0) * d;
                    // dV += P̃ᵀ·dO ; dK += scale·dSᵀ·Q
                    mm(dvt, d, true, &pt, 1, BC, &dod[qo..], d, 1, (bc, d, br), T::one());
                    mm(dkt, d, true, &ds, 1, BC, &qd[qo..], d, 1, (bc, d, br), g.scale);
                }
            }
            [p, pt, ds].into_iter().for_each(pool::give);
        });
    });
    // Pass 2: dQ, parallel over (b, h, query tile).
    dq.par_chunks_mut(t * d).enumerate().for_each(|(bh, dq_h)| {
        let (bi, hi) = (bh / g.h, bh % g.h);
        let kvo = (bi * g.hkv + hi / group) * s * d;
        dq_h.par_chunks_mut(BR * d).enumerate().for_each(|(qt, dqt)| {
            let q0 = qt * BR;
            let br = dqt.len() / d.max(1);
            let (mut p, mut pt, mut ds) = (pool::take(BR * BC), pool::take(BR * BC), pool::take(BR * BC));
            for kt in 0..g.key_tiles(q0, br) {
                let k0 = kt * BC;
                let bc = BC.min(s - k0);
                if !tile_grads(&g, bufs, (ld, &dsum), (bi, hi, q0, br, k0, bc), &mut p, &mut pt, &mut ds) {
                    continue;
                }
                // dQ += scale·dS·K
                mm(dqt, d, true, &ds, BC, 1, &kd[kvo + k0 * d..], d, 1, (br, d, bc), g.scale);
            }
            [p, pt, ds].into_iter().for_each(pool::give);
        });
    });
    pool::give(dsum);
    Ok((T::wrap(dq), T::wrap(dk), T::wrap(dv)))
}

/// Forward kernel: `(out, lse)`.
pub(crate) fn forward(
    args: &AttentionArgs,
    q: Arg,
    k: Arg,
    v: Arg,
    mask: Option<Arg>,
) -> Result<(BoxStorage, BoxStorage)> {
    dispatch_float!("attention", q.0.dtype(), forward_t(args, q, k, v, mask))
}

/// Backward kernel: `(dq, dk, dv)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    args: &AttentionArgs,
    q: Arg,
    k: Arg,
    v: Arg,
    mask: Option<Arg>,
    out: Arg,
    lse: Arg,
    dout: Arg,
) -> Result<(BoxStorage, BoxStorage, BoxStorage)> {
    dispatch_float!("attention_bwd", q.0.dtype(), backward_t(args, q, k, v, mask, out, lse, dout))
}
