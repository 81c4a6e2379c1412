//! Scaling laws: the loss a model of N parameters reaches on D tokens, and how to split a
//! compute budget C ≈ 6·N·D between N and D (book §12.4; seed 003 §6; seed 002 "scaling laws").
//!
//! **Chinchilla** (Hoffmann et al. 2022, approach 3, eq. 2 and App. D.2; seed 003 eq. 6.1–6.2):
//! `L(N, D) = E + A/N^α + B/D^β` with E = 1.69, A = 406.4, B = 410.7, α = 0.34, β = 0.28.
//! Minimising it on the curve C = 6·N·D (their eq. 4) gives the closed form
//! ```text
//! N_opt(C) = G·(C/6)^a,   D_opt(C) = G⁻¹·(C/6)^b,   G = (α·A / (β·B))^(1/(α+β)),
//! a = β/(α+β) = 0.452,    b = α/(α+β) = 0.548
//! ```
//! (the paper's own, unrounded fit gives a = 0.46; REFERENCE.md's 0.452 is these constants').
//! With these published constants D_opt/N_opt grows as C^0.096 — about 28 tokens per parameter
//! at C = 2.6e18 and 108 at 2.8e24 — not the ≈ 20 of the paper's approaches 1 and 2; the
//! closed form is reported as the fit gives it.
//!
//! **Chinchilla's rule of thumb** (approaches 1 and 2, Table 3): the compute-optimal model
//! trains on about 20 tokens per parameter, so under C = 6·N·D: `N_opt = √(C / 120)`,
//! `D_opt = 20·N_opt` ([`tokens_per_param_rule`]).
//!
//! **Kaplan** (Kaplan et al. 2020, eqs. 1.1–1.5 and Fig. 14 / Table 6; seed 003 §6.1): with N
//! the non-embedding parameters, `L(N) = (N_c/N)^α_N` (N_c = 8.8e13, α_N = 0.076),
//! `L(D) = (D_c/D)^α_D` (D_c = 5.4e13, α_D = 0.095), `L(C_min) = (C_c/C_min)^α_C` (C_c = 3.1e8
//! PF-days, α_C = 0.050), `L(N, D) = ((N_c/N)^(α_N/α_D) + D_c/D)^α_D`, and the compute-efficient
//! size `N_opt = 1.3e9 · (C_min / PF-day)^0.73`.

use crate::checked::positive_f64;
use crate::error::Result;
use serde::Serialize;

/// One petaflop/s-day, 10¹⁵ · 86400 = 8.64·10¹⁹ FLOPs (Kaplan's compute unit).
pub const PF_DAY: f64 = 8.64e19;

/// A Chinchilla-form parametric loss `L(N, D) = E + A/N^α + B/D^β`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Chinchilla {
    /// Irreducible loss E (nats/token).
    pub e: f64,
    /// Model-size coefficient A.
    pub a: f64,
    /// Data coefficient B.
    pub b: f64,
    /// Model-size exponent α.
    pub alpha: f64,
    /// Data exponent β.
    pub beta: f64,
}

/// A compute-optimal allocation under a budget.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ComputeOptimal {
    /// The budget C in FLOPs.
    pub compute: f64,
    /// Parameters N_opt.
    pub params: f64,
    /// Training tokens D_opt (`C / (6·N_opt)`).
    pub tokens: f64,
    /// `D_opt / N_opt` (≈ 20 at Chinchilla's scale).
    pub tokens_per_param: f64,
    /// The predicted loss at (N_opt, D_opt), where the law gives one (Chinchilla).
    pub loss: Option<f64>,
}

impl Chinchilla {
    /// Hoffmann et al.'s approach-3 fit: E = 1.69, A = 406.4, B = 410.7, α = 0.34, β = 0.28.
    pub const APPROACH_3: Chinchilla = Chinchilla { e: 1.69, a: 406.4, b: 410.7, alpha: 0.34, beta: 0.28 };

    /// `L(N, D) = E + A/N^α + B/D^β`, for N parameters trained on D tokens.
    pub fn loss(&self, params: f64, tokens: f64) -> Result<f64> {
        let n = positive_f64("parameters", params)?;
        let d = positive_f64("tokens", tokens)?;
        Ok(self.e + self.a / n.powf(self.alpha) + self.b / d.powf(self.beta))
    }

    /// The exponent a of `N_opt ∝ C^a`: `β/(α+β)` (0.452 for approach 3).
    pub fn params_exponent(&self) -> f64 {
        self.beta / (self.alpha + self.beta)
    }

    /// The exponent b of `D_opt ∝ C^b`: `α/(α+β)` (0.548 for approach 3).
    pub fn tokens_exponent(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }

    /// `G = (α·A / (β·B))^(1/(α+β))`.
    pub fn g(&self) -> f64 {
        ((self.alpha * self.a) / (self.beta * self.b)).powf(1.0 / (self.alpha + self.beta))
    }

    /// The budget C for which N parameters are compute-optimal, inverting `N = G·(C/6)^a`:
    /// `C = 6·(N/G)^(1/a)`.
    pub fn compute_for_params(&self, params: f64) -> Result<f64> {
        let n = positive_f64("parameters", params)?;
        Ok(6.0 * (n / self.g()).powf(1.0 / self.params_exponent()))
    }

    /// The N and D minimising `L` under `6·N·D = C`: `N = G·(C/6)^a`, `D = G⁻¹·(C/6)^b`.
    pub fn compute_optimal(&self, compute: f64) -> Result<ComputeOptimal> {
        let c = positive_f64("compute budget", compute)?;
        let g = self.g();
        let params = g * (c / 6.0).powf(self.params_exponent());
        let tokens = (c / 6.0).powf(self.tokens_exponent()) / g;
        Ok(ComputeOptimal {
            compute: c,
            params,
            tokens,
            tokens_per_param: tokens / params,
            loss: Some(self.loss(params, tokens)?),
        })
    }
}

/// Chinchilla's rule of thumb: `ratio` tokens per parameter (20 in Hoffmann et al.'s approaches 1
/// and 2) on the budget `6·N·D = C`: `N = √(C / (6·ratio))`, `D = ratio·N`.
pub fn tokens_per_param_rule(compute: f64, ratio: f64) -> Result<ComputeOptimal> {
    let c = positive_f64("compute budget", compute)?;
    let r = positive_f64("tokens per parameter", ratio)?;
    let params = (c / (6.0 * r)).sqrt();
    Ok(ComputeOptimal { compute: c, params, tokens: r * params, tokens_per_param: r, loss: None })
}

/// Kaplan et al.'s power laws (constants in the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Kaplan {
    /// N_c (non-embedding parameters).
    pub n_c: f64,
    /// α_N.
    pub alpha_n: f64,
    /// D_c (tokens).
    pub d_c: f64,
    /// α_D.
    pub alpha_d: f64,
    /// C_c^min (PF-days).
    pub c_c: f64,
    /// α_C^min.
    pub alpha_c: f64,
    /// Coefficient of `N_opt = k · (C_min/PF-day)^e` (non-embedding parameters).
    pub n_opt_coeff: f64,
    /// Exponent e of `N_opt ∝ C_min^e`.
    pub n_opt_exponent: f64,
}

impl Kaplan {
    /// The paper's values (eqs. 1.1–1.3, Fig. 14 / Table 6).
    pub const PAPER: Kaplan = Kaplan {
        n_c: 8.8e13,
        alpha_n: 0.076,
        d_c: 5.4e13,
        alpha_d: 0.095,
        c_c: 3.1e8,
        alpha_c: 0.050,
        n_opt_coeff: 1.3e9,
        n_opt_exponent: 0.73,
    };

    /// `L(N) = (N_c/N)^α_N`: converged loss of N non-embedding parameters with ample data.
    pub fn loss_params(&self, params: f64) -> Result<f64> {
        Ok((self.n_c / positive_f64("parameters", params)?).powf(self.alpha_n))
    }

    /// `L(D) = (D_c/D)^α_D`: loss of a large model trained on D tokens with early stopping.
    pub fn loss_tokens(&self, tokens: f64) -> Result<f64> {
        Ok((self.d_c / positive_f64("tokens", tokens)?).powf(self.alpha_d))
    }

    /// `L(C_min) = (C_c/C_min)^α_C`, C in FLOPs (converted to PF-days).
    pub fn loss_compute(&self, compute: f64) -> Result<f64> {
        Ok((self.c_c / (positive_f64("compute budget", compute)? / PF_DAY)).powf(self.alpha_c))
    }

    /// `L(N, D) = ((N_c/N)^(α_N/α_D) + D_c/D)^α_D` (eq. 1.5).
    pub fn loss(&self, params: f64, tokens: f64) -> Result<f64> {
        let n = positive_f64("parameters", params)?;
        let d = positive_f64("tokens", tokens)?;
        Ok(((self.n_c / n).powf(self.alpha_n / self.alpha_d) + self.d_c / d).powf(self.alpha_d))
    }

    /// The compute-efficient size `N_opt = 1.3e9 · (C/PF-day)^0.73` and `D = C / (6·N_opt)`.
    pub fn compute_optimal(&self, compute: f64) -> Result<ComputeOptimal> {
        let c = positive_f64("compute budget", compute)?;
        let params = self.n_opt_coeff * (c / PF_DAY).powf(self.n_opt_exponent);
        let tokens = c / (6.0 * params);
        Ok(ComputeOptimal { compute: c, params, tokens, tokens_per_param: tokens / params, loss: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimum_is_on_the_budget_and_minimal() {
        let ch = Chinchilla::APPROACH_3;
        let o = ch.compute_optimal(1e23).unwrap();
        assert!((6.0 * o.params * o.tokens / 1e23 - 1.0).abs() < 1e-12);
        let l = o.loss.unwrap();
        for f in [0.9, 1.1] {
            let n = o.params * f;
            assert!(ch.loss(n, 1e23 / (6.0 * n)).unwrap() > l);
        }
    }
}
