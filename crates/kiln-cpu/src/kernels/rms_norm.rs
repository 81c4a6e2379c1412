//! RMSNorm over the last dim, forward and backward side by side (Zhang & Sennrich 2019; seed 001).
//!
//! Forward, per row of C: `rstd = 1/√(mean x² + ε)`, `y = x·rstd·w`. Saved: `rstd` per row.
//! Backward: with `ĝ = w·dy`, `dx = rstd·(ĝ − x·rstd²·mean(ĝ·x))`, `dw = Σ_rows dy·x·rstd`.

use super::float::sum_f64_lanes;
use super::rows::{partial_sums, rows_of, to_elem};
use crate::pool;
use crate::storage::{dispatch_float, Elem};
use kiln_core::backend::{Arg, BoxStorage};
use kiln_core::Result;

fn forward_t<T: Elem>(x: Arg, w: Option<Arg>, eps: f64) -> Result<(BoxStorage, BoxStorage)> {
    let (xs, n, c) = rows_of::<T>("rms_norm", x)?;
    let w = w.map(|a| T::slice("rms_norm", a)).transpose()?;
    let mut y = pool::take(n * c);
    let mut rstd = pool::take(n);
    super::softmax::for_rows_with(&mut y, &mut rstd, c, |r, yr, st| {
        let xr = &xs[r * c..(r + 1) * c];
        let ms = sum_f64_lanes(xr, xr, |x, _| x.f64() * x.f64()) / c as f64;
        let rs = T::c(1.0 / (ms + eps).sqrt());
        match w {
            Some(w) => yr.iter_mut().zip(xr.iter().zip(w)).for_each(|(o, (&v, &w))| *o = v * rs * w),
            None => yr.iter_mut().zip(xr).for_each(|(o, &v)| *o = v * rs),
        }
        *st = rs;
    });
    Ok((T::wrap(y), T::wrap(rstd)))
}

fn backward_t<T: Elem>(x: Arg, w: Option<Arg>, rstd: Arg, dy: Arg) -> Result<(BoxStorage, Option<BoxStorage>)> {
    let (xs, n, c) = rows_of::<T>("rms_norm_bwd", x)?;
    let (gs, _, _) = rows_of::<T>("rms_norm_bwd", dy)?;
    let w = w.map(|a| T::slice("rms_norm_bwd", a)).transpose()?;
    let rs = T::slice("rms_norm_bwd", rstd)?;
    let mut dx = pool::take(n * c);
    let (dw, _) = partial_sums(&mut dx, c, 1, |r, dxr, acc| {
        let (xr, gr, s) = (&xs[r * c..(r + 1) * c], &gs[r * c..(r + 1) * c], rs[r]);
        // ĝ = w·dy into dx (overwritten below)
        match w {
            Some(w) => dxr.iter_mut().zip(gr.iter().zip(w)).for_each(|(o, (&g, &w))| *o = w * g),
            None => dxr.copy_from_slice(gr),
        }
        acc.iter_mut().zip(gr.iter().zip(xr)).for_each(|(a, (&g, &x))| *a += (g * x * s).f64());
        let k = s * s * T::c(sum_f64_lanes(dxr, xr, |g, x| (g * x).f64()) / c as f64);
        dxr.iter_mut().zip(xr).for_each(|(d, &x)| *d = s * (*d - x * k));
    });
    let dw_out = w.is_some().then(|| T::wrap(to_elem(&dw)));
    pool::give(dw);
    let dw = dw_out;
    Ok((T::wrap(dx), dw))
}

/// Forward kernel: `(y, rstd)`.
pub(crate) fn forward(x: Arg, w: Option<Arg>, eps: f64) -> Result<(BoxStorage, BoxStorage)> {
    dispatch_float!("rms_norm", x.0.dtype(), forward_t(x, w, eps))
}

/// Backward kernel: `(dx, dw)`; `dw` only with a weight.
pub(crate) fn backward(x: Arg, w: Option<Arg>, rstd: Arg, dy: Arg) -> Result<(BoxStorage, Option<BoxStorage>)> {
    dispatch_float!("rms_norm_bwd", x.0.dtype(), backward_t(x, w, rstd, dy))
}
