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
//! `dK += scale·dSᵀ·Q`: five tile GEMMs, one pass. Tasks are (b, kv head, key-tile group) with
//! tile `j` in group `j mod n` (n ≤ 8 depends only on the shape): each task owns its dK/dV tiles
//! outright and accumulates dQ into its own partial buffer; the partials are summed in group
//! order afterwards. No two tasks write the same memory and no summation order depends on the
//! thread count, so results are deterministic. Extra memory: n partial dQ buffers, O(n·T·D).
//!
//! Layout: gemm reads an operand in place only when its SIMD dimension is contiguous, and repacks
//! it on every call otherwise. So the forward copies its query tile column-major once per task
//! and writes the score tile column-major (`O += P·V` then reads P and V as they are), and the
//! backward transposes each K and V tile once per key tile for its `Q·Kᵀ` and `dO·Vᵀ` products.
//!
//! Grouped-query attention: query head h reads kv head h / (H/Hkv); dK/dV of a kv head sum over
//! its query heads. Rows whose keys are all masked output 0 with `lse = −∞` and zero gradients.

use super::float::KFloat;
use super::random::uniform;
use super::tile_gemm::TileStrides;
use crate::pool::{self, scratch};
use crate::storage::{dispatch_float, Elem};
use gemm::Parallelism;
use kiln_core::backend::{Arg, AttentionArgs, AttentionDims, BoxStorage};
use kiln_core::{Error, Layout, Result};
use rayon::prelude::*;

/// Query rows per tile.
const BR: usize = 64;
/// Key columns per tile.
const BC: usize = 64;

/// `out (m×n) = beta·A(m×k)·B(k×n) (+ out when accumulate)`, all strided, one thread. A with
/// row stride 1 (and m a multiple of the SIMD width) is read in place; otherwise gemm repacks it.
#[allow(clippy::too_many_arguments)]
fn mm<T: KFloat>(
    out: &mut [T],
    (out_rs, out_cs): (usize, usize),
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
    let ok = out.len() >= reach(out_rs, out_cs, m, n)
        && (k == 0 || (a.len() >= reach(a_rs, a_cs, m, k) && b.len() >= reach(b_rs, b_cs, k, n)));
    // INVARIANT: callers pass tiles cut from buffers of the checked sizes; a violation is a bug
    // in this file, caught in debug builds, and skipped (never an out-of-bounds access) otherwise.
    debug_assert!(ok, "attention tile out of bounds");
    if !ok {
        return;
    }
    // The tile kernel wants C's and B's rows contiguous; C = A·B is also Cᵀ = Bᵀ·Aᵀ, which has
    // them when C and A are column-major instead.
    if out_cs == 1 && b_cs == 1 {
        let st = TileStrides { a_rs, a_cs, ldb: b_rs, ldc: out_rs };
        if T::tile_gemm(out, a, b, st, (m, n, k), beta, accumulate) {
            return;
        }
    } else if out_rs == 1 && a_rs == 1 {
        let st = TileStrides { a_rs: b_cs, a_cs: b_rs, ldb: a_cs, ldc: out_cs };
        if T::tile_gemm(out, b, a, st, (n, m, k), beta, accumulate) {
            return;
        }
    }
    // SAFETY: the reach check above keeps every read and write inside the slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            out_cs as isize,
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
pub(super) struct Geo<'a, T> {
    pub(super) b: usize,
    pub(super) h: usize,
    pub(super) hkv: usize,
    pub(super) t: usize,
    pub(super) s: usize,
    pub(super) d: usize,
    /// Distance between consecutive (b, kv head) blocks of K and V: S·D when contiguous, more
    /// for a KV cache's filled prefix (forward only).
    pub(super) hs: usize,
    pub(super) scale: T,
    pub(super) causal: bool,
    pub(super) keep: f64,
    pub(super) seed: u64,
    pub(super) mask: Option<(&'a [T], &'a Layout)>,
    /// Sliding window `w`: query i sees keys j > i + S − T − w (with causal).
    pub(super) window: Option<usize>,
}

impl<T: Elem> Geo<'_, T> {
    /// Backward scores tile for queries `q0..q0+br` of head (bi, hi) against keys `k0..k0+bc`:
    /// fills `st` (br×BC, row stride BC) with `scale·QKᵀ + mask`, −∞ where causally masked.
    /// `kt` is the key tile transposed (d×BC, row stride BC), so gemm reads it without repacking.
    #[allow(clippy::too_many_arguments)]
    fn scores(
        &self,
        st: &mut [T],
        q: &[T],
        kt: &[T],
        bi: usize,
        hi: usize,
        q0: usize,
        br: usize,
        k0: usize,
        bc: usize,
    ) {
        let d = self.d;
        let qo = ((bi * self.h + hi) * self.t + q0) * d;
        mm(st, (BC, 1), false, &q[qo..], d, 1, kt, BC, 1, (br, bc, d), self.scale);
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
                // keys k0 + j > (q0 + i) + S − T are hidden: columns from `first` on
                let first = ((q0 + i) as isize + off + 1 - k0 as isize).clamp(0, bc as isize) as usize;
                row[first..].iter_mut().for_each(|v| *v = T::neg_infinity());
            }
            if let Some(w) = self.window {
                // keys k0 + j ≤ (q0 + i) + S − T − w left the window: columns before `lo`
                let lo = ((q0 + i) as isize + off + 1 - w as isize - k0 as isize).clamp(0, bc as isize) as usize;
                row[..lo].iter_mut().for_each(|v| *v = T::neg_infinity());
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

    /// The first key tile a query tile can see under a sliding window (0 without one).
    fn first_key_tile(&self, q0: usize) -> usize {
        match self.window {
            Some(w) => (q0 as isize + self.s as isize - self.t as isize + 1 - w as isize).max(0) as usize / BC,
            None => 0,
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
/// K or V from its first element, and its (b, kv head) block distance: a contiguous tensor, or
/// (`strided`) a head-strided one (`Layout::head_strided`).
fn kv_slice<'a, T: Elem>(a: Arg<'a>, strided: bool) -> Result<(&'a [T], usize)> {
    let l = a.1;
    let hs = l.head_strided().filter(|_| strided);
    let (Some(hs), false) = (hs, l.is_contiguous()) else {
        let sh = l.shape();
        return Ok((T::slice("attention", a)?, sh.get(2).copied().unwrap_or(0) * sh.get(3).copied().unwrap_or(0)));
    };
    let sh = l.shape();
    let bad = |msg: &str| Error::BadShape { op: "attention", shape: sh.to_vec(), msg: msg.into() };
    let data = T::vec_of(a.0).ok_or_else(|| bad("k/v dtype must match q"))?;
    let blocks = sh[0] * sh[1];
    let end = if blocks == 0 { l.offset() } else { l.offset() + (blocks - 1) * hs + sh[2] * sh[3] };
    Ok((data.get(l.offset()..end).ok_or_else(|| bad("layout exceeds storage"))?, hs))
}

/// The geometry and the q, k, v data of an attention call.
pub(super) type GeoData<'a, T> = (Geo<'a, T>, &'a [T], &'a [T], &'a [T]);

/// Shapes, options and data of an attention call; `strided_kv` lets K and V be head-strided.
pub(super) fn geometry<'a, T: Elem>(
    args: &AttentionArgs,
    q: Arg<'a>,
    k: Arg<'a>,
    v: Arg<'a>,
    mask: Option<Arg<'a>>,
    strided_kv: bool,
) -> Result<GeoData<'a, T>> {
    let dims = AttentionDims::of(q.1, k.1, v.1, mask.map(|m| m.1))?;
    let mask = match mask {
        None => None,
        Some((ms, ml)) => {
            let data = T::vec_of(ms).ok_or(Error::UnsupportedDType {
                op: "attention",
                dtype: ms.dtype(),
                msg: "mask dtype must match q",
            })?;
            Some((data.as_slice(), ml))
        }
    };
    let ((kd, hs), (vd, vhs)) = (kv_slice::<T>(k, strided_kv)?, kv_slice::<T>(v, strided_kv)?);
    if hs != vhs {
        return Err(Error::ShapeMismatch { op: "attention (k/v block strides)", lhs: vec![hs], rhs: vec![vhs] });
    }
    let g = Geo {
        b: dims.b,
        h: dims.h,
        hkv: dims.hkv,
        t: dims.t,
        s: dims.s,
        d: dims.d,
        hs,
        scale: T::c(args.scale),
        causal: args.causal,
        keep: 1.0 - args.dropout_p,
        seed: args.seed,
        mask,
        window: args.window.filter(|_| args.causal),
    };
    Ok((g, T::slice("attention", q)?, kd, vd))
}

/// Forward scores tile, column-major (`st[j·BR + i]`, so the P·V product reads it unpacked):
/// `scale·QKᵀ + mask`, −∞ where causally masked. `qt` is the query tile transposed
/// (`qt[c·BR + i]`), made once per task so no GEMM call has to repack it.
#[allow(clippy::too_many_arguments)]
fn scores_cm<T: Elem>(
    g: &Geo<T>,
    st: &mut [T],
    qt: &[T],
    k: &[T],
    bi: usize,
    hi: usize,
    q0: usize,
    br: usize,
    k0: usize,
    bc: usize,
) {
    let d = g.d;
    let ko = (bi * g.hkv + hi / (g.h / g.hkv)) * g.hs + k0 * d;
    mm(st, (1, BR), false, qt, 1, BR, &k[ko..], 1, d, (br, bc, d), g.scale);
    if let Some((md, ml)) = g.mask {
        let str = ml.strides();
        let base = ml.offset() + bi * str[0] + hi * str[1] + q0 * str[2];
        for j in 0..bc {
            let col = &mut st[j * BR..j * BR + br];
            let cb = base + (k0 + j) * str[3];
            if str[2] == 0 {
                let mv = md[cb];
                col.iter_mut().for_each(|v| *v += mv);
            } else {
                col.iter_mut().enumerate().for_each(|(i, v)| *v += md[cb + i * str[2]]);
            }
        }
    }
    let off = g.s as isize - g.t as isize;
    if g.causal {
        // key j is hidden from query i iff k0 + j > q0 + i + S − T
        for j in 0..bc {
            let hidden = ((k0 + j) as isize - off - q0 as isize).clamp(0, br as isize) as usize;
            st[j * BR..j * BR + hidden].iter_mut().for_each(|v| *v = T::neg_infinity());
        }
    }
    if let Some(w) = g.window {
        // key j left query i's window iff k0 + j ≤ q0 + i + S − T − w: rows from `from` on
        for j in 0..bc {
            let from = ((k0 + j) as isize - off - q0 as isize + w as isize).clamp(0, br as isize) as usize;
            st[j * BR + from..j * BR + br].iter_mut().for_each(|v| *v = T::neg_infinity());
        }
    }
}

fn forward_t<T: Elem>(
    args: &AttentionArgs,
    q: Arg,
    k: Arg,
    v: Arg,
    mask: Option<Arg>,
) -> Result<(BoxStorage, BoxStorage)> {
    let (g, qd, kd, vd) = geometry::<T>(args, q, k, v, mask, true)?;
    if g.t <= super::attention_rows::ROWS_MAX && g.keep >= 1.0 {
        return Ok(super::attention_rows::forward(&g, qd, kd, vd));
    }
    let (t, d) = (g.t, g.d);
    let mut out = pool::filled(g.b * g.h * t * d, T::zero());
    let mut lse = pool::filled(g.b * g.h * t, T::neg_infinity());
    if out.is_empty() || t == 0 {
        return Ok((T::wrap(out), T::wrap(lse)));
    }
    let dropout = g.keep < 1.0;
    let ninf = T::neg_infinity();
    out.par_chunks_mut(t * d).zip(lse.par_chunks_mut(t)).enumerate().for_each(|(bh, (o_bh, l_bh))| {
        let (bi, hi) = (bh / g.h, bh % g.h);
        let kvo = (bi * g.hkv + hi / (g.h / g.hkv)) * g.hs;
        o_bh.par_chunks_mut(BR * d).zip(l_bh.par_chunks_mut(BR)).enumerate().for_each(|(qti, (o, lrow))| {
            let q0 = qti * BR;
            let br = lrow.len();
            let (mut st, mut qt): (Vec<T>, Vec<T>) = (scratch::take(BR * BC), scratch::filled(BR * d, T::zero()));
            let qo = (bh * t + q0) * d;
            // transpose column by column: contiguous stores, loads strided within L1
            let qtile = &qd[qo..qo + br * d];
            for (c, qtc) in qt.chunks_mut(BR).enumerate() {
                qtc[..br].iter_mut().zip(qtile[c..].iter().step_by(d)).for_each(|(o, &x)| *o = x);
            }
            // running max m, running sum ℓ, and per-tile scratch: rescale α, shift, tile sum
            let mut m = scratch::filled(br, ninf);
            let mut l = scratch::filled(br, T::zero());
            let (mut alpha, mut shift, mut ts) = (scratch::take(br), scratch::take(br), scratch::take(br));
            for kt in g.first_key_tile(q0)..g.key_tiles(q0, br) {
                let k0 = kt * BC;
                let bc = BC.min(g.s - k0);
                scores_cm(&g, &mut st, &qt, kd, bi, hi, q0, br, k0, bc);
                // tile row max (into `shift`), vectorised across rows
                shift.iter_mut().for_each(|x| *x = ninf);
                for j in 0..bc {
                    shift.iter_mut().zip(&st[j * BR..j * BR + br]).for_each(|(a, &b)| *a = a.max(b));
                }
                for i in 0..br {
                    let mn = m[i].max(shift[i]);
                    // a row with no visible key yet keeps m = −∞: shift by 0 (P = e^−∞ = 0), α = 1
                    (alpha[i], shift[i]) = if mn == ninf { (T::one(), T::zero()) } else { ((m[i] - mn).fexp(), mn) };
                    m[i] = mn;
                }
                ts.iter_mut().for_each(|x| *x = T::zero());
                for j in 0..bc {
                    let col = &mut st[j * BR..j * BR + br];
                    col.iter_mut().zip(&shift[..]).for_each(|(p, &s)| *p = (*p - s).fexp());
                    ts.iter_mut().zip(&col[..]).for_each(|(a, &p)| *a += p);
                    if dropout {
                        col.iter_mut().enumerate().for_each(|(i, p)| *p *= g.drop(bi, hi, q0 + i, k0 + j));
                    }
                }
                for i in 0..br {
                    l[i] = alpha[i] * l[i] + ts[i];
                    if alpha[i] != T::one() {
                        o[i * d..(i + 1) * d].iter_mut().for_each(|x| *x *= alpha[i]);
                    }
                }
                mm(o, (d, 1), true, &st, 1, BR, &vd[kvo + k0 * d..], d, 1, (br, d, bc), T::one());
            }
            for i in 0..br {
                if l[i] > T::zero() {
                    let inv = l[i].recip();
                    o[i * d..(i + 1) * d].iter_mut().for_each(|x| *x *= inv);
                    lrow[i] = m[i] + l[i].ln();
                } else {
                    o[i * d..(i + 1) * d].iter_mut().for_each(|x| *x = T::zero());
                    lrow[i] = ninf;
                }
            }
            [st, qt, m, l, alpha, shift, ts].into_iter().for_each(scratch::give);
        });
    });
    Ok((T::wrap(out), T::wrap(lse)))
}

/// Recomputes, for one (query tile, key tile) pair, `P = e^(S − lse)` (into `p`, then
/// `P̃ = P ⊙ Z/(1−p)` in place when dropout is on) and `dS = P ⊙ (dP̃ ⊙ Z/(1−p) − D)` (into `ds`).
/// Returns false when every row of the tile is fully masked (`lse = −∞`): nothing to add.
#[allow(clippy::too_many_arguments)]
fn tile_grads<T: Elem>(
    g: &Geo<T>,
    (qd, ktt, vtt, dod): (&[T], &[T], &[T], &[T]),
    (lse, dsum): (&[T], &[T]),
    (bi, hi, q0, br, k0, bc): (usize, usize, usize, usize, usize, usize),
    p: &mut [T],
    ds: &mut [T],
) -> bool {
    let d = g.d;
    let bh = bi * g.h + hi;
    let lrow = &lse[bh * g.t + q0..bh * g.t + q0 + br];
    if lrow.iter().all(|&l| l == T::neg_infinity()) {
        return false;
    }
    g.scores(p, qd, ktt, bi, hi, q0, br, k0, bc);
    for (i, &l) in lrow.iter().enumerate() {
        let row = &mut p[i * BC..i * BC + bc];
        if l == T::neg_infinity() {
            row.iter_mut().for_each(|x| *x = T::zero());
        } else {
            row.iter_mut().for_each(|x| *x = (*x - l).fexp());
        }
    }
    // dP̃ = dO·Vᵀ (br×bc)
    let qo = (bh * g.t + q0) * d;
    mm(ds, (BC, 1), false, &dod[qo..], d, 1, vtt, BC, 1, (br, bc, d), T::one());
    let drows = &dsum[bh * g.t + q0..bh * g.t + q0 + br];
    for (i, &di) in drows.iter().enumerate() {
        let (prow, drow) = (&mut p[i * BC..i * BC + bc], &mut ds[i * BC..i * BC + bc]);
        if g.keep < 1.0 {
            for (j, (pij, dij)) in prow.iter_mut().zip(drow.iter_mut()).enumerate() {
                let z = g.drop(bi, hi, q0 + i, k0 + j);
                *dij = *pij * (*dij * z - di);
                *pij *= z;
            }
        } else {
            prow.iter().zip(drow.iter_mut()).for_each(|(&pij, dij)| *dij = pij * (*dij - di));
        }
    }
    true
}

/// Key-tile groups per (b, kv head) in the backward: tile `kt` belongs to group `kt % n`. Each
/// group accumulates its own partial dQ, summed afterwards in group order, so the result does not
/// depend on the thread count. A function of the shape only (≤ 8 partial dQ buffers).
fn key_groups(b: usize, hkv: usize, key_tiles: usize) -> usize {
    (32usize.div_ceil((b * hkv).max(1))).clamp(1, 8).min(key_tiles.max(1))
}

/// One backward task: its kv head, its partial dQ (group·T·D) and its (key tile, dK, dV) tiles.
type Task<'a, T> = (usize, usize, &'a mut [T], Vec<(usize, &'a mut [T], &'a mut [T])>);

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
    let (g, qd, kd, vd) = geometry::<T>(args, q, k, v, mask, false)?;
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
    let mut dq = pool::filled(qd.len(), T::zero());
    let mut dk = pool::filled(kd.len(), T::zero());
    let mut dv = pool::filled(vd.len(), T::zero());
    if qd.is_empty() || kd.is_empty() {
        return Ok((T::wrap(dq), T::wrap(dk), T::wrap(dv)));
    }
    // D_i = rowsum(dO ⊙ O)
    let mut dsum: Vec<T> = pool::take(g.b * g.h * t);
    dsum.par_iter_mut()
        .zip(od.par_chunks(d).zip(dod.par_chunks(d)))
        .for_each(|(s, (o, g))| *s = o.iter().zip(g).map(|(&a, &b)| a * b).sum());
    let group = g.h / g.hkv;
    let ktiles = s.div_ceil(BC);
    let ng = key_groups(g.b, g.hkv, ktiles);
    let qblock = group * t * d; // dQ rows of one (b, kv head): contiguous in (B, H, T, D)
    let mut part = pool::filled(g.b * g.hkv * ng * qblock, T::zero());
    // Tasks: (b, kv head, key-tile group), each owning disjoint dK/dV tiles and its partial dQ.
    let mut tasks: Vec<Task<T>> = Vec::with_capacity(g.b * g.hkv * ng);
    let mut parts = part.chunks_mut(qblock);
    for (bkv, (dk_h, dv_h)) in dk.chunks_mut(s * d).zip(dv.chunks_mut(s * d)).enumerate() {
        let first = tasks.len();
        for _ in 0..ng {
            let Some(pq) = parts.next() else { break };
            tasks.push((bkv / g.hkv, bkv % g.hkv, pq, Vec::new()));
        }
        for (kt, (dkt, dvt)) in dk_h.chunks_mut(BC * d).zip(dv_h.chunks_mut(BC * d)).enumerate() {
            if let Some(task) = tasks.get_mut(first + kt % ng) {
                task.3.push((kt, dkt, dvt));
            }
        }
    }
    tasks.into_par_iter().for_each(|(bi, hk, dqp, tiles)| {
        let (mut p, mut ds) = (scratch::take(BR * BC), scratch::take(BR * BC));
        // K and V tiles transposed (d×BC), once per key tile, for the two QKᵀ-shaped products
        let (mut ktt, mut vtt) = (scratch::filled(d * BC, T::zero()), scratch::filled(d * BC, T::zero()));
        let kvo = (bi * g.hkv + hk) * s * d;
        for (kt, dkt, dvt) in tiles {
            let k0 = kt * BC;
            let bc = dkt.len() / d;
            for j in 0..bc {
                let (kr, vr) = (&kd[kvo + (k0 + j) * d..][..d], &vd[kvo + (k0 + j) * d..][..d]);
                kr.iter().zip(vr).enumerate().for_each(|(c, (&x, &y))| {
                    ktt[c * BC + j] = x;
                    vtt[c * BC + j] = y;
                });
            }
            let bufs = (qd, &ktt[..], &vtt[..], dod);
            for hl in 0..group {
                let hi = hk * group + hl;
                let bh = bi * g.h + hi;
                for qt in 0..t.div_ceil(BR) {
                    let q0 = qt * BR;
                    let br = BR.min(t - q0);
                    if g.key_tiles(q0, br) <= kt
                        || !tile_grads(&g, bufs, (ld, &dsum), (bi, hi, q0, br, k0, bc), &mut p, &mut ds)
                    {
                        continue;
                    }
                    let qo = (bh * t + q0) * d;
                    // dV += P̃ᵀ·dO ; dK += scale·dSᵀ·Q ; dQ += scale·dS·K
                    mm(dvt, (d, 1), true, &p, 1, BC, &dod[qo..], d, 1, (bc, d, br), T::one());
                    mm(dkt, (d, 1), true, &ds, 1, BC, &qd[qo..], d, 1, (bc, d, br), g.scale);
                    let po = (hl * t + q0) * d;
                    mm(&mut dqp[po..], (d, 1), true, &ds, BC, 1, &kd[kvo + k0 * d..], d, 1, (br, d, bc), g.scale);
                }
            }
        }
        [p, ds, ktt, vtt].into_iter().for_each(scratch::give);
    });
    // dQ = Σ over key-tile groups of the partials, in group order (deterministic).
    dq.par_chunks_mut(qblock).enumerate().for_each(|(bkv, dqb)| {
        for gi in 0..ng {
            let src = &part[(bkv * ng + gi) * qblock..(bkv * ng + gi + 1) * qblock];
            dqb.iter_mut().zip(src).for_each(|(a, &b)| *a += b);
        }
    });
    pool::give(part);
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
