//! Counter-based random numbers: element `i` of a fill with seed `s` is a pure function of
//! `(s, i)` (splitmix64 mixing), so results are reproducible for any thread count and can be
//! regenerated in a backward pass without being stored.

use crate::pool;
use crate::storage::CpuStorage;
use crate::CpuBackend;
use kiln_core::backend::{BoxStorage, RandomOps};
use kiln_core::{DType, HostData, Result};
use rayon::prelude::*;

/// splitmix64 of `(seed, counter)`.
#[inline(always)]
pub(crate) fn mix(seed: u64, counter: u64) -> u64 {
    let mut z = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ counter.wrapping_add(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in `[0, 1)` with 53 random bits.
#[inline(always)]
pub(crate) fn uniform(seed: u64, counter: u64) -> f64 {
    (mix(seed, counter) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Standard normal by Box–Muller on two independent uniforms.
#[inline(always)]
fn normal(seed: u64, counter: u64) -> f64 {
    let u1 = 1.0 - uniform(seed, counter.wrapping_mul(2));
    let u2 = uniform(seed, counter.wrapping_mul(2).wrapping_add(1));
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn fill(dtype: DType, len: usize, f: impl Fn(u64) -> f64 + Sync) -> BoxStorage {
    match dtype {
        DType::F32 => {
            let mut v = pool::take(len);
            v.par_iter_mut().enumerate().for_each(|(i, o)| *o = f(i as u64) as f32);
            CpuStorage::F32(v)
        }
        DType::F64 => {
            let mut v = pool::take(len);
            v.par_iter_mut().enumerate().for_each(|(i, o)| *o = f(i as u64));
            CpuStorage::F64(v)
        }
        d => {
            let v: Vec<f64> = (0..len).into_par_iter().map(|i| f(i as u64)).collect();
            CpuStorage::from_host(HostData::from_f64_slice(&v, d))
        }
    }
    .boxed()
}

impl RandomOps for CpuBackend {
    fn rand_uniform(&self, dtype: DType, len: usize, lo: f64, hi: f64, seed: u64) -> Result<BoxStorage> {
        Ok(fill(dtype, len, |i| lo + (hi - lo) * uniform(seed, i)))
    }

    fn rand_normal(&self, dtype: DType, len: usize, mean: f64, std: f64, seed: u64) -> Result<BoxStorage> {
        Ok(fill(dtype, len, |i| mean + std * normal(seed, i)))
    }
}
