//! Batched GEMM through the `gemm` crate (AVX-512 micro-kernels with `x86-v4`), strided operands
//! read in place. Large products use all threads inside one GEMM; many small ones (attention's
//! per-head products) run one GEMM per thread.

use super::float::KFloat;
use crate::storage::{dispatch_float, Elem};
use crate::CpuBackend;
use gemm::Parallelism;
use kiln_core::backend::{BoxStorage, MatmulOps, Storage};
use kiln_core::{Error, Layout, Result};
use rayon::prelude::*;

/// Below this many multiply-adds a GEMM runs single-threaded.
const GEMM_PAR_MIN: usize = 1 << 18;
/// Below this many multiply-adds per matrix, a batch of at least `threads` products runs one
/// single-threaded GEMM per rayon task instead of threading each GEMM.
const BATCH_PAR_MAX: usize = 1 << 26;

/// Storage offsets of every batch matrix (all dims but the last two).
fn batch_offsets(l: &Layout) -> Vec<usize> {
    let r = l.rank();
    Layout::new(l.shape()[..r - 2].to_vec(), l.strides()[..r - 2].to_vec(), l.offset()).offsets().collect()
}

/// One `C = A·B` with explicit strides, `C` contiguous (row stride `n`).
///
/// # Safety
/// `a`/`b` must be valid for every element the strides reach (checked by the caller through the
/// layouts) and `c` for `m·n` writes.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_one<T: KFloat>(
    m: usize,
    n: usize,
    k: usize,
    c: *mut T,
    a: *const T,
    ars: isize,
    acs: isize,
    b: *const T,
    brs: isize,
    bcs: isize,
    par: Parallelism,
) {
    gemm::gemm(
        m,
        n,
        k,
        c,
        1,
        n as isize,
        false,
        a,
        acs,
        ars,
        b,
        bcs,
        brs,
        T::zero(),
        T::one(),
        false,
        false,
        false,
        par,
    );
}

fn matmul_t<T: Elem>(a: &dyn Storage, la: &Layout, b: &dyn Storage, lb: &Layout) -> Result<BoxStorage> {
    let bad = || Error::ShapeMismatch { op: "matmul", lhs: la.shape().to_vec(), rhs: lb.shape().to_vec() };
    let (x, y) = (T::vec_of(a).ok_or_else(bad)?, T::vec_of(b).ok_or_else(bad)?);
    let r = la.rank();
    if r < 2 || lb.rank() != r || la.shape()[..r - 2] != lb.shape()[..r - 2] || la.shape()[r - 1] != lb.shape()[r - 2] {
        return Err(bad());
    }
    let (m, k, n) = (la.shape()[r - 2], la.shape()[r - 1], lb.shape()[r - 1]);
    for (l, len) in [(la, x.len()), (lb, y.len())] {
        let reach =
            l.offset() + l.shape().iter().zip(l.strides()).map(|(&d, &s)| d.saturating_sub(1) * s).sum::<usize>();
        if l.numel() > 0 && reach >= len {
            return Err(Error::BadShape {
                op: "matmul",
                shape: l.shape().to_vec(),
                msg: "view exceeds storage".into(),
            });
        }
    }
    let (ars, acs) = (la.strides()[r - 2] as isize, la.strides()[r - 1] as isize);
    let (brs, bcs) = (lb.strides()[r - 2] as isize, lb.strides()[r - 1] as isize);
    let (oa, ob) = (batch_offsets(la), batch_offsets(lb));
    if m * n == 0 || k == 0 {
        return Ok(T::wrap(crate::pool::filled(oa.len() * m * n, T::zero())));
    }
    // Fully overwritten: gemm runs with read_dst = false.
    let mut out = crate::pool::take(oa.len() * m * n);
    let threads = rayon::current_num_threads();
    let work = m * n * k;
    let run = |c: &mut [T], a0: usize, b0: usize, par: Parallelism| {
        // SAFETY: the reach check above keeps every strided read inside `x`/`y`; `c` has m·n slots.
        unsafe { gemm_one(m, n, k, c.as_mut_ptr(), x.as_ptr().add(a0), ars, acs, y.as_ptr().add(b0), brs, bcs, par) }
    };
    if oa.len() >= threads && work < BATCH_PAR_MAX {
        out.par_chunks_mut(m * n)
            .zip(oa.par_iter().zip(ob.par_iter()))
            .for_each(|(c, (&a0, &b0))| run(c, a0, b0, Parallelism::None));
    } else {
        let par = if work >= GEMM_PAR_MIN && threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
        for (c, (&a0, &b0)) in out.chunks_mut(m * n).zip(oa.iter().zip(ob.iter())) {
            run(c, a0, b0, par);
        }
    }
    Ok(T::wrap(out))
}

impl MatmulOps for CpuBackend {
    fn matmul(&self, a: &dyn Storage, la: &Layout, b: &dyn Storage, lb: &Layout) -> Result<BoxStorage> {
        dispatch_float!("matmul", a.dtype(), matmul_t(a, la, b, lb))
    }
}
