//! Finite-difference gradient checking in `f64`.
//!
//! [`gradcheck`] runs `f` on `f64` copies of the inputs, backpropagates `L = Σ w ⊙ f(x)` with fixed
//! pseudo-random weights `w` (so every output element matters with a distinct weight), and compares
//! each analytic `dL/dx_j` with the central difference `(L(x + ε e_j) − L(x − ε e_j)) / 2ε`.
//! Integer inputs (indices, targets) are passed through unchanged and not checked. With
//! `noncontiguous`, every float input of rank ≥ 2 is presented as a transposed (strided) view.

use crate::{no_grad, DType, Error, Result, Tensor};

/// Tolerances and options of [`gradcheck`].
#[derive(Clone, Copy, Debug)]
pub struct GradcheckOpts {
    /// Finite-difference step.
    pub eps: f64,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance (of the numeric gradient).
    pub rtol: f64,
    /// Present rank ≥ 2 float inputs as transposed views.
    pub noncontiguous: bool,
}

impl Default for GradcheckOpts {
    /// `ε = 1e-6`, `atol = 1e-6`, `rtol = 1e-5`: central differences in f64 are accurate to about
    /// ε² · |f'''| + 1e-16/ε ≈ 1e-10, far inside these bounds for smooth ops.
    fn default() -> Self {
        GradcheckOpts { eps: 1e-6, atol: 1e-6, rtol: 1e-5, noncontiguous: false }
    }
}

/// What a passing check saw.
#[derive(Clone, Debug)]
pub struct GradcheckReport {
    /// Ops recorded on the tape by `f` (by name, with repeats removed).
    pub ops: Vec<&'static str>,
    /// Largest |analytic − numeric| over all checked elements.
    pub max_abs_err: f64,
    /// Number of gradient elements compared.
    pub checked: usize,
}

fn weights(n: usize) -> Vec<f64> {
    // A fixed, well-spread sequence in [-1, 1] without zeros (splitmix64).
    (0..n)
        .map(|i| {
            let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let u = (z >> 11) as f64 / (1u64 << 53) as f64;
            if u < 0.5 {
                -0.25 - 1.5 * u
            } else {
                1.5 * u - 0.5
            }
        })
        .collect()
}

fn make_input(values: &[f64], src: &Tensor, opts: &GradcheckOpts) -> Result<Tensor> {
    let dev = src.device();
    if opts.noncontiguous && src.rank() >= 2 {
        // Store the transpose contiguously, then view it transposed: same values, strided layout.
        let mut tshape = src.dims().to_vec();
        let r = tshape.len();
        tshape.swap(r - 1, r - 2);
        let base = Tensor::from_f64(values, src.dims(), DType::F64, dev)?.t()?.contiguous()?.detach();
        debug_assert_eq!(base.dims(), &tshape[..]);
        return base.t().map(|t| t.detach());
    }
    Tensor::from_f64(values, src.dims(), DType::F64, dev)
}

fn loss_of(out: &Tensor, w: &Tensor) -> Result<Tensor> {
    out.mul(w)?.sum_all()
}

/// Checks the analytic gradients of `f` at `inputs` against central finite differences.
/// Float inputs are converted to `f64`. Returns an error describing the worst element on failure.
pub fn gradcheck(
    f: impl Fn(&[Tensor]) -> Result<Tensor>,
    inputs: &[Tensor],
    opts: GradcheckOpts,
) -> Result<GradcheckReport> {
    let values: Vec<Option<Vec<f64>>> = inputs
        .iter()
        .map(|t| if t.dtype().is_float() { t.to_vec_f64().map(Some) } else { Ok(None) })
        .collect::<Result<_>>()?;
    let build = |vals: &[Option<Vec<f64>>]| -> Result<Vec<Tensor>> {
        inputs
            .iter()
            .zip(vals)
            .map(|(t, v)| match v {
                Some(v) => make_input(v, t, &opts),
                None => Ok(t.clone()),
            })
            .collect()
    };

    // Analytic gradients.
    let leaves: Vec<Tensor> = build(&values)?
        .into_iter()
        .zip(&values)
        .map(|(t, v)| if v.is_some() { t.requires_grad_() } else { t })
        .collect();
    let out = f(&leaves)?;
    if out.dtype() != DType::F64 {
        return Err(Error::Invalid { op: "gradcheck", msg: format!("f returned {} (expected f64)", out.dtype()) });
    }
    let w = Tensor::from_f64(&weights(out.numel()), out.dims(), DType::F64, out.device())?;
    let loss = loss_of(&out, &w)?;
    let ops = loss.graph_ops();
    loss.backward()?;

    let mut max_abs_err: f64 = 0.0;
    let mut checked = 0;
    for (i, v) in values.iter().enumerate() {
        let Some(v) = v else { continue };
        let analytic = match leaves[i].grad() {
            Some(g) => g.to_vec_f64()?,
            None => vec![0.0; v.len()],
        };
        for j in 0..v.len() {
            let eval = |delta: f64| -> Result<f64> {
                let mut vals = values.clone();
                if let Some(Some(x)) = vals.get_mut(i) {
                    x[j] += delta;
                }
                no_grad(|| loss_of(&f(&build(&vals)?)?, &w)?.to_scalar())
            };
            let numeric = (eval(opts.eps)? - eval(-opts.eps)?) / (2.0 * opts.eps);
            let err = (analytic[j] - numeric).abs();
            max_abs_err = max_abs_err.max(err);
            checked += 1;
            // NaN in either gradient fails too.
            let ok = err <= opts.atol + opts.rtol * numeric.abs();
            if !ok {
                return Err(Error::Invalid {
                    op: "gradcheck",
                    msg: format!(
                        "input {i} element {j}: analytic {:.10e} vs numeric {:.10e} (ops {:?})",
                        analytic[j], numeric, ops
                    ),
                });
            }
        }
    }
    Ok(GradcheckReport { ops, max_abs_err, checked })
}
