//! Weight pruning during training (seed ch. 22 "pruning"; notes 002): after every optimizer step
//! the smallest-magnitude weights of each block matrix are set to zero, so the model learns to do
//! without them.
//!
//! - **Magnitude** (unstructured): keep the `(1 − s)·n` largest `|w|` of each matrix. The
//!   sparsity ramps from 0 to the target `s_f` between two steps with Zhu & Gupta's (2017) cubic
//!   schedule `s_t = s_f·(1 − (1 − p)³)`, `p` the fraction of the ramp done, so most weights go
//!   early, while the network can still recover.
//! - **N:M** (semi-structured, e.g. 2:4): in every group of `M` consecutive weights of a row keep
//!   the `N` largest — the pattern sparse tensor cores (NVIDIA Ampere and later) multiply at twice
//!   the dense rate. Enforced from the start step on.
//!
//! Masks are recomputed from the weights at every step (no state to checkpoint: pruned weights
//! are exactly 0, so they stay the smallest), and a resumed run continues bit-exactly.

use kiln_core::{Error, Result, Tensor};
use serde::{Deserialize, Serialize};

/// What to prune.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pruning {
    /// Unstructured magnitude pruning to the final fraction `sparsity` of zeros per matrix.
    Magnitude {
        /// Final fraction of zeros, in [0, 1).
        sparsity: f64,
    },
    /// Keep the `n` largest of every `m` consecutive weights of a row.
    NOfM {
        /// Kept per group.
        n: usize,
        /// Group size (divides the row length).
        m: usize,
    },
}

impl Pruning {
    /// Parses `magnitude:0.5` or `2:4`.
    pub fn parse(s: &str) -> Result<Pruning> {
        let bad =
            || Error::Invalid { op: "Pruning::parse", msg: format!("{s:?}: expected magnitude:<sparsity> or N:M") };
        let p = match s.split_once(':').ok_or_else(bad)? {
            ("magnitude", f) => Pruning::Magnitude { sparsity: f.parse().map_err(|_| bad())? },
            (n, m) => Pruning::NOfM { n: n.parse().map_err(|_| bad())?, m: m.parse().map_err(|_| bad())? },
        };
        p.validate()?;
        Ok(p)
    }

    /// Errors for a sparsity outside [0, 1) or `N` ≥ `M`.
    pub fn validate(&self) -> Result<()> {
        let ok = match *self {
            Pruning::Magnitude { sparsity } => (0.0..1.0).contains(&sparsity),
            Pruning::NOfM { n, m } => n >= 1 && n < m,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Invalid { op: "Pruning", msg: format!("{self:?}: need 0 ≤ sparsity < 1, or 1 ≤ N < M") })
        }
    }

    /// The fraction of zeros this pruning asks for at `step`, given the ramp `[start, end)`
    /// (0 before `start`; N:M is `1 − N/M` from `start` on).
    pub fn sparsity_at(&self, step: u64, start: u64, end: u64) -> f64 {
        if step < start {
            return 0.0;
        }
        match *self {
            Pruning::Magnitude { sparsity } => {
                let p = if end <= start { 1.0 } else { ((step - start) as f64 / (end - start) as f64).min(1.0) };
                sparsity * (1.0 - (1.0 - p).powi(3))
            }
            Pruning::NOfM { n, m } => 1.0 - n as f64 / m as f64,
        }
    }

    /// Zeroes the pruned weights of `w` (rows, cols) in place at the given `sparsity` (ignored
    /// by N:M, which prunes every group); returns how many weights are now zero.
    pub fn apply_(&self, w: &Tensor, sparsity: f64) -> Result<usize> {
        let dims = w.dims().to_vec();
        let mut v = w.contiguous()?.to_vec::<f32>()?;
        match *self {
            Pruning::Magnitude { .. } => magnitude_(&mut v, sparsity),
            Pruning::NOfM { n, m } => {
                if dims.len() != 2 || !dims[1].is_multiple_of(m) {
                    return Err(Error::Invalid {
                        op: "Pruning::apply_",
                        msg: format!("{n}:{m} pruning needs rows that are whole groups of {m}, shape {dims:?}"),
                    });
                }
                n_of_m_(&mut v, n, m);
            }
        }
        let zeros = v.iter().filter(|x| **x == 0.0).count();
        w.assign_(&Tensor::from_vec(v, &dims, w.device())?)?;
        Ok(zeros)
    }
}

/// Zeroes the `round(s·n)` smallest `|w|` (ties broken by position).
fn magnitude_(w: &mut [f32], sparsity: f64) {
    let k = ((sparsity * w.len() as f64).round() as usize).min(w.len());
    if k == 0 {
        return;
    }
    let mut order: Vec<u32> = (0..w.len() as u32).collect();
    order.select_nth_unstable_by(k - 1, |&a, &b| w[a as usize].abs().total_cmp(&w[b as usize].abs()).then(a.cmp(&b)));
    for &i in &order[..k] {
        w[i as usize] = 0.0;
    }
}

/// In every group of `m` consecutive weights, zeroes all but the `n` largest `|w|` (ties: the
/// earlier weight is kept).
fn n_of_m_(w: &mut [f32], n: usize, m: usize) {
    let mut idx: Vec<usize> = Vec::with_capacity(m);
    for g in w.chunks_exact_mut(m) {
        idx.clear();
        idx.extend(0..m);
        idx.sort_by(|&a, &b| g[b].abs().total_cmp(&g[a].abs()).then(a.cmp(&b)));
        for &i in &idx[n..] {
            g[i] = 0.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magnitude_keeps_the_largest() {
        let mut w = vec![0.5, -3.0, 0.1, 2.0, -0.2, 1.0];
        magnitude_(&mut w, 0.5);
        assert_eq!(w, vec![0.0, -3.0, 0.0, 2.0, 0.0, 1.0]);
    }

    #[test]
    fn two_of_four_per_group() {
        let mut w = vec![1.0, -4.0, 3.0, 0.5, 0.1, 0.2, -0.3, 0.4];
        n_of_m_(&mut w, 2, 4);
        assert_eq!(w, vec![0.0, -4.0, 3.0, 0.0, 0.0, 0.0, -0.3, 0.4]);
    }

    #[test]
    fn cubic_ramp_and_parsing() -> Result<()> {
        let p = Pruning::parse("magnitude:0.8")?;
        assert_eq!(p.sparsity_at(9, 10, 20), 0.0);
        assert_eq!(p.sparsity_at(10, 10, 20), 0.0);
        assert!((p.sparsity_at(15, 10, 20) - 0.8 * (1.0 - 0.125)).abs() < 1e-12);
        assert_eq!(p.sparsity_at(25, 10, 20), 0.8);
        assert_eq!(Pruning::parse("2:4")?, Pruning::NOfM { n: 2, m: 4 });
        assert_eq!(Pruning::parse("2:4")?.sparsity_at(0, 0, 5), 0.5);
        for bad in ["magnitude:1.0", "4:2", "0:4", "magnitude", "x:y", "magnitude:-0.1"] {
            assert!(Pruning::parse(bad).is_err(), "{bad}");
        }
        Ok(())
    }
}
