//! Reductions over a set of dims (`ReduceOps`); the kernel is in `kernels/reduce.cu`.

use crate::backend::{boxed, cu, launch, want, CudaBackend, Strided};
use kiln_core::backend::{BoxStorage, ReduceOp, ReduceOps, Storage};
use kiln_core::{DType, Error, Layout, Result};

impl ReduceOps for CudaBackend {
    fn reduce(&self, op: ReduceOp, x: &dyn Storage, lx: &Layout, dims: &[usize]) -> Result<BoxStorage> {
        let x = cu("reduce", x)?;
        want("reduce", x, DType::F32)?;
        let rank = lx.rank();
        if let Some(&d) = dims.iter().find(|&&d| d >= rank) {
            return Err(Error::DimOutOfRange { op: "reduce", dim: d as isize, rank });
        }
        let arg = matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin);
        if arg && dims.len() != 1 {
            return Err(Error::Invalid { op: "reduce", msg: "argmax/argmin reduce exactly one dim".into() });
        }
        // kept dims first, reduced dims last: output o's inputs are elements o·n_red .. (o+1)·n_red
        let mut perm: Vec<usize> = (0..rank).filter(|d| !dims.contains(d)).collect();
        perm.extend((0..rank).filter(|d| dims.contains(d)));
        let view = lx.permute(&perm)?;
        let n_red: usize = dims.iter().map(|&d| lx.shape()[d]).product();
        let n_out: usize = (0..rank).filter(|d| !dims.contains(d)).map(|d| lx.shape()[d]).product();
        if arg && n_red == 0 {
            return Err(Error::BadShape {
                op: "reduce",
                shape: lx.shape().to_vec(),
                msg: "argmax/argmin of an empty dim".into(),
            });
        }
        let out = self.alloc(if arg { DType::I64 } else { DType::F32 }, n_out)?;
        if n_out > 0 {
            let code = match op {
                ReduceOp::Sum => 0i32,
                ReduceOp::Max => 1,
                ReduceOp::Min => 2,
                ReduceOp::ArgMax => 3,
                ReduceOp::ArgMin => 4,
            };
            let threads = (n_red.div_ceil(32) * 32).clamp(32, 256) as u32;
            let cfg = cudarc::driver::LaunchConfig {
                grid_dim: (n_out.clamp(1, 1 << 16) as u32, 1, 1),
                block_dim: (threads, 1, 1),
                shared_mem_bytes: 0,
            };
            launch!(self, "reduce_f32", cfg; code, Strided::of("reduce", &view)?, self.ptr(x, 0), self.ptr(&out, 0), n_out as i64, n_red as i64)?;
        }
        Ok(boxed(out))
    }
}
