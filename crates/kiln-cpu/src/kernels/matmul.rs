//! Batched GEMM through the `gemm` crate (AVX-512 micro-kernels with `x86-v4`), strided operands
//! read in place. Large products use all threads inside one GEMM; many small ones (attention's
//! per-head products) run one GEMM per thread.

use super::float::KFloat;
use crate::pool;
use crate::storage::{dispatch_float, Elem};
use crate::CpuBackend;
use gemm::Parallelism;
use kiln_core::backend::{Arg, BoxStorage, MatmulOps, Storage};
use kiln_core::quant::QuantMatrix;
use kiln_core::{Error, Layout, Result};
use rayon::prelude::*;

/// Below this many multiply-adds (all batch matrices together) a matmul runs single-threaded.
/// Measured on a 2-core AVX-512 machine (Zen 5, `gemm` 0.19 x86-v4): one thread reaches ~245
/// GFLOP/s from 48³ up while `Parallelism::Rayon(2)` is slower up to 128³ (2²¹, rayon wake-up
/// and split overheads) and wins from 160³ (2²²) on: 308 vs 257 GFLOP/s, 427 vs 258 at 256³.
const GEMM_PAR_MIN: usize = 3 << 20;
/// Per-matrix multiply-adds below which a batch always runs one single-threaded GEMM per rayon
/// task: threading small GEMMs scales poorly (4×(256×256)·(256×64): 362 GFLOP/s batch-parallel
/// vs 187 threading each), so batch parallelism wins even when the batch does not divide evenly.
const BATCH_EACH_MIN: usize = 1 << 23;

/// How a (batched) matmul is threaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// Everything on the calling thread.
    Serial,
    /// One single-threaded GEMM per rayon task.
    BatchParallel,
    /// The batch in order, each GEMM split over this many threads.
    EachThreaded(usize),
    /// One GEMM whose reduction dim is split into this many contiguous parts, one single-threaded
    /// GEMM per part, the partial products then summed in part order.
    SplitK(usize),
}

/// A single product whose reduction dim is at least this many times its larger output dim is
/// split along k: weight gradients `dW = gᵀ·x` reduce over all B·T rows into a small matrix, a
/// shape on which threading the output tiles leaves the cores waiting on packing.
const SPLIT_K_RATIO: usize = 2;

/// Picks the threading of `batch` products of `work` multiply-adds each on `threads` threads.
/// Large matrices batch-parallelise only when the batch splits evenly (or is large enough that
/// the imbalance is small): 3×1024²·64 runs at 259 GFLOP/s batch-parallel vs 389 threading each.
fn plan(batch: usize, (m, k, n): (usize, usize, usize), threads: usize) -> Plan {
    let work = m * k * n;
    if threads <= 1 || batch.saturating_mul(work) < GEMM_PAR_MIN {
        Plan::Serial
    } else if batch == 1 && k >= SPLIT_K_RATIO * m.max(n) {
        Plan::SplitK(threads)
    } else if batch > 1 && (work < BATCH_EACH_MIN || batch.is_multiple_of(threads) || batch >= 4 * threads) {
        Plan::BatchParallel
    } else if work >= GEMM_PAR_MIN {
        Plan::EachThreaded(threads)
    } else {
        Plan::Serial
    }
}

/// Weight elements (k·n) from which a GEMV splits its outputs across threads.
const GEMV_PAR_MIN: usize = 1 << 15;

/// `c (n) = a (k) · B (k, n)` (`c +=` when `acc`) for one row `a` and a `B` whose columns are
/// contiguous: `B = Wᵀ` of a row-major (n, k) weight, column `j` = weight row `j` at `w[j·ws..]`
/// — how `Linear` and the LM head multiply while decoding one token. Each output is one dot
/// product of `a` with a weight row, so the weights stream once, in order, split by output across
/// the threads: decoding's matrix–vector products are memory-bound, and a GEMM would first pack
/// every panel (and, below its threading threshold, run on one core).
fn gemv_t<T: KFloat>(c: &mut [T], a: &[T], w: &[T], ws: usize, acc: bool) {
    let k = a.len();
    // 16 independent lanes: two AVX2 vectors of partial sums, no reassociation needed.
    let dot = |row: &[T]| {
        let mut lanes = [T::zero(); 16];
        let (ac, rc) = (a.chunks_exact(16), row.chunks_exact(16));
        let (ar, rr) = (ac.remainder(), rc.remainder());
        for (x, y) in ac.zip(rc) {
            for i in 0..16 {
                lanes[i] += x[i] * y[i];
            }
        }
        let mut s = lanes.iter().copied().sum::<T>();
        for (&x, &y) in ar.iter().zip(rr) {
            s += x * y;
        }
        s
    };
    let fill = |j0: usize, out: &mut [T]| {
        for (j, o) in out.iter_mut().enumerate() {
            let row = &w[(j0 + j) * ws..(j0 + j) * ws + k];
            *o = if acc { *o + dot(row) } else { dot(row) };
        }
    };
    let n = c.len();
    let threads = rayon::current_num_threads();
    if threads <= 1 || k * n < GEMV_PAR_MIN {
        fill(0, c);
    } else {
        let chunk = n.div_ceil(4 * threads).max(16);
        c.par_chunks_mut(chunk).enumerate().for_each(|(i, out)| fill(i * chunk, out));
    }
}

/// Storage offsets of every batch matrix (all dims but the last two).
fn batch_offsets(l: &Layout) -> Vec<usize> {
    let r = l.rank();
    Layout::new(l.shape()[..r - 2].to_vec(), l.strides()[..r - 2].to_vec(), l.offset()).offsets().collect()
}

/// One `C = A·B` (or `C += A·B` when `acc`) with explicit strides, `C` contiguous (row stride `n`).
///
/// # Safety
/// `a`/`b` must be valid for every element the strides reach (checked by the caller through the
/// layouts) and `c` for `m·n` writes.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_one<T: KFloat>(
    m: usize,
    n: usize,
    k: usize,
    c: *mut T,
    a: *const T,
    ars: isize,
    acs: isize,
    b: *const T,
    brs: isize,
    bcs: isize,
    acc: bool,
    par: Parallelism,
) {
    gemm::gemm(m, n, k, c, 1, n as isize, acc, a, acs, ars, b, bcs, brs, T::one(), T::one(), false, false, false, par);
}

/// `A·B`, plus `bias` (N,) on every output row when given.
fn matmul_t<T: Elem>(
    a: &dyn Storage,
    la: &Layout,
    b: &dyn Storage,
    lb: &Layout,
    bias: Option<(&dyn Storage, &Layout)>,
) -> Result<BoxStorage> {
    let bad = || Error::ShapeMismatch { op: "matmul", lhs: la.shape().to_vec(), rhs: lb.shape().to_vec() };
    let (x, y) = (T::vec_of(a).ok_or_else(bad)?, T::vec_of(b).ok_or_else(bad)?);
    let r = la.rank();
    if r < 2 || lb.rank() != r || la.shape()[..r - 2] != lb.shape()[..r - 2] || la.shape()[r - 1] != lb.shape()[r - 2] {
        return Err(bad());
    }
    let (m, k, n) = (la.shape()[r - 2], la.shape()[r - 1], lb.shape()[r - 1]);
    for (l, len) in [(la, x.len()), (lb, y.len())] {
        let reach =
            l.offset() + l.shape().iter().zip(l.strides()).map(|(&d, &s)| d.saturating_sub(1) * s).sum::<usize>();
        if l.numel() > 0 && reach >= len {
            return Err(Error::BadShape {
                op: "matmul",
                shape: l.shape().to_vec(),
                msg: "view exceeds storage".into(),
            });
        }
    }
    let (ars, acs) = (la.strides()[r - 2] as isize, la.strides()[r - 1] as isize);
    let (brs, bcs) = (lb.strides()[r - 2] as isize, lb.strides()[r - 1] as isize);
    let (oa, ob) = (batch_offsets(la), batch_offsets(lb));
    // Bias rows: every output row starts as the bias and the GEMM accumulates onto it.
    let bias_row: Option<Vec<T>> = match bias {
        None => None,
        Some((bs, bl)) => {
            let bv = T::vec_of(bs).ok_or_else(bad)?;
            if bl.shape() != [n] || (n > 0 && bl.offset() + (n - 1) * bl.strides()[0] >= bv.len()) {
                return Err(Error::ShapeMismatch { op: "matmul_bias", lhs: vec![n], rhs: bl.shape().to_vec() });
            }
            Some((0..n).map(|j| bv[bl.offset() + j * bl.strides()[0]]).collect())
        }
    };
    let acc = bias_row.is_some();
    if m * n == 0 || k == 0 {
        let mut out = crate::pool::filled(oa.len() * m * n, T::zero());
        if let Some(row) = &bias_row {
            out.chunks_mut(n.max(1)).for_each(|r| r.copy_from_slice(row));
        }
        return Ok(T::wrap(out));
    }
    // Fully overwritten (gemm with read_dst = false), or pre-filled with the bias rows.
    let mut out = crate::pool::take(oa.len() * m * n);
    if let Some(row) = &bias_row {
        out.par_chunks_mut(n * 64).for_each(|rows| rows.chunks_mut(n).for_each(|r| r.copy_from_slice(row)));
    }
    // The product of A's columns and B's rows [k0, k0 + kl) of one batch matrix.
    let run_k = |c: &mut [T], a0: usize, b0: usize, (k0, kl): (usize, usize), acc: bool, par: Parallelism| {
        let (a0, b0) = (a0 as isize + k0 as isize * acs, b0 as isize + k0 as isize * brs);
        // SAFETY: the reach check above keeps every strided read inside `x`/`y` (k0 + kl ≤ k, and
        // strides are non-negative); `c` has m·n slots.
        unsafe {
            let (pa, pb) = (x.as_ptr().offset(a0), y.as_ptr().offset(b0));
            gemm_one(m, n, kl, c.as_mut_ptr(), pa, ars, acs, pb, brs, bcs, acc, par)
        }
    };
    let run = |c: &mut [T], a0: usize, b0: usize, par: Parallelism| run_k(c, a0, b0, (0, k), acc, par);
    #[cfg(target_arch = "x86_64")]
    if (2..=super::skinny::SKINNY_MAX_M).contains(&m)
        && oa.len() == 1
        && acs == 1
        && brs == 1
        && bcs >= k as isize
        && ars >= k as isize
        && super::skinny::available()
    {
        // A few rows against a row-major weight (a batched decoding step): the unpacked
        // register-tiled dot products of `skinny.rs`. The reach check above keeps every row
        // a[oa + i·ars..][..k] and w[ob + j·bcs..][..k] in bounds.
        let (xf, wf) = (f32::vec_of(a), f32::vec_of(b));
        if let (Some(xf), Some(wf), Some(o)) = (xf, wf, (&mut out as &mut dyn std::any::Any).downcast_mut::<Vec<f32>>())
        {
            super::skinny::skinny_t(o, &xf[oa[0]..], ars as usize, m, &wf[ob[0]..], bcs as usize, k, acc);
            return Ok(T::wrap(out));
        }
    }
    if m == 1 && oa.len() == 1 && acs == 1 && brs == 1 && bcs >= k as isize {
        // One row against a row-major weight: the memory-bound matrix–vector product.
        // The reach check above keeps a[oa..oa + k] and every weight row w[ob + j·bcs..][..k] in bounds.
        let (w0, ws) = (ob[0], bcs as usize);
        gemv_t(&mut out, &x[oa[0]..oa[0] + k], &y[w0..w0 + (n - 1) * ws + k], ws, acc);
        return Ok(T::wrap(out));
    }
    match plan(oa.len(), (m, k, n), rayon::current_num_threads()) {
        Plan::SplitK(t) => {
            let part = k.div_ceil(t);
            let mut partials: Vec<Vec<T>> = (1..t).map(|_| crate::pool::take(m * n)).collect();
            let mut targets: Vec<&mut [T]> = vec![&mut out[..]];
            targets.extend(partials.iter_mut().map(|p| &mut p[..]));
            targets.into_par_iter().enumerate().for_each(|(i, c)| {
                let k0 = (i * part).min(k);
                // the bias (if any) is in the first part's output only
                run_k(c, oa[0], ob[0], (k0, part.min(k - k0)), acc && i == 0, Parallelism::None)
            });
            for p in partials {
                out.iter_mut().zip(&p).for_each(|(o, &v)| *o += v);
                crate::pool::give(p);
            }
        }
        Plan::BatchParallel => out
            .par_chunks_mut(m * n)
            .zip(oa.par_iter().zip(ob.par_iter()))
            .for_each(|(c, (&a0, &b0))| run(c, a0, b0, Parallelism::None)),
        p => {
            let par = if let Plan::EachThreaded(t) = p { Parallelism::Rayon(t) } else { Parallelism::None };
            for (c, (&a0, &b0)) in out.chunks_mut(m * n).zip(oa.iter().zip(ob.iter())) {
                run(c, a0, b0, par);
            }
        }
    }
    Ok(T::wrap(out))
}

impl MatmulOps for CpuBackend {
    fn matmul(&self, a: &dyn Storage, la: &Layout, b: &dyn Storage, lb: &Layout) -> Result<BoxStorage> {
        dispatch_float!("matmul", a.dtype(), matmul_t(a, la, b, lb, None))
    }

    fn matmul_bias(
        &self,
        a: &dyn Storage,
        la: &Layout,
        b: &dyn Storage,
        lb: &Layout,
        bias: &dyn Storage,
        lbias: &Layout,
    ) -> Result<BoxStorage> {
        dispatch_float!("matmul_bias", a.dtype(), matmul_t(a, la, b, lb, Some((bias, lbias))))
    }

    fn quantized_matmul(&self, x: Arg, w: &dyn QuantMatrix) -> Result<BoxStorage> {
        let xs = <f32 as Elem>::slice("quantized_matmul", x)?;
        let (n, k) = w.shape();
        let m = xs.len().checked_div(k).unwrap_or(0);
        let mut out = pool::take::<f32>(m * n); // every element is written by matmul_t
        w.matmul_t(xs, m, &mut out)?;
        Ok(f32::wrap(out))
    }
}

#[cfg(test)]
mod tests {
    use super::{plan, Plan};

    /// Every plan computes the same products as a naive loop (strided views included).
    #[test]
    fn plans_match_naive() -> kiln_core::Result<()> {
        use kiln_core::{DType, Tensor};
        let dev = crate::cpu();
        // (batch, m, k, n): serial, batch-parallel (uneven batch), split inside one GEMM, split
        // along k (odd k: uneven parts).
        for (bt, m, k, n) in [(2, 5, 7, 3), (3, 128, 128, 64), (1, 256, 64, 256), (1, 96, 1001, 40)] {
            let threads = rayon::current_num_threads();
            let p = plan(bt, (m, k, n), threads);
            let a = Tensor::randn(&[bt, k, m], 0.0, 1.0, DType::F32, 1, &dev)?.transpose(1, 2)?;
            let b = Tensor::randn(&[bt, k, n], 0.0, 1.0, DType::F32, 2, &dev)?;
            let c = a.matmul(&b)?.to_vec::<f32>()?;
            let (av, bv) = (a.contiguous()?.to_vec::<f32>()?, b.to_vec::<f32>()?);
            for i in 0..bt {
                for r in 0..m {
                    for j in 0..n {
                        let want: f64 =
                            (0..k).map(|q| av[i * m * k + r * k + q] as f64 * bv[i * k * n + q * n + j] as f64).sum();
                        let got = c[i * m * n + r * n + j] as f64;
                        assert!((got - want).abs() < 1e-3 * (1.0 + want.abs()), "{p:?} [{i},{r},{j}]: {got} vs {want}");
                    }
                }
            }
        }
        Ok(())
    }

    /// `matmul_bias` (the bias pre-filled, the GEMM accumulating onto it) equals the product plus
    /// the broadcast bias under every plan, split-K included (bias in the first part only).
    #[test]
    /// A few rows against a row-major weight (`Linear` while decoding a small batch) take the
    /// unpacked skinny kernel: with a bias and a padded activation row stride, against f64.
    fn skinny_rows_match_naive() -> kiln_core::Result<()> {
        use kiln_core::{DType, Tensor};
        let dev = crate::cpu();
        for (m, k, n) in [(2, 9, 5), (7, 100, 37), (24, 576, 70)] {
            let x = Tensor::randn(&[m, k + 3], 0.0, 1.0, DType::F32, 6, &dev)?.narrow(1, 1, k)?;
            let w = Tensor::randn(&[n, k], 0.0, 1.0, DType::F32, 7, &dev)?;
            let b = Tensor::randn(&[n], 0.0, 1.0, DType::F32, 8, &dev)?;
            let got = x.linear(&w, Some(&b))?.to_vec::<f32>()?;
            let (xv, wv, bv) = (x.contiguous()?.to_vec::<f32>()?, w.to_vec::<f32>()?, b.to_vec::<f32>()?);
            for r in 0..m {
                for j in 0..n {
                    let want = bv[j] as f64 + (0..k).map(|q| xv[r * k + q] as f64 * wv[j * k + q] as f64).sum::<f64>();
                    let g = got[r * n + j] as f64;
                    assert!((g - want).abs() < 1e-4 * (1.0 + want.abs()), "({m},{k},{n}) [{r},{j}]: {g} vs {want}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn bias_under_every_plan() -> kiln_core::Result<()> {
        use kiln_core::{DType, Tensor};
        let dev = crate::cpu();
        for (m, k, n) in [(5, 7, 3), (256, 64, 256), (96, 1001, 40), (300, 128, 384)] {
            let x = Tensor::randn(&[m, k], 0.0, 1.0, DType::F32, 3, &dev)?;
            let w = Tensor::randn(&[n, k], 0.0, 1.0, DType::F32, 4, &dev)?;
            let b = Tensor::randn(&[n], 0.0, 1.0, DType::F32, 5, &dev)?;
            let fused = x.linear(&w, Some(&b))?.to_vec::<f32>()?;
            let plain = x.matmul(&w.t()?)?.add(&b)?.to_vec::<f32>()?;
            let worst = fused.iter().zip(&plain).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            let p = plan(1, (m, k, n), rayon::current_num_threads());
            assert!(worst < 1e-4, "{p:?} ({m},{k},{n}): differs by {worst}");
        }
        Ok(())
    }

    #[test]
    fn threading_plan() {
        // Tiny products stay on the calling thread.
        assert_eq!(plan(1, (64, 64, 64), 2), Plan::Serial);
        assert_eq!(plan(8, (64, 64, 64), 2), Plan::Serial);
        assert_eq!(plan(1, (1024, 1024, 1024), 1), Plan::Serial);
        // One large GEMM: split inside.
        assert_eq!(plan(1, (2048, 768, 768), 2), Plan::EachThreaded(2));
        // A weight gradient (reduction over B·T rows into a small matrix): split along k.
        assert_eq!(plan(1, (512, 2048, 128), 2), Plan::SplitK(2));
        // Attention's per-head products: one GEMM per task.
        assert_eq!(plan(96, (256, 64, 256), 2), Plan::BatchParallel);
        assert_eq!(plan(3, (256, 64, 256), 2), Plan::BatchParallel);
        // Large matrices, uneven batch: split each; even batch: one per task.
        assert_eq!(plan(3, (1024, 64, 1024), 2), Plan::EachThreaded(2));
        assert_eq!(plan(4, (1024, 64, 1024), 2), Plan::BatchParallel);
    }
}
