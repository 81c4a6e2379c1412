//! [`InputGram`]: the running Gram matrix `Σ x·xᵀ` of the inputs a [`crate::Linear`] sees, the
//! calibration statistic of GPTQ (seed ch. 22 "quantization": the layer-wise Hessian
//! `H = 2·X·Xᵀ`). Attach one to a layer (`Linear::calibration`), run the model forward on
//! calibration text, read it back. Like a PyTorch forward hook, but a plain field.

use kiln_core::{no_grad, Error, Result, Tensor};
use std::sync::Mutex;

/// `Σ x·xᵀ` (in × in, f64) and the number of input rows seen.
#[derive(Debug)]
pub struct InputGram {
    dim: usize,
    state: Mutex<(Vec<f64>, usize)>,
}

impl InputGram {
    /// An empty accumulator for inputs of width `dim`.
    pub fn new(dim: usize) -> InputGram {
        InputGram { dim, state: Mutex::new((vec![0.0; dim * dim], 0)) }
    }

    /// Adds `xᵀ·x` of `x` (…, dim) — one f32 GEMM per call, accumulated in f64.
    pub fn observe(&self, x: &Tensor) -> Result<()> {
        let d = x.dims();
        if d.last() != Some(&self.dim) {
            return Err(Error::ShapeMismatch { op: "InputGram::observe", lhs: d.to_vec(), rhs: vec![self.dim] });
        }
        let rows = x.numel() / self.dim;
        let g = no_grad(|| {
            let x2 = x.reshape(&[rows, self.dim])?; // (N, in)
            x2.t()?.matmul(&x2)?.contiguous()?.to_vec::<f32>() // (in, in)
        })?;
        let mut s = self.state.lock().map_err(|_| Error::Invalid { op: "InputGram", msg: "poisoned lock".into() })?;
        for (a, b) in s.0.iter_mut().zip(&g) {
            *a += *b as f64;
        }
        s.1 += rows;
        Ok(())
    }

    /// The Gram matrix (in × in, row-major) and the number of rows it sums.
    pub fn get(&self) -> Result<(Vec<f64>, usize)> {
        let s = self.state.lock().map_err(|_| Error::Invalid { op: "InputGram", msg: "poisoned lock".into() })?;
        Ok(s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_outer_products() -> Result<()> {
        let dev = kiln_cpu::cpu();
        let g = InputGram::new(3);
        g.observe(&Tensor::from_vec(vec![1f32, 2., 3., 0., 1., 0.], &[1, 2, 3], &dev)?)?;
        g.observe(&Tensor::from_vec(vec![1f32, 0., 0.], &[1, 3], &dev)?)?;
        let (m, n) = g.get()?;
        assert_eq!(n, 3);
        assert_eq!(m, vec![2., 2., 3., 2., 5., 6., 3., 6., 9.]);
        assert!(g.observe(&Tensor::from_vec(vec![1f32, 2.], &[2], &dev)?).is_err());
        Ok(())
    }
}
