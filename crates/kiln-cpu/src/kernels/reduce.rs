//! Reductions over any set of dims. The layout is permuted so the reduced dims come last; each
//! output element then reduces one contiguous run of the permuted order. Sums accumulate in `f64`.

use super::float::sum_f64_lanes;
use super::PAR_MIN;
use crate::storage::{dispatch_float, CpuStorage, Elem};
use crate::CpuBackend;
use kiln_core::backend::{BoxStorage, ReduceOp, ReduceOps, Storage};
use kiln_core::{Error, Layout, Result};
use rayon::prelude::*;

fn reduce_t<T: Elem>(op: ReduceOp, s: &dyn Storage, l: &Layout, dims: &[usize]) -> Result<BoxStorage> {
    let x = T::vec_of(s).ok_or(Error::UnsupportedDType { op: "reduce", dtype: s.dtype(), msg: "f32 or f64" })?;
    let rank = l.rank();
    if dims.iter().any(|&d| d >= rank) {
        return Err(Error::DimOutOfRange { op: "reduce", dim: dims.iter().copied().max().unwrap_or(0) as isize, rank });
    }
    if matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) && dims.len() != 1 {
        return Err(Error::Invalid { op: "reduce", msg: "argmax/argmin take exactly one dim".into() });
    }
    let mut perm: Vec<usize> = (0..rank).filter(|d| !dims.contains(d)).collect();
    perm.extend_from_slice(dims);
    let lp = l.permute(&perm)?;
    let inner: usize = dims.iter().map(|&d| l.shape()[d]).product();
    let outer: usize = l.shape().iter().enumerate().filter(|(i, _)| !dims.contains(i)).map(|(_, &n)| n).product();

    // One run of `inner` values per output element.
    let run = |vals: &mut dyn Iterator<Item = T>| -> f64 {
        match op {
            ReduceOp::Sum => vals.map(|v| v.f64()).sum(),
            ReduceOp::Max => vals.fold(f64::NEG_INFINITY, |m, v| if v.f64() > m || v.is_nan() { v.f64() } else { m }),
            ReduceOp::Min => vals.fold(f64::INFINITY, |m, v| if v.f64() < m || v.is_nan() { v.f64() } else { m }),
            ReduceOp::ArgMax | ReduceOp::ArgMin => {
                let mut best = (0usize, None::<f64>);
                for (i, v) in vals.enumerate() {
                    let v = v.f64();
                    let better = match best.1 {
                        None => true,
                        Some(b) => {
                            if op == ReduceOp::ArgMax {
                                v > b
                            } else {
                                v < b
                            }
                        }
                    };
                    if better {
                        best = (i, Some(v));
                    }
                }
                best.0 as f64
            }
        }
    };

    let mut out: Vec<f64> = crate::pool::take(outer);
    let leading = dims.len() < rank && dims.iter().enumerate().all(|(i, &d)| d == i);
    if let (ReduceOp::Sum, true, Some((a, b))) = (op, leading, l.contiguous_range()) {
        // Sum over leading dims of a contiguous tensor (every broadcast backward: bias gradients,
        // position tables): column sums of an (inner × outer) row-major matrix.
        column_sums(&x[a..b], outer, &mut out);
    } else if let Some((a, b)) = lp.contiguous_range() {
        // Reduced dims are the trailing contiguous run: parallel over rows.
        let data = &x[a..b];
        if inner > 0 {
            // sums take 8 independent lanes (vectorised); the rest walk the run
            let f = |(o, chunk): (&mut f64, &[T])| {
                *o = match op {
                    ReduceOp::Sum => sum_f64_lanes(chunk, chunk, |x, _| x.f64()),
                    _ => run(&mut chunk.iter().copied()),
                }
            };
            if data.len() >= PAR_MIN {
                out.par_iter_mut().zip(data.par_chunks(inner)).for_each(f);
            } else {
                out.iter_mut().zip(data.chunks(inner)).for_each(f);
            }
        } else {
            out.iter_mut().for_each(|o| *o = run(&mut std::iter::empty()));
        }
    } else {
        let mut offs = lp.offsets();
        for o in out.iter_mut() {
            *o = run(&mut (&mut offs).take(inner).map(|i| x[i]));
        }
    }
    let result = match op {
        ReduceOp::ArgMax | ReduceOp::ArgMin => {
            let mut r: Vec<i64> = crate::pool::take(outer);
            r.iter_mut().zip(&out).for_each(|(o, &v)| *o = v as i64);
            CpuStorage::I64(r).boxed()
        }
        _ => {
            let mut r: Vec<T> = crate::pool::take(outer);
            r.iter_mut().zip(&out).for_each(|(o, &v)| *o = T::c(v));
            T::wrap(r)
        }
    };
    crate::pool::give(out);
    Ok(result)
}

/// Columns per task of [`column_sums`].
const COLS_PER_TASK: usize = 64;

/// `out[j] = Σ_i x[i·cols + j]` for a row-major (rows × cols) `x`, accumulated in `f64` in row
/// order (deterministic). Tasks own disjoint column blocks and stream every row's slice of them,
/// so the loop is contiguous (vectorised) and needs no partial sums.
fn column_sums<T: Elem>(x: &[T], cols: usize, out: &mut [f64]) {
    out.iter_mut().for_each(|o| *o = 0.0);
    if cols == 0 {
        return;
    }
    if cols == 1 {
        // a full sum (`sum_all`): one run, in lanes
        out[0] = sum_f64_lanes(x, x, |v, _| v.f64());
        return;
    }
    let block = |(bi, acc): (usize, &mut [f64])| {
        let (j0, n) = (bi * COLS_PER_TASK, acc.len());
        for row in x.chunks_exact(cols) {
            acc.iter_mut().zip(&row[j0..j0 + n]).for_each(|(a, &v)| *a += v.f64());
        }
    };
    if x.len() >= PAR_MIN {
        out.par_chunks_mut(COLS_PER_TASK).enumerate().for_each(block);
    } else {
        out.chunks_mut(COLS_PER_TASK).enumerate().for_each(block);
    }
}

impl ReduceOps for CpuBackend {
    fn reduce(&self, op: ReduceOp, x: &dyn Storage, lx: &Layout, dims: &[usize]) -> Result<BoxStorage> {
        dispatch_float!("reduce", x.dtype(), reduce_t(op, x, lx, dims))
    }
}
