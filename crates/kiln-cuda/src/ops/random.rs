//! Seeded fills (`RandomOps`): kiln-cpu's counter-based splitmix64 generator, so the same seed
//! gives the same values on both backends (kernels in `kernels/random.cu`).

use crate::backend::{boxed, grid_1d, launch, CudaBackend};
use crate::storage::dtype_code;
use kiln_core::backend::{BoxStorage, RandomOps};
use kiln_core::{DType, Result};

impl RandomOps for CudaBackend {
    fn rand_uniform(&self, dtype: DType, len: usize, lo: f64, hi: f64, seed: u64) -> Result<BoxStorage> {
        let y = self.alloc(dtype, len)?;
        if len > 0 {
            launch!(self, "rand_uniform_any", grid_1d(len); dtype_code(dtype), self.ptr(&y, 0), len as i64, lo, hi, seed)?;
        }
        Ok(boxed(y))
    }

    fn rand_normal(&self, dtype: DType, len: usize, mean: f64, std: f64, seed: u64) -> Result<BoxStorage> {
        let y = self.alloc(dtype, len)?;
        if len > 0 {
            launch!(self, "rand_normal_any", grid_1d(len); dtype_code(dtype), self.ptr(&y, 0), len as i64, mean, std, seed)?;
        }
        Ok(boxed(y))
    }
}
