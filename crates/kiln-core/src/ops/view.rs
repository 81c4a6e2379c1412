//! Views and data movement: reshape, permute/transpose, narrow, broadcast, contiguous,
//! (un)squeeze, concat/split.
//!
//! Views share storage and only change the [`crate::Layout`]; their backward applies the inverse
//! view to g (`narrow` pads g with zeros, `broadcast_as` sums g back, `cat` narrows g).

use crate::shape::{numel, resolve_dim};
use crate::tensor::{check_same_device, check_same_dtype};
use crate::{Error, Layout, Result, Tensor};

impl Tensor {
    /// A contiguous tensor with the same values (itself when already contiguous).
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        let s = self.device().backend().copy_strided(&**self.storage(), self.layout())?;
        Tensor::from_op(s, self.dims(), self.device(), "contiguous", &[self], |g| Ok(vec![Some(g.clone())]))
    }

    /// Same elements, new shape (one dim may be given as `usize::MAX`… use [`Tensor::reshape`]
    /// with explicit sizes). Copies first when the layout is not contiguous.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::BadShape {
                op: "reshape",
                shape: self.dims().to_vec(),
                msg: format!("cannot reshape {} elements into {:?}", self.numel(), shape),
            });
        }
        if shape == self.dims() {
            return Ok(self.clone());
        }
        let src = self.contiguous()?;
        let v = src.with_layout(src.layout().reshape(shape)?);
        let in_shape = self.dims().to_vec();
        v.record("reshape", &[&src], move |g| Ok(vec![Some(g.reshape(&in_shape)?)]))
    }

    /// Reorders dims: output dim `i` is input dim `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let v = self.with_layout(self.layout().permute(perm)?);
        let mut inv = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inv[p] = i;
        }
        v.record("permute", &[self], move |g| Ok(vec![Some(g.permute(&inv)?)]))
    }

    /// Swaps dims `d0` and `d1` (negative counts from the end).
    pub fn transpose(&self, d0: isize, d1: isize) -> Result<Tensor> {
        let a = resolve_dim("transpose", d0, self.rank())?;
        let b = resolve_dim("transpose", d1, self.rank())?;
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Transpose of the last two dims.
    pub fn t(&self) -> Result<Tensor> {
        self.transpose(-2, -1)
    }

    /// Elements `start..start + len` along `dim` (a view).
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        let d = resolve_dim("narrow", dim, self.rank())?;
        let v = self.with_layout(self.layout().narrow(d, start, len)?);
        let (in_shape, dtype, device) = (self.dims().to_vec(), self.dtype(), self.device().clone());
        v.record("narrow", &[self], move |g| {
            let full = Tensor::zeros(&in_shape, dtype, &device)?;
            full.narrow(d as isize, start, len)?.assign_(g)?;
            Ok(vec![Some(full)])
        })
    }

    /// Broadcast view to `shape` (NumPy rules).
    pub fn broadcast_as(&self, shape: &[usize]) -> Result<Tensor> {
        if shape == self.dims() {
            return Ok(self.clone());
        }
        let v = self.with_layout(self.layout().broadcast_as(shape)?);
        let in_shape = self.dims().to_vec();
        v.record("broadcast_as", &[self], move |g| Ok(vec![Some(g.sum_to(&in_shape)?)]))
    }

    /// Inserts a size-1 dim at `dim` (`dim` may equal the rank).
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        let d = resolve_dim("unsqueeze", dim, self.rank() + 1)?;
        let mut shape = self.dims().to_vec();
        shape.insert(d, 1);
        let mut strides = self.layout().strides().to_vec();
        strides.insert(d, strides.get(d).map_or(1, |s| *s * shape.get(d + 1).copied().unwrap_or(1)));
        let v = self.with_layout(Layout::new(shape, strides, self.layout().offset()));
        let in_shape = self.dims().to_vec();
        v.record("unsqueeze", &[self], move |g| Ok(vec![Some(g.reshape(&in_shape)?)]))
    }

    /// Removes dim `dim`, which must have size 1.
    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        let d = resolve_dim("squeeze", dim, self.rank())?;
        if self.dims()[d] != 1 {
            return Err(Error::BadShape {
                op: "squeeze",
                shape: self.dims().to_vec(),
                msg: format!("dim {d} is not 1"),
            });
        }
        let mut shape = self.dims().to_vec();
        let mut strides = self.layout().strides().to_vec();
        shape.remove(d);
        strides.remove(d);
        let v = self.with_layout(Layout::new(shape, strides, self.layout().offset()));
        let in_shape = self.dims().to_vec();
        v.record("squeeze", &[self], move |g| Ok(vec![Some(g.reshape(&in_shape)?)]))
    }

    /// Concatenates tensors along `dim`; all other dims must agree.
    pub fn cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let first = tensors.first().ok_or(Error::Invalid { op: "cat", msg: "no tensors given".into() })?;
        let d = resolve_dim("cat", dim, first.rank())?;
        let mut shape = first.dims().to_vec();
        shape[d] = 0;
        for t in tensors {
            check_same_device("cat", first, t)?;
            check_same_dtype("cat", first, t)?;
            let ok = t.rank() == first.rank() && (0..t.rank()).all(|i| i == d || t.dims()[i] == first.dims()[i]);
            if !ok {
                return Err(Error::ShapeMismatch { op: "cat", lhs: first.dims().to_vec(), rhs: t.dims().to_vec() });
            }
            shape[d] += t.dims()[d];
        }
        let out = Tensor::zeros(&shape, first.dtype(), first.device())?;
        let mut sizes = Vec::with_capacity(tensors.len());
        let mut start = 0;
        for t in tensors {
            let n = t.dims()[d];
            out.with_layout(out.layout().narrow(d, start, n)?).assign_(t)?;
            sizes.push(n);
            start += n;
        }
        out.record("cat", tensors, move |g| {
            let mut start = 0;
            let mut grads = Vec::with_capacity(sizes.len());
            for &n in &sizes {
                grads.push(Some(g.narrow(d as isize, start, n)?));
                start += n;
            }
            Ok(grads)
        })
    }

    /// Splits along `dim` into pieces of the given sizes (views; sizes must sum to the dim).
    pub fn split(&self, sizes: &[usize], dim: isize) -> Result<Vec<Tensor>> {
        let d = resolve_dim("split", dim, self.rank())?;
        if sizes.iter().sum::<usize>() != self.dims()[d] {
            return Err(Error::BadShape {
                op: "split",
                shape: self.dims().to_vec(),
                msg: format!("sizes {sizes:?} do not sum to dim {d}"),
            });
        }
        let mut start = 0;
        sizes
            .iter()
            .map(|&n| {
                let t = self.narrow(d as isize, start, n);
                start += n;
                t
            })
            .collect()
    }

    /// Splits along `dim` into `n` equal pieces.
    pub fn chunk(&self, n: usize, dim: isize) -> Result<Vec<Tensor>> {
        let d = resolve_dim("chunk", dim, self.rank())?;
        if n == 0 || !self.dims()[d].is_multiple_of(n) {
            return Err(Error::BadShape {
                op: "chunk",
                shape: self.dims().to_vec(),
                msg: format!("dim {d} is not divisible into {n} chunks"),
            });
        }
        self.split(&vec![self.dims()[d] / n; n], dim)
    }
}
