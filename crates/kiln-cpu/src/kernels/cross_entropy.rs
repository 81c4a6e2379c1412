//! Softmax cross-entropy per row, forward and backward side by side (llm.c's fused
//! `crossentropy_softmax_backward`).
//!
//! Forward, per row of V logits with target `t` and label smoothing `ε`:
//! `lse = m + ln Σ e^(x−m)` (`m` the row max), `loss = (1−ε)(lse − x_t) + ε(lse − mean_v x_v)`;
//! rows whose target is `ignore_index` get loss 0. Saved: `lse` per row.
//! Backward: `dx_v = dloss·(e^(x_v − lse) − (1−ε)[v = t] − ε/V)`, zero for ignored rows.

use super::float::{max_lanes, sum_exp_shifted};
use super::rows::rows_of;
use crate::pool;
use crate::storage::{contiguous_slice, cpu, dispatch_float, CpuStorage, Elem};
use kiln_core::backend::{Arg, BoxStorage, Storage};
use kiln_core::{Error, Result};
use rayon::prelude::*;

/// Targets as `i64`, checked against the vocabulary (ignored rows pass).
fn targets(op: &'static str, t: Arg, n: usize, v: usize, ignore: i64) -> Result<Vec<i64>> {
    let ids: Vec<i64> = match cpu(op, t.0)? {
        CpuStorage::I64(d) => contiguous_slice(op, d, t.1)?.to_vec(),
        CpuStorage::I32(d) => contiguous_slice(op, d, t.1)?.iter().map(|&x| x as i64).collect(),
        o => return Err(Error::UnsupportedDType { op, dtype: o.dtype(), msg: "targets must be i64 or i32" }),
    };
    if ids.len() != n {
        return Err(Error::ShapeMismatch { op, lhs: vec![n, v], rhs: t.1.shape().to_vec() });
    }
    if let Some(&bad) = ids.iter().find(|&&i| i != ignore && (i < 0 || i as usize >= v)) {
        return Err(Error::IndexOutOfRange { op, index: bad, size: v });
    }
    Ok(ids)
}

fn forward_t<T: Elem>(logits: Arg, t: Arg, ignore: i64, eps: f64) -> Result<(BoxStorage, BoxStorage)> {
    let (xs, n, v) = rows_of::<T>("cross_entropy", logits)?;
    let ids = targets("cross_entropy", t, n, v, ignore)?;
    let mut loss: Vec<T> = pool::take(n);
    let mut lse: Vec<T> = pool::take(n);
    let row = |r: usize| -> (T, T) {
        let xr = &xs[r * v..(r + 1) * v];
        let m = max_lanes(xr);
        let s = sum_exp_shifted(xr, m).f64();
        let lse = m.f64() + s.ln();
        if ids[r] == ignore {
            return (T::zero(), T::c(lse));
        }
        let nll = lse - xr[ids[r] as usize].f64();
        let loss = if eps > 0.0 {
            let mean = xr.iter().map(|x| x.f64()).sum::<f64>() / v as f64;
            (1.0 - eps) * nll + eps * (lse - mean)
        } else {
            nll
        };
        (T::c(loss), T::c(lse))
    };
    loss.par_iter_mut().zip(lse.par_iter_mut()).enumerate().with_min_len((1 << 14) / v.max(1) + 1).for_each(
        |(r, (lo, ls))| {
            (*lo, *ls) = row(r);
        },
    );
    Ok((T::wrap(loss), T::wrap(lse)))
}

fn backward_t<T: Elem>(logits: Arg, t: Arg, lse: Arg, dloss: Arg, ignore: i64, eps: f64) -> Result<BoxStorage> {
    let (xs, n, v) = rows_of::<T>("cross_entropy_bwd", logits)?;
    let ids = targets("cross_entropy_bwd", t, n, v, ignore)?;
    let (ls, ds) = (T::slice("cross_entropy_bwd", lse)?, T::slice("cross_entropy_bwd", dloss)?);
    let mut dx = pool::take(n * v);
    let (on, off) = (T::c(1.0 - eps), T::c(eps / v as f64));
    super::softmax::for_rows(&mut dx, v, |r, dr| {
        if ids[r] == ignore {
            dr.fill(T::zero());
            return;
        }
        let xr = &xs[r * v..(r + 1) * v];
        let (l, d) = (ls[r], ds[r]);
        for (o, &x) in dr.iter_mut().zip(xr) {
            *o = d * ((x - l).fexp() - off);
        }
        dr[ids[r] as usize] -= d * on;
    });
    Ok(T::wrap(dx))
}

/// Forward kernel: `(loss per row, logsumexp per row)`.
pub(crate) fn forward(
    logits: Arg,
    t: Arg,
    ignore_index: i64,
    label_smoothing: f64,
) -> Result<(BoxStorage, BoxStorage)> {
    dispatch_float!("cross_entropy", logits.0.dtype(), forward_t(logits, t, ignore_index, label_smoothing))
}

/// Backward kernel: `dlogits`.
pub(crate) fn backward(
    logits: Arg,
    t: Arg,
    lse: Arg,
    dloss: Arg,
    ignore_index: i64,
    label_smoothing: f64,
) -> Result<BoxStorage> {
    dispatch_float!(
        "cross_entropy_bwd",
        logits.0.dtype(),
        backward_t(logits, t, lse, dloss, ignore_index, label_smoothing)
    )
}
