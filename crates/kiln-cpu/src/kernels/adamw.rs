//! Fused AdamW: one parallel pass updates parameter, first and second moments in place.

use super::float::KFloat;
use crate::storage::{contiguous_slice, cpu, cpu_mut, CpuStorage};
use crate::CpuBackend;
use kiln_core::backend::{AdamWStep, Arg, OptimOps, Storage};
use kiln_core::{Error, Layout, Result};
use rayon::prelude::*;

/// Elements per rayon task.
const CHUNK: usize = 1 << 14;

fn step<T: KFloat>(p: &mut [T], m: &mut [T], v: &mut [T], g: &[T], hp: &AdamWStep) {
    let (b1, b2) = (T::c(hp.beta1), T::c(hp.beta2));
    let bc1 = T::c(1.0 - hp.beta1.powf(hp.step as f64));
    let bc2 = T::c(1.0 - hp.beta2.powf(hp.step as f64));
    let (lr, eps, wd) = (T::c(hp.lr), T::c(hp.eps), T::c(hp.weight_decay));
    let one = T::one();
    p.par_chunks_mut(CHUNK)
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .zip(g.par_chunks(CHUNK))
        .for_each(|(((p, m), v), g)| {
            for i in 0..p.len() {
                let gi = g[i];
                m[i] = b1 * m[i] + (one - b1) * gi;
                v[i] = b2 * v[i] + (one - b2) * gi * gi;
                let mhat = m[i] / bc1;
                let vhat = v[i] / bc2;
                p[i] = p[i] - lr * (mhat / (vhat.sqrt() + eps) + wd * p[i]);
            }
        });
}

impl OptimOps for CpuBackend {
    fn adamw_step(
        &self,
        param: (&mut dyn Storage, &Layout),
        m: &mut dyn Storage,
        v: &mut dyn Storage,
        grad: Arg,
        hp: &AdamWStep,
    ) -> Result<()> {
        let (ps, pl) = param;
        let (pa, pb) = pl.contiguous_range().ok_or(Error::BadShape {
            op: "adamw_step",
            shape: pl.shape().to_vec(),
            msg: "parameter must be contiguous".into(),
        })?;
        let n = pb - pa;
        let (m, v, g) = (cpu_mut("adamw_step", m)?, cpu_mut("adamw_step", v)?, cpu("adamw_step", grad.0)?);
        match (cpu_mut("adamw_step", ps)?, m, v, g) {
            (CpuStorage::F32(p), CpuStorage::F32(m), CpuStorage::F32(v), CpuStorage::F32(g))
                if m.len() >= n && v.len() >= n =>
            {
                step(&mut p[pa..pb], &mut m[..n], &mut v[..n], contiguous_slice("adamw_step", g, grad.1)?, hp)
            }
            (CpuStorage::F64(p), CpuStorage::F64(m), CpuStorage::F64(v), CpuStorage::F64(g))
                if m.len() >= n && v.len() >= n =>
            {
                step(&mut p[pa..pb], &mut m[..n], &mut v[..n], contiguous_slice("adamw_step", g, grad.1)?, hp)
            }
            (p, ..) => {
                return Err(Error::UnsupportedDType {
                    op: "adamw_step",
                    dtype: p.dtype(),
                    msg: "param, m, v and grad must all be f32 (or all f64) with matching sizes",
                })
            }
        }
        Ok(())
    }
}
