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
            let mut acc = vec![0.0f64; k * c];
            for (i, row) in chunk.chunks_mut(c).enumerate() {
                f(t * per + i, row, &mut acc);
            }
            acc
        })
        .collect();
    let mut total = vec![0.0f64; k * c];
    for p in parts {
        total.iter_mut().zip(p).for_each(|(t, v)| *t += v);
    }
    let second = if k > 1 { total.split_off(c) } else { Vec::new() };
    total.truncate(c);
    (total, second)
}
