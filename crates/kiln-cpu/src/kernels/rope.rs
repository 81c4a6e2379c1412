//! Rotary position embedding, fused (Su et al. 2021; seed 002/003 "RoPE"; LLaMA's rotate-half
//! pairing): per row at position t, with `h = D/2`,
//! `y[i] = x[i]·cos[t,i] − x[i+h]·sin[t,i]`, `y[i+h] = x[i+h]·cos[t,i+h] + x[i]·sin[t,i+h]`.
//!
//! Backward (`transpose`): the forward's Jacobian transposed,
//! `dx[i] = dy[i]·cos[t,i] + dy[i+h]·sin[t,i+h]`, `dx[i+h] = dy[i+h]·cos[t,i+h] − dy[i]·sin[t,i]`
//! — for RoPE's tables (equal halves) the rotation by −θ; no state saved but the tables.

use super::rows::rows_of;
use super::softmax::for_rows;
use crate::pool;
use crate::storage::{dispatch_float, Elem};
use kiln_core::backend::{Arg, BoxStorage};
use kiln_core::{Error, Result};

fn rope_t<T: Elem>(x: Arg, cos: Arg, sin: Arg, transpose: bool) -> Result<BoxStorage> {
    let (xs, n, d) = rows_of::<T>("rope", x)?;
    let (cs, sn) = (T::slice("rope", cos)?, T::slice("rope", sin)?);
    let t = cos.1.shape().first().copied().unwrap_or(0);
    if !d.is_multiple_of(2) || cos.1.shape() != [t, d] || sin.1.shape() != [t, d] || t == 0 || n % t != 0 {
        return Err(Error::ShapeMismatch { op: "rope", lhs: x.1.shape().to_vec(), rhs: cos.1.shape().to_vec() });
    }
    let h = d / 2;
    let mut y = pool::take(n * d);
    for_rows(&mut y, d, |r, yr| {
        let (xr, p) = (&xs[r * d..(r + 1) * d], r % t);
        let (c, s) = (&cs[p * d..(p + 1) * d], &sn[p * d..(p + 1) * d]);
        let (y1, y2) = yr.split_at_mut(h);
        if transpose {
            for i in 0..h {
                y1[i] = xr[i] * c[i] + xr[i + h] * s[i + h];
                y2[i] = xr[i + h] * c[i + h] - xr[i] * s[i];
            }
        } else {
            for i in 0..h {
                y1[i] = xr[i] * c[i] - xr[i + h] * s[i];
                y2[i] = xr[i + h] * c[i + h] + xr[i] * s[i + h];
            }
        }
    });
    Ok(T::wrap(y))
}

/// `y = rope(x)` for `x` (…, T, D) contiguous and tables `cos`, `sin` (T, D); with
/// `transpose`, the backward (`dx` from `dy`).
pub(crate) fn rope(x: Arg, cos: Arg, sin: Arg, transpose: bool) -> Result<BoxStorage> {
    dispatch_float!("rope", x.0.dtype(), rope_t(x, cos, sin, transpose))
}
