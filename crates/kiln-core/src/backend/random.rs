//! Seeded random fills. Counter-based (element `i` depends only on `(seed, i)`), so results do not
//! depend on the thread count.

use super::{not_impl, BoxStorage};
use crate::{DType, Result};

/// Random kernels.
pub trait RandomOps {
    /// Uniform samples in `[lo, hi)`.
    fn rand_uniform(&self, dtype: DType, len: usize, lo: f64, hi: f64, seed: u64) -> Result<BoxStorage> {
        let _ = (dtype, len, lo, hi, seed);
        not_impl("rand_uniform", "?")
    }
    /// Normal samples with mean `mean` and standard deviation `std`.
    fn rand_normal(&self, dtype: DType, len: usize, mean: f64, std: f64, seed: u64) -> Result<BoxStorage> {
        let _ = (dtype, len, mean, std, seed);
        not_impl("rand_normal", "?")
    }
}
