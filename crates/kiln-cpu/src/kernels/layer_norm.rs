//! LayerNorm over the last dim, forward and backward side by side (llm.c's `layernorm_*`).
//!
//! Forward, per row of C: `μ = mean x`, `σ² = mean (x−μ)²` (two passes, f64 sums),
//! `rstd = 1/√(σ² + ε)`, `x̂ = (x−μ)·rstd`, `y = x̂·w + b`. Saved: `μ`, `rstd` (one per row).
//! Backward: with `ĝ = w·dy`, `dx = rstd·(ĝ − mean ĝ − x̂·mean(ĝ·x̂))`, `dw = Σ_rows dy·x̂`,
//! `db = Σ_rows dy`. Rows run in parallel; `dw`/`db` are summed from per-task partials.

use super::rows::{partial_sums, rows_of};
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
    let mut y = vec![T::zero(); n * c];
    let mut stats = vec![(T::zero(), T::zero()); n];
    super::softmax::for_rows_with(&mut y, &mut stats, c, |r, yr, st| {
        let xr = &xs[r * c..(r + 1) * c];
        let mean = xr.iter().map(|v| v.f64()).sum::<f64>() / c as f64;
        let var = xr.iter().map(|v| (v.f64() - mean).powi(2)).sum::<f64>() / c as f64;
        let rstd = 1.0 / (var + eps).sqrt();
        let (m, rs) = (T::c(mean), T::c(rstd));
        for (j, (o, &v)) in yr.iter_mut().zip(xr).enumerate() {
            let mut h = (v - m) * rs;
            if let Some(w) = w {
                h *= w[j];
            }
            if let Some(b) = b {
                h += b[j];
            }
            *o = h;
        }
        *st = (m, rs);
    });
    let (mean, rstd): (Vec<T>, Vec<T>) = stats.into_iter().unzip();
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
    let mut dx = vec![T::zero(); n * c];
    // Per task: (dw partial, db partial) accumulated in f64.
    let (dw, db) = partial_sums(&mut dx, c, 2, |r, dxr, acc| {
        let (xr, gr) = (&xs[r * c..(r + 1) * c], &gs[r * c..(r + 1) * c]);
        let (m, s) = (ms[r], rs[r]);
        let (mut mean_g, mut mean_gx) = (0.0f64, 0.0f64);
        for j in 0..c {
            let xh = (xr[j] - m) * s;
            let g = match w {
                Some(w) => w[j] * gr[j],
                None => gr[j],
            };
            mean_g += g.f64();
            mean_gx += (g * xh).f64();
            acc[j] += (gr[j] * xh).f64();
            acc[c + j] += gr[j].f64();
        }
        let (mg, mgx) = (T::c(mean_g / c as f64), T::c(mean_gx / c as f64));
        for j in 0..c {
            let xh = (xr[j] - m) * s;
            let g = match w {
                Some(w) => w[j] * gr[j],
                None => gr[j],
            };
            dxr[j] = s * (g - mg - xh * mgx);
        }
    });
    let dw = w.is_some().then(|| T::wrap(dw.into_iter().map(T::c).collect()));
    let db = Some(T::wrap(db.into_iter().map(T::c).collect()));
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
