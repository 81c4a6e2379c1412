//! Checked integer arithmetic for exact counts: every product and sum of sizes goes through
//! these, so absurd inputs give [`AnalysisError::Overflow`] instead of a wrapped number.

use crate::error::{AnalysisError, Result};

/// `∏ xs`, or an overflow error naming `what`.
pub(crate) fn prod(what: &'static str, xs: &[u128]) -> Result<u128> {
    xs.iter().try_fold(1u128, |acc, &x| acc.checked_mul(x)).ok_or(AnalysisError::Overflow { what })
}

/// `Σ xs`, or an overflow error naming `what`.
pub(crate) fn sum(what: &'static str, xs: &[u128]) -> Result<u128> {
    xs.iter().try_fold(0u128, |acc, &x| acc.checked_add(x)).ok_or(AnalysisError::Overflow { what })
}

/// `Σ xs`, saturating at `u64::MAX` (for the convenience totals of public structs).
pub(crate) fn sat64(xs: &[u64]) -> u64 {
    xs.iter().fold(0u64, |acc, &x| acc.saturating_add(x))
}

/// `Σ xs`, saturating at `u128::MAX`.
pub(crate) fn sat128(xs: &[u128]) -> u128 {
    xs.iter().fold(0u128, |acc, &x| acc.saturating_add(x))
}

/// `x` as a `u64`, or an overflow error naming `what`.
pub(crate) fn to_u64(what: &'static str, x: u128) -> Result<u64> {
    u64::try_from(x).map_err(|_| AnalysisError::Overflow { what })
}

/// `⌈a / b⌉` for `b > 0` (`b = 0` is treated as 1).
pub(crate) fn div_ceil(a: u128, b: u128) -> u128 {
    a.div_ceil(b.max(1))
}

/// Checks that `x ≥ 1`, naming the argument in the error.
pub(crate) fn positive(what: &'static str, x: u64) -> Result<u64> {
    if x == 0 {
        return Err(AnalysisError::InvalidInput { what, msg: "must be at least 1".into() });
    }
    Ok(x)
}

/// Checks that `x` is finite and `> 0`, naming the argument in the error.
pub(crate) fn positive_f64(what: &'static str, x: f64) -> Result<f64> {
    if !(x.is_finite() && x > 0.0) {
        return Err(AnalysisError::InvalidInput { what, msg: format!("must be finite and > 0, got {x}") });
    }
    Ok(x)
}
