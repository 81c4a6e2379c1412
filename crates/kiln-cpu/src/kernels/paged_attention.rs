//! Paged attention and the paged cache write (Kwon et al. 2023, vLLM; seed 003 "paged KV
//! cache"). The maths is on `Tensor::paged_attention` in kiln-core; here is the CPU kernel.
//!
//! Decoding is memory-bound: every key and value row is read once per (query token, kv head),
//! converted to f32 on the fly (the cache may be f16/bf16, or int8 rows with a scale each), and
//! used by all `G = H/Hkv` query heads of its group. Work items are (query token, kv head)
//! pairs, in parallel; each scores its `L` keys (the last `w` with a sliding window) for its `G`
//! heads into per-thread scratch, normalises, and accumulates the values.

use super::float::exp_f32;
use super::PAR_MIN;
use crate::storage::{contiguous_slice, cpu, cpu_mut, CpuStorage};
use half::{bf16, f16};
use kiln_core::backend::{Arg, BoxStorage, PagedAttentionArgs, Storage};
use kiln_core::ops::{q8_quantize_row, q8_row_bytes};
use kiln_core::{Error, Layout, Result};
use rayon::prelude::*;

/// A key/value cache element: f32, f16 or bf16, widened to f32 for arithmetic.
trait KvElem: Copy + Send + Sync {
    fn to_f32(self) -> f32;
    fn from_f32(x: f32) -> Self;
}

impl KvElem for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(x: f32) -> f32 {
        x
    }
}

impl KvElem for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(x: f32) -> f16 {
        f16::from_f32(x)
    }
}

impl KvElem for bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(x: f32) -> bf16 {
        bf16::from_f32(x)
    }
}

fn ids<'a>(op: &'static str, a: Arg<'a>) -> Result<&'a [i64]> {
    match cpu(op, a.0)? {
        CpuStorage::I64(d) => contiguous_slice(op, d, a.1),
        o => Err(Error::UnsupportedDType { op, dtype: o.dtype(), msg: "paged metadata must be i64" }),
    }
}

fn f32s<'a>(op: &'static str, a: Arg<'a>) -> Result<&'a [f32]> {
    match cpu(op, a.0)? {
        CpuStorage::F32(d) => contiguous_slice(op, d, a.1),
        o => Err(Error::UnsupportedDType { op, dtype: o.dtype(), msg: "expected f32" }),
    }
}

/// `Σ a[i]·f(b[i])` with 8 independent lanes (vectorises; f16/bf16/int8 widen per element).
#[inline(always)]
fn dot<T: Copy>(a: &[f32], b: &[T], f: impl Fn(T) -> f32) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for i in 0..8 {
            acc[i] += x[i] * f(y[i]);
        }
    }
    let mut s = acc.iter().sum::<f32>();
    for (x, &y) in ar.iter().zip(br) {
        s += x * f(y);
    }
    s
}

/// The rows of a key or value cache: row `r` = (slot, kv head) `slot·Hkv + kh`, `D` values.
trait KvRows: Sync {
    /// `q · row r`.
    fn dot(&self, r: usize, q: &[f32]) -> f32;
    /// `out += p · row r`.
    fn axpy(&self, r: usize, p: f32, out: &mut [f32]);
}

/// An f32/f16/bf16 cache: `D` elements per row.
struct Dense<'a, T>(&'a [T], usize);

impl<T: KvElem> KvRows for Dense<'_, T> {
    #[inline(always)]
    fn dot(&self, r: usize, q: &[f32]) -> f32 {
        dot(q, &self.0[r * self.1..(r + 1) * self.1], T::to_f32)
    }
    #[inline(always)]
    fn axpy(&self, r: usize, p: f32, out: &mut [f32]) {
        for (x, y) in out.iter_mut().zip(&self.0[r * self.1..(r + 1) * self.1]) {
            *x += p * y.to_f32();
        }
    }
}

/// An int8 cache: per row an f32 scale and `D` codes (`kiln_core::ops::q8_quantize_row`).
struct Int8<'a>(&'a [u8], usize);

impl Int8<'_> {
    #[inline(always)]
    fn row(&self, r: usize) -> (f32, &[u8]) {
        let w = q8_row_bytes(self.1);
        let b = &self.0[r * w..(r + 1) * w];
        (f32::from_le_bytes([b[0], b[1], b[2], b[3]]), &b[4..])
    }
}

impl KvRows for Int8<'_> {
    #[inline(always)]
    fn dot(&self, r: usize, q: &[f32]) -> f32 {
        let (scale, codes) = self.row(r);
        scale * dot(q, codes, |c| (c as i8) as f32)
    }
    #[inline(always)]
    fn axpy(&self, r: usize, p: f32, out: &mut [f32]) {
        let (scale, codes) = self.row(r);
        let ps = p * scale;
        for (x, &c) in out.iter_mut().zip(codes) {
            *x += ps * (c as i8) as f32;
        }
    }
}

/// The physical slot of key `j` of the sequence whose block table is `table`.
#[inline(always)]
fn slot(table: &[i64], bs: usize, j: usize) -> usize {
    table[j / bs] as usize * bs + j % bs
}

/// Checks every table entry and visible length against the cache before any work.
fn check_meta(tables: &[i64], mb: usize, seqs: &[i64], lens: &[i64], slots: usize, bs: usize) -> Result<()> {
    let n_seqs = tables.len().checked_div(mb).unwrap_or(0);
    let blocks = slots / bs;
    if let Some(&b) = tables.iter().find(|&&b| b < 0 || b as usize >= blocks) {
        return Err(Error::IndexOutOfRange { op: "paged_attention", index: b, size: blocks });
    }
    for (&s, &len) in seqs.iter().zip(lens) {
        if s < 0 || s as usize >= n_seqs {
            return Err(Error::IndexOutOfRange { op: "paged_attention", index: s, size: n_seqs });
        }
        if len < 1 || len as usize > mb * bs {
            return Err(Error::Invalid {
                op: "paged_attention",
                msg: format!("a query token sees {len} keys; its table holds 1..={}", mb * bs),
            });
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn attend<R: KvRows>(
    a: &PagedAttentionArgs,
    q: &[f32],
    (h, hkv, d): (usize, usize, usize),
    k: &R,
    v: &R,
    (tables, mb): (&[i64], usize),
    seqs: &[i64],
    lens: &[i64],
) -> Vec<f32> {
    let (g, bs, scale) = (h / hkv, a.block_size, a.scale as f32);
    let mut out = vec![0f32; seqs.len() * h * d];
    // One work item: query token n, kv head kh → the G output rows of that head group.
    let item = |scores: &mut Vec<f32>, idx: usize, o: &mut [f32]| {
        let (n, kh) = (idx / hkv, idx % hkv);
        let table = &tables[seqs[n] as usize * mb..(seqs[n] as usize + 1) * mb];
        // keys first..first + len (the last `window` of them with a sliding window)
        let first = a.window.map_or(0, |w| (lens[n] as usize).saturating_sub(w));
        let len = lens[n] as usize - first;
        let qg = &q[(n * h + kh * g) * d..(n * h + (kh + 1) * g) * d]; // (G, D)
        scores.clear();
        scores.resize(g * len, 0.0); // (G, L)
        for j in 0..len {
            let row = slot(table, bs, first + j) * hkv + kh;
            for (gi, qr) in qg.chunks_exact(d).enumerate() {
                scores[gi * len + j] = k.dot(row, qr) * scale;
            }
        }
        for sr in scores.chunks_exact_mut(len) {
            let m = sr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for s in sr.iter_mut() {
                *s = exp_f32(*s - m);
                sum += *s;
            }
            let inv = 1.0 / sum;
            sr.iter_mut().for_each(|s| *s *= inv);
        }
        o.fill(0.0);
        for j in 0..len {
            let row = slot(table, bs, first + j) * hkv + kh;
            for (gi, or) in o.chunks_exact_mut(d).enumerate() {
                v.axpy(row, scores[gi * len + j], or);
            }
        }
    };
    let work: usize = lens.iter().map(|&l| l as usize).sum::<usize>() * h * d;
    if work >= PAR_MIN {
        out.par_chunks_mut(g * d).enumerate().for_each_init(Vec::new, |s, (i, o)| item(s, i, o));
    } else {
        let mut s = Vec::new();
        out.chunks_mut(g * d).enumerate().for_each(|(i, o)| item(&mut s, i, o));
    }
    out
}

/// See `FusedOps::paged_attention`.
pub(crate) fn paged_attention(
    a: &PagedAttentionArgs,
    q: Arg,
    k: Arg,
    v: Arg,
    block_tables: Arg,
    token_seq: Arg,
    token_len: Arg,
) -> Result<BoxStorage> {
    const OP: &str = "paged_attention";
    let (qs, kd) = (q.1.shape(), k.1.shape());
    let (h, hkv, d) = (qs[1], kd[1], qs[2]);
    let qv = f32s(OP, q)?;
    let mb = block_tables.1.shape().get(1).copied().unwrap_or(0);
    let (tables, seqs, lens) = (ids(OP, block_tables)?, ids(OP, token_seq)?, ids(OP, token_len)?);
    check_meta(tables, mb, seqs, lens, kd[0], a.block_size)?;
    let geo = (h, hkv, d);
    let out = match (cpu(OP, k.0)?, cpu(OP, v.0)?) {
        (CpuStorage::F32(kc), CpuStorage::F32(vc)) => {
            let (kc, vc) = (Dense(contiguous_slice(OP, kc, k.1)?, d), Dense(contiguous_slice(OP, vc, v.1)?, d));
            attend(a, qv, geo, &kc, &vc, (tables, mb), seqs, lens)
        }
        (CpuStorage::F16(kc), CpuStorage::F16(vc)) => {
            let (kc, vc) = (Dense(contiguous_slice(OP, kc, k.1)?, d), Dense(contiguous_slice(OP, vc, v.1)?, d));
            attend(a, qv, geo, &kc, &vc, (tables, mb), seqs, lens)
        }
        (CpuStorage::BF16(kc), CpuStorage::BF16(vc)) => {
            let (kc, vc) = (Dense(contiguous_slice(OP, kc, k.1)?, d), Dense(contiguous_slice(OP, vc, v.1)?, d));
            attend(a, qv, geo, &kc, &vc, (tables, mb), seqs, lens)
        }
        (CpuStorage::U8(kc), CpuStorage::U8(vc)) => {
            let (kc, vc) = (Int8(contiguous_slice(OP, kc, k.1)?, d), Int8(contiguous_slice(OP, vc, v.1)?, d));
            attend(a, qv, geo, &kc, &vc, (tables, mb), seqs, lens)
        }
        (o, _) => {
            return Err(Error::UnsupportedDType {
                op: OP,
                dtype: o.dtype(),
                msg: "KV cache must be f32, f16, bf16 or int8 (u8 rows)",
            })
        }
    };
    Ok(Box::new(CpuStorage::F32(out)))
}

fn write_rows<T: KvElem>(cache: &mut [T], w: usize, slots: &[i64], src: &[f32]) {
    for (&s, row) in slots.iter().zip(src.chunks_exact(w)) {
        let dst = &mut cache[s as usize * w..(s as usize + 1) * w];
        for (x, &y) in dst.iter_mut().zip(row) {
            *x = T::from_f32(y);
        }
    }
}

/// See `FusedOps::paged_write`.
pub(crate) fn paged_write(cache: &mut dyn Storage, cl: &Layout, slots: Arg, src: Arg) -> Result<()> {
    const OP: &str = "paged_write";
    let rows = cl.shape().first().copied().unwrap_or(0);
    let w: usize = cl.shape().iter().skip(1).product();
    let (slots, src) = (ids(OP, slots)?, f32s(OP, src)?);
    if let Some(&s) = slots.iter().find(|&&s| s < 0 || s as usize >= rows) {
        return Err(Error::IndexOutOfRange { op: OP, index: s, size: rows });
    }
    let Some((lo, hi)) = cl.contiguous_range() else {
        return Err(Error::Invalid { op: OP, msg: "the cache must be contiguous".into() });
    };
    match cpu_mut(OP, cache)? {
        CpuStorage::F32(c) => write_rows(&mut c[lo..hi], w, slots, src),
        CpuStorage::F16(c) => write_rows(&mut c[lo..hi], w, slots, src),
        CpuStorage::BF16(c) => write_rows(&mut c[lo..hi], w, slots, src),
        CpuStorage::U8(c) => {
            // (slots, Hkv, D + 4) bytes from (N, Hkv, D) values: one scaled row per head.
            let d = cl.shape().last().copied().unwrap_or(0).saturating_sub(4);
            if d == 0 {
                return Err(Error::Invalid {
                    op: OP,
                    msg: format!("int8 cache rows of {:?} hold no values", cl.shape()),
                });
            }
            let c = &mut c[lo..hi];
            for (&s, row) in slots.iter().zip(src.chunks_exact(w / q8_row_bytes(d) * d)) {
                let dst = &mut c[s as usize * w..(s as usize + 1) * w];
                for (o, x) in dst.chunks_exact_mut(q8_row_bytes(d)).zip(row.chunks_exact(d)) {
                    q8_quantize_row(x, o);
                }
            }
        }
        o => {
            return Err(Error::UnsupportedDType {
                op: OP,
                dtype: o.dtype(),
                msg: "KV cache must be f32, f16, bf16 or int8 (u8 rows)",
            })
        }
    }
    Ok(())
}
