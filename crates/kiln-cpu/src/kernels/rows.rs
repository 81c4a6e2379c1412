//! Row helpers shared by the normalisation and loss kernels: view a contiguous tensor as
//! (N rows, C columns), and run a per-row function in parallel while summing per-column partials
//! (the `dw`/`db` of a norm's backward) without data races.

use super::PAR_MIN;
use crate::storage::Elem;
use kiln_core::backend::Arg;
use kiln_core::{Error, Result};
use rayon::prelude::*;

/// The contiguous slice of `a` with its row count N and row length C (the last dim).
pub(crate) fn rows_of<'a, T: Elem>(op: &'static str, a: Arg<'a>) -> Result<(&'a [T], usize, usize)> {
    let s = T::slice(op, a)?;
    let c = match a.1.shape().last() {
        Some(&c) if c > 0 => c,
        _ => return Err(Error::BadShape { op, shape: a.1.shape().to_vec(), msg: "needs a non-empty last dim".into() }),
    };
    Ok((s, s.len() / c, c))
}

/// f64 accumulators converted to the kernel's element type (a pooled buffer).
pub(crate) fn to_elem<T: Elem>(v: &[f64]) -> Vec<T> {
    let mut out = crate::pool::take(v.len());
    out.iter_mut().zip(v).for_each(|(o, &x)| *o = T::c(x));
    out
}

/// Runs `f(row, out_row, &mut a[row], &mut b[row])` over rows of length `c` (two per-row
/// statistics, e.g. LayerNorm's mean and rstd), in parallel for large tensors.
pub(crate) fn for_rows_with2<T: Send + Sync, S: Send>(
    out: &mut [T],
    a: &mut [S],
    b: &mut [S],
    c: usize,
    f: impl Fn(usize, &mut [T], &mut S, &mut S) + Sync,
) {
    if out.len() >= PAR_MIN {
        out.par_chunks_mut(c)
            .zip(a.par_iter_mut().zip(b.par_iter_mut()))
            .enumerate()
            .for_each(|(r, (o, (x, y)))| f(r, o, x, y));
    } else {
        out.chunks_mut(c).zip(a.iter_mut().zip(b.iter_mut())).enumerate().for_each(|(r, (o, (x, y)))| f(r, o, x, y));
    }
}

/// Runs `f(row, out_row, acc)` over the rows of `out` (row length `c`), where `acc` is a per-task
/// buffer of `k·c` f64 partial sums; returns the `k` column-sum vectors, each of length `c`.
pub(crate) fn partial_sums<T: Send + Sync>(
    out: &mut [T],
    c: usize,
    k: usize,
    f: impl Fn(usize, &mut [T], &mut [f64]) + Sync,
) -> (Vec<f64>, Vec<f64>) {
    let rows = out.len() / c.max(1);
    let tasks = if out.len() >= PAR_MIN { (rayon::current_num_threads() * 4).min(rows).max(1) } else { 1 };
    let per = rows.div_ceil(tasks).max(1);
    let parts: Vec<Vec<f64>> = out
        .par_chunks_mut(per * c)
        .enumerate()
        .map(|(t, chunk)| {
            let mut acc = crate::pool::filled(k * c, 0.0f64);
            for (i, row) in chunk.chunks_mut(c).enumerate() {
                f(t * per + i, row, &mut acc);
            }
            acc
        })
        .collect();
    let mut first = crate::pool::filled(c, 0.0f64);
    let mut second = if k > 1 { crate::pool::filled(c, 0.0f64) } else { Vec::new() };
    for p in parts {
        first.iter_mut().zip(&p[..c]).for_each(|(t, v)| *t += v);
        second.iter_mut().zip(&p[c..]).for_each(|(t, v)| *t += v);
        crate::pool::give(p);
    }
    (first, second)
}
