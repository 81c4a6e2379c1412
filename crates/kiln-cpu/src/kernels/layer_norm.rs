//! LayerNorm over the last dim, forward and backward side by side (llm.c's `layernorm_*`).
//!
//! Forward, per row of C: `μ = mean x`, `σ² = mean (x−μ)²` (two passes, f64 sums),
//! `rstd = 1/√(σ² + ε)`, `x̂ = (x−μ)·rstd`, `y = x̂·w + b`. Saved: `μ`, `rstd` (one per row).
//! Backward: with `ĝ = w·dy`, `dx = rstd·(ĝ − mean ĝ − x̂·mean(ĝ·x̂))`, `dw = Σ_rows dy·x̂`,
//! `db = Σ_rows dy`. Rows run in parallel; `dw`/`db` are summed from per-task partials.

use super::float::sum_f64_lanes;
use super::rows::{for_rows_with2, partial_sums, rows_of, to_elem};
use crate::pool;
use crate::storage::{dispatch_float, Elem};
use kiln_core::backend::{Arg, BoxStorage};
use kiln_core::Result;

fn forward_t<T: Elem>(
    x: Arg,
    w: Option<Arg>,
    b: Option<Arg>,
    eps: f64,
) -> Result<(BoxStorage, BoxStorage, BoxStorage)> {
    let (xs, n, c) = rows_of::<T>("layer_norm", x)?;
    let w = w.map(|a| T::slice("layer_norm", a)).transpose()?;
    let b = b.map(|a| T::slice("layer_norm", a)).transpose()?;
    let mut y = pool::take(n * c);
    let mut mean: Vec<T> = pool::take(n);
    let mut rstd: Vec<T> = pool::take(n);
    for_rows_with2(&mut y, &mut mean, &mut rstd, c, |r, yr, mean_r, rstd_r| {
        let xr = &xs[r * c..(r + 1) * c];
        let mean = sum_f64_lanes(xr, xr, |x, _| x.f64()) / c as f64;
        let var = sum_f64_lanes(xr, xr, |x, _| (x.f64() - mean).powi(2)) / c as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        let (m, rs) = (T::c(mean), T::c(rstd));
        // one vectorised pass per term (the row stays in L1)
        yr.iter_mut().zip(xr).for_each(|(o, &v)| *o = (v - m) * rs);
        if let Some(w) = w {
            yr.iter_mut().zip(w).for_each(|(o, &w)| *o *= w);
        }
        if let Some(b) = b {
            yr.iter_mut().zip(b).for_each(|(o, &b)| *o += b);
        }
        *mean_r = m;
        *rstd_r = rs;
    });
    Ok((T::wrap(y), T::wrap(mean), T::wrap(rstd)))
}

#[allow(clippy::type_complexity)]
fn backward_t<T: Elem>(
    x: Arg,
    w: Option<Arg>,
    mean: Arg,
    rstd: Arg,
    dy: Arg,
) -> Result<(BoxStorage, Option<BoxStorage>, Option<BoxStorage>)> {
    let (xs, n, c) = rows_of::<T>("layer_norm_bwd", x)?;
    let (gs, _, _) = rows_of::<T>("layer_norm_bwd", dy)?;
    let w = w.map(|a| T::slice("layer_norm_bwd", a)).transpose()?;
    let (ms, rs) = (T::slice("layer_norm_bwd", mean)?, T::slice("layer_norm_bwd", rstd)?);
    let mut dx = pool::take(n * c);
    // Per task: (dw partial, db partial) accumulated in f64.
    let (dw_acc, db_acc) = partial_sums(&mut dx, c, 2, |r, dxr, acc| {
        let (xr, gr) = (&xs[r * c..(r + 1) * c], &gs[r * c..(r + 1) * c]);
        let (m, s) = (ms[r], rs[r]);
        // ĝ = w·dy into dx (overwritten below), x̂ recomputed on the fly
        match w {
            Some(w) => dxr.iter_mut().zip(gr.iter().zip(w)).for_each(|(o, (&g, &w))| *o = w * g),
            None => dxr.copy_from_slice(gr),
        }
        let (dw_acc, db_acc) = acc.split_at_mut(c);
        for ((a, b), (&x, &g)) in dw_acc.iter_mut().zip(db_acc.iter_mut()).zip(xr.iter().zip(gr)) {
            *a += (g * ((x - m) * s)).f64();
            *b += g.f64();
        }
        let mg = T::c(sum_f64_lanes(dxr, dxr, |g, _| g.f64()) / c as f64);
        let mgx = T::c(sum_f64_lanes(dxr, xr, |g, x| (g * ((x - m) * s)).f64()) / c as f64);
        dxr.iter_mut().zip(xr).for_each(|(d, &x)| *d = s * (*d - mg - (x - m) * s * mgx));
    });
    let dw = w.is_some().then(|| T::wrap(to_elem(&dw_acc)));
    let db = Some(T::wrap(to_elem(&db_acc)));
    pool::give(dw_acc);
    pool::give(db_acc);
    Ok((T::wrap(dx), dw, db))
}

/// Forward kernel: `(y, mean, rstd)`.
pub(crate) fn forward(
    x: Arg,
    w: Option<Arg>,
    b: Option<Arg>,
    eps: f64,
) -> Result<(BoxStorage, BoxStorage, BoxStorage)> {
    dispatch_float!("layer_norm", x.0.dtype(), forward_t(x, w, b, eps))
}

/// Backward kernel: `(dx, dw, db)`; `dw` only with a weight.
#[allow(clippy::type_complexity)]
pub(crate) fn backward(
    x: Arg,
    w: Option<Arg>,
    mean: Arg,
    rstd: Arg,
    dy: Arg,
) -> Result<(BoxStorage, Option<BoxStorage>, Option<BoxStorage>)> {
    dispatch_float!("layer_norm_bwd", x.0.dtype(), backward_t(x, w, mean, rstd, dy))
}
