//! Softmax and log-softmax over the last dim, forward and backward.
//!
//! Forward, per row: `m = max x`, `s = Σ e^(x−m)`; softmax `y = e^(x−m)/s`, log-softmax
//! `y = x − m − ln s` (subtracting the max keeps `exp` from overflowing).
//! Backward from the saved output `y`: softmax `dx = y ⊙ (dy − ⟨dy, y⟩)`;
//! log-softmax `dx = dy − e^y · Σ dy`.

use super::float::{max_lanes, sum_lanes};
use super::PAR_MIN;
use crate::pool;
use crate::storage::{dispatch_float, Elem};
use kiln_core::backend::{Arg, BoxStorage};
use kiln_core::{Error, Result};
use rayon::prelude::*;

fn last_dim(op: &'static str, a: Arg) -> Result<usize> {
    match a.1.shape().last() {
        Some(&c) if c > 0 => Ok(c),
        _ => Err(Error::BadShape { op, shape: a.1.shape().to_vec(), msg: "needs a non-empty last dim".into() }),
    }
}

/// Runs `f(out_row, rows_of_inputs…)` over rows, in parallel for large tensors.
pub(crate) fn for_rows<T: Send + Sync>(out: &mut [T], c: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    if out.len() >= PAR_MIN {
        out.par_chunks_mut(c).enumerate().for_each(|(r, o)| f(r, o));
    } else {
        out.chunks_mut(c).enumerate().for_each(|(r, o)| f(r, o));
    }
}

/// Like [`for_rows`], also handing each row its own entry of `per_row` (row statistics).
pub(crate) fn for_rows_with<T: Send + Sync, S: Send>(
    out: &mut [T],
    per_row: &mut [S],
    c: usize,
    f: impl Fn(usize, &mut [T], &mut S) + Sync,
) {
    if out.len() >= PAR_MIN {
        out.par_chunks_mut(c).zip(per_row.par_iter_mut()).enumerate().for_each(|(r, (o, s))| f(r, o, s));
    } else {
        out.chunks_mut(c).zip(per_row.iter_mut()).enumerate().for_each(|(r, (o, s))| f(r, o, s));
    }
}

fn forward_t<T: Elem>(x: Arg, log: bool) -> Result<BoxStorage> {
    let c = last_dim("softmax", x)?;
    let xs = T::slice("softmax", x)?;
    let mut y = pool::take(xs.len());
    for_rows(&mut y, c, |r, yr| {
        let xr = &xs[r * c..(r + 1) * c];
        let m = max_lanes(xr);
        for (o, &v) in yr.iter_mut().zip(xr) {
            *o = (v - m).fexp();
        }
        let s = sum_lanes(yr);
        if log {
            let ls = s.ln();
            for (o, &v) in yr.iter_mut().zip(xr) {
                *o = v - m - ls;
            }
        } else {
            let inv = s.recip();
            yr.iter_mut().for_each(|o| *o *= inv);
        }
    });
    Ok(T::wrap(y))
}

fn backward_t<T: Elem>(y: Arg, dy: Arg, log: bool) -> Result<BoxStorage> {
    let c = last_dim("softmax_bwd", y)?;
    let (ys, gs) = (T::slice("softmax_bwd", y)?, T::slice("softmax_bwd", dy)?);
    if ys.len() != gs.len() {
        return Err(Error::ShapeMismatch { op: "softmax_bwd", lhs: y.1.shape().to_vec(), rhs: dy.1.shape().to_vec() });
    }
    let mut dx = pool::take(ys.len());
    for_rows(&mut dx, c, |r, dr| {
        let (yr, gr) = (&ys[r * c..(r + 1) * c], &gs[r * c..(r + 1) * c]);
        if log {
            let s: T = gr.iter().copied().sum();
            for ((o, &yv), &g) in dr.iter_mut().zip(yr).zip(gr) {
                *o = g - yv.fexp() * s;
            }
        } else {
            let dot: T = yr.iter().zip(gr).map(|(&a, &b)| a * b).sum();
            for ((o, &yv), &g) in dr.iter_mut().zip(yr).zip(gr) {
                *o = yv * (g - dot);
            }
        }
    });
    Ok(T::wrap(dx))
}

/// Forward kernel (see module docs).
pub(crate) fn forward(x: Arg, log: bool) -> Result<BoxStorage> {
    dispatch_float!("softmax", x.0.dtype(), forward_t(x, log))
}

/// Backward kernel (see module docs).
pub(crate) fn backward(y: Arg, dy: Arg, log: bool) -> Result<BoxStorage> {
    dispatch_float!("softmax_bwd", y.0.dtype(), backward_t(y, dy, log))
}
