//! Reductions: sum, mean, max, min over dims; argmax/argmin; `sum_to` (the adjoint of
//! broadcasting).
//!
//! Backward: `sum` broadcasts g back over the reduced dims; `mean` also divides by the count;
//! `max`/`min` send g to the positions equal to the extremum, split evenly between ties
//! (PyTorch's `amax` rule).

use crate::backend::{CmpOp, ReduceOp};
use crate::shape::resolve_dim;
use crate::tensor::check_compute;
use crate::{Error, Result, Tensor};

fn resolve_dims(op: &'static str, dims: &[isize], rank: usize) -> Result<Vec<usize>> {
    let mut out: Vec<usize> = dims.iter().map(|&d| resolve_dim(op, d, rank)).collect::<Result<_>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn keep_shape(shape: &[usize], dims: &[usize]) -> Vec<usize> {
    shape.iter().enumerate().map(|(i, &s)| if dims.contains(&i) { 1 } else { s }).collect()
}

fn squeeze_shape(shape: &[usize], dims: &[usize]) -> Vec<usize> {
    shape.iter().enumerate().filter(|(i, _)| !dims.contains(i)).map(|(_, &s)| s).collect()
}

impl Tensor {
    fn reduce_raw(&self, op: ReduceOp, dims: &[usize]) -> Result<Tensor> {
        let s = self.device().backend().reduce(op, &**self.storage(), self.layout(), dims)?;
        Tensor::from_storage(s, &keep_shape(self.dims(), dims), self.device())
    }

    /// Sum over `dims` (negative dims count from the end); `keepdim` keeps them as size 1.
    pub fn sum(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        check_compute("sum", self)?;
        let d = resolve_dims("sum", dims, self.rank())?;
        let r = self.reduce_raw(ReduceOp::Sum, &d)?;
        let in_shape = self.dims().to_vec();
        let out = r.record("sum", &[self], move |g| Ok(vec![Some(g.broadcast_as(&in_shape)?)]))?;
        if keepdim {
            Ok(out)
        } else {
            out.reshape(&squeeze_shape(self.dims(), &d))
        }
    }

    /// Sum of all elements (shape `[]`).
    pub fn sum_all(&self) -> Result<Tensor> {
        let dims: Vec<isize> = (0..self.rank() as isize).collect();
        self.sum(&dims, false)
    }

    /// Mean over `dims`.
    pub fn mean(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        let d = resolve_dims("mean", dims, self.rank())?;
        let count: usize = d.iter().map(|&i| self.dims()[i]).product();
        self.sum(dims, keepdim)?.scale(1.0 / count.max(1) as f64)
    }

    /// Mean of all elements (shape `[]`).
    pub fn mean_all(&self) -> Result<Tensor> {
        let dims: Vec<isize> = (0..self.rank() as isize).collect();
        self.mean(&dims, false)
    }

    fn extremum(&self, op: ReduceOp, name: &'static str, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        check_compute(name, self)?;
        let d = resolve_dims(name, dims, self.rank())?;
        if d.iter().any(|&i| self.dims()[i] == 0) {
            return Err(Error::BadShape {
                op: name,
                shape: self.dims().to_vec(),
                msg: "reduction over an empty dim".into(),
            });
        }
        let r = self.reduce_raw(op, &d)?;
        let (x, m) = (self.clone(), r.clone());
        let dd = d.clone();
        let out = r.record(name, &[self], move |g| {
            let mask = x.cmp(&m, CmpOp::Eq)?.to_dtype(x.dtype())?;
            let count = mask.reduce_raw(ReduceOp::Sum, &dd)?;
            Ok(vec![Some(mask.mul(&g.div(&count)?)?)])
        })?;
        if keepdim {
            Ok(out)
        } else {
            out.reshape(&squeeze_shape(self.dims(), &d))
        }
    }

    /// Maximum over `dims`.
    pub fn max(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        self.extremum(ReduceOp::Max, "max", dims, keepdim)
    }

    /// Minimum over `dims`.
    pub fn min(&self, dims: &[isize], keepdim: bool) -> Result<Tensor> {
        self.extremum(ReduceOp::Min, "min", dims, keepdim)
    }

    fn arg_extremum(&self, op: ReduceOp, name: &'static str, dim: isize, keepdim: bool) -> Result<Tensor> {
        let d = resolve_dim(name, dim, self.rank())?;
        if self.dims()[d] == 0 {
            return Err(Error::BadShape {
                op: name,
                shape: self.dims().to_vec(),
                msg: "reduction over an empty dim".into(),
            });
        }
        let r = self.reduce_raw(op, &[d])?;
        if keepdim {
            Ok(r)
        } else {
            r.reshape(&squeeze_shape(self.dims(), &[d]))
        }
    }

    /// Index (`I64`) of the first maximum along `dim` (not differentiable).
    pub fn argmax(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        self.arg_extremum(ReduceOp::ArgMax, "argmax", dim, keepdim)
    }

    /// Index (`I64`) of the first minimum along `dim` (not differentiable).
    pub fn argmin(&self, dim: isize, keepdim: bool) -> Result<Tensor> {
        self.arg_extremum(ReduceOp::ArgMin, "argmin", dim, keepdim)
    }

    /// Sums this tensor down to `shape`, the inverse of broadcasting `shape` up to `self.dims()`
    /// (used by every broadcasting backward).
    pub fn sum_to(&self, shape: &[usize]) -> Result<Tensor> {
        if self.dims() == shape {
            return Ok(self.clone());
        }
        let rank = self.rank();
        if shape.len() > rank {
            return Err(Error::Broadcast { op: "sum_to", lhs: self.dims().to_vec(), rhs: shape.to_vec() });
        }
        let lead = rank - shape.len();
        let mut dims: Vec<isize> = (0..lead as isize).collect();
        for (i, &s) in shape.iter().enumerate() {
            let have = self.dims()[lead + i];
            if s == 1 && have != 1 {
                dims.push((lead + i) as isize);
            } else if s != have {
                return Err(Error::Broadcast { op: "sum_to", lhs: self.dims().to_vec(), rhs: shape.to_vec() });
            }
        }
        self.sum(&dims, true)?.reshape(shape)
    }
}
