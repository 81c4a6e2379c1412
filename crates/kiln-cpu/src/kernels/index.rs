//! index_select (the embedding lookup) and index_add (its scatter-add backward).
//!
//! With `x` viewed as (outer, D, inner) around `dim`: `index_select` writes
//! `out[o, i, :] = x[o, ids[i], :]`; `index_add` writes `out[o, ids[i], :] += src[o, i, :]`.
//! The scatter is parallel over destination rows, each summing its sources in index order, so
//! repeated ids accumulate deterministically whatever the thread count.

use super::PAR_MIN;
use crate::pool;
use crate::storage::{contiguous_slice, cpu, dispatch_float, CpuStorage, Elem};
use crate::CpuBackend;
use kiln_core::backend::{Arg, BoxStorage, IndexOps, Storage};
use kiln_core::{Error, Result};
use rayon::prelude::*;

/// The ids as `i64`, each checked to be in `0..size`.
fn read_ids(op: &'static str, ids: Arg, size: usize) -> Result<Vec<i64>> {
    let v: Vec<i64> = match cpu(op, ids.0)? {
        CpuStorage::I64(d) => contiguous_slice(op, d, ids.1)?.to_vec(),
        CpuStorage::I32(d) => contiguous_slice(op, d, ids.1)?.iter().map(|&x| x as i64).collect(),
        CpuStorage::U8(d) => contiguous_slice(op, d, ids.1)?.iter().map(|&x| x as i64).collect(),
        o => return Err(Error::UnsupportedDType { op, dtype: o.dtype(), msg: "indices must be i64, i32 or u8" }),
    };
    if let Some(&bad) = v.iter().find(|&&i| i < 0 || i as usize >= size) {
        return Err(Error::IndexOutOfRange { op, index: bad, size });
    }
    Ok(v)
}

/// (outer, D, inner) of `shape` around `dim`.
fn split3(op: &'static str, shape: &[usize], dim: usize) -> Result<(usize, usize, usize)> {
    if dim >= shape.len() {
        return Err(Error::DimOutOfRange { op, dim: dim as isize, rank: shape.len() });
    }
    Ok((shape[..dim].iter().product(), shape[dim], shape[dim + 1..].iter().product()))
}

fn select_t<T: Elem>(x: Arg, dim: usize, ids: Arg) -> Result<BoxStorage> {
    let xs = T::slice("index_select", x)?;
    let (outer, d, inner) = split3("index_select", x.1.shape(), dim)?;
    let ids = read_ids("index_select", ids, d)?;
    let n = ids.len();
    let mut out = pool::take(outer * n * inner);
    if inner == 0 || out.is_empty() {
        return Ok(T::wrap(out));
    }
    let row = |(r, o): (usize, &mut [T])| {
        let (ob, i) = (r / n, r % n);
        let src = (ob * d + ids[i] as usize) * inner;
        o.copy_from_slice(&xs[src..src + inner]);
    };
    if out.len() >= PAR_MIN {
        out.par_chunks_mut(inner).enumerate().for_each(row);
    } else {
        out.chunks_mut(inner).enumerate().for_each(row);
    }
    Ok(T::wrap(out))
}

fn add_t<T: Elem>(shape: &[usize], dim: usize, ids: Arg, src: Arg) -> Result<BoxStorage> {
    let ss = T::slice("index_add", src)?;
    let (outer, d, inner) = split3("index_add", shape, dim)?;
    let ids = read_ids("index_add", ids, d)?;
    let n = ids.len();
    if ss.len() != outer * n * inner {
        return Err(Error::ShapeMismatch { op: "index_add", lhs: shape.to_vec(), rhs: src.1.shape().to_vec() });
    }
    // Counting sort: sources of each destination row, in index order.
    let mut start = vec![0usize; d + 1];
    ids.iter().for_each(|&i| start[i as usize + 1] += 1);
    (0..d).for_each(|k| start[k + 1] += start[k]);
    let mut order = vec![0usize; n];
    let mut fill = start.clone();
    for (i, &id) in ids.iter().enumerate() {
        order[fill[id as usize]] = i;
        fill[id as usize] += 1;
    }
    let mut out = pool::filled(outer * d * inner, T::zero());
    if inner == 0 || out.is_empty() {
        return Ok(T::wrap(out));
    }
    let row = |(r, o): (usize, &mut [T])| {
        let (ob, k) = (r / d, r % d);
        for &i in &order[start[k]..start[k + 1]] {
            let s = &ss[(ob * n + i) * inner..(ob * n + i + 1) * inner];
            o.iter_mut().zip(s).for_each(|(a, &b)| *a += b);
        }
    };
    if ss.len() >= PAR_MIN {
        out.par_chunks_mut(inner).enumerate().for_each(row);
    } else {
        out.chunks_mut(inner).enumerate().for_each(row);
    }
    Ok(T::wrap(out))
}

impl IndexOps for CpuBackend {
    fn index_select(&self, x: Arg, dim: usize, ids: Arg) -> Result<BoxStorage> {
        dispatch_float!("index_select", x.0.dtype(), select_t(x, dim, ids))
    }

    fn index_add(&self, shape: &[usize], dim: usize, ids: Arg, src: Arg) -> Result<BoxStorage> {
        dispatch_float!("index_add", src.0.dtype(), add_t(shape, dim, ids, src))
    }
}
