//! Training time and utilisation (seed 003 §5, eqs. 5.1–5.4; seed 004 "Example: LLaMA 65B";
//! book §12.1; Chowdhery et al. 2022, PaLM App. B, for MFU; Korthikanti et al. 2022 for HFU).
//!
//! ```text
//! time = total FLOPs / (devices · peak FLOP/s · MFU)          total ≈ 6·N·D
//! MFU  = tokens/s · model FLOPs per token    / peak FLOP/s     (fwd + bwd, no recomputation)
//! HFU  = tokens/s · hardware FLOPs per token / peak FLOP/s     (with recomputation)
//! ```
//! Example (seed 004): LLaMA-65B, N = 65e9, D = 1.4e12 → 6ND = 5.46e23 FLOPs; 2048 A100s at
//! 312 TFLOP/s (bf16 dense) and 45 % MFU sustain 2.88e17 FLOP/s → 1.90e6 s ≈ 22.0 days.

use crate::arch::Arch;
use crate::checked::{positive, positive_f64};
use crate::error::{AnalysisError, Result};
use crate::flops::{training_flops, Recompute};
use serde::Serialize;

/// Dense peak FLOP/s of common accelerators (vendor datasheets, without sparsity), by name.
pub const PEAKS: [(&str, f64); 6] = [
    ("a100-bf16", 312e12),
    ("a100-tf32", 156e12),
    ("h100-sxm-bf16", 989e12),
    ("h100-pcie-bf16", 756e12),
    ("v100-fp16", 125e12),
    ("h200-bf16", 989e12),
];

/// The peak FLOP/s of a [`PEAKS`] name, or of a number (`312e12`).
pub fn peak_flops(spec: &str) -> Result<f64> {
    let key = spec.trim().to_ascii_lowercase();
    if let Some((_, p)) = PEAKS.iter().find(|(n, _)| *n == key) {
        return Ok(*p);
    }
    let p: f64 = key.parse().map_err(|_| AnalysisError::InvalidInput {
        what: "peak FLOP/s",
        msg: format!(
            "{spec:?} is neither a number nor one of {}",
            PEAKS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ),
    })?;
    positive_f64("peak FLOP/s", p)
}

/// Wall-clock time of a training run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TrainTime {
    /// Total FLOPs of the run.
    pub flops: f64,
    /// Devices.
    pub devices: u64,
    /// Peak FLOP/s of one device.
    pub peak_flops: f64,
    /// Model FLOPs utilisation, in (0, 1].
    pub mfu: f64,
    /// Sustained FLOP/s of the cluster, `devices · peak · MFU`.
    pub sustained_flops: f64,
    /// `flops / sustained_flops`.
    pub seconds: f64,
    /// The same in days.
    pub days: f64,
    /// Device-hours, `devices · seconds / 3600` (what a cloud bills).
    pub device_hours: f64,
}

/// The time `flops` take on `devices` devices of `peak_flops` each at utilisation `mfu`.
pub fn training_time(flops: f64, devices: u64, peak_flops: f64, mfu: f64) -> Result<TrainTime> {
    positive_f64("training FLOPs", flops)?;
    positive("devices", devices)?;
    positive_f64("peak FLOP/s", peak_flops)?;
    check_fraction("MFU", mfu)?;
    let sustained_flops = devices as f64 * peak_flops * mfu;
    let seconds = flops / sustained_flops;
    Ok(TrainTime {
        flops,
        devices,
        peak_flops,
        mfu,
        sustained_flops,
        seconds,
        days: seconds / 86_400.0,
        device_hours: devices as f64 * seconds / 3600.0,
    })
}

/// The time of training N parameters on D tokens, with `6·N·D` FLOPs (seed 003 eq. 5.2).
pub fn training_time_6nd(params: f64, tokens: f64, devices: u64, peak_flops: f64, mfu: f64) -> Result<TrainTime> {
    positive_f64("parameters", params)?;
    positive_f64("tokens", tokens)?;
    training_time(crate::flops::six_n_d(params, tokens), devices, peak_flops, mfu)
}

/// `x` in (0, 1].
fn check_fraction(what: &'static str, x: f64) -> Result<f64> {
    if !(x.is_finite() && x > 0.0 && x <= 1.0) {
        return Err(AnalysisError::InvalidInput { what, msg: format!("must be in (0, 1], got {x}") });
    }
    Ok(x)
}

/// Utilisation measured from throughput: `tokens_per_s · flops_per_token / peak_flops`.
/// With model FLOPs per token (forward + backward, no recomputation) this is MFU; with hardware
/// FLOPs per token (including recomputation) it is HFU. `peak_flops` is the peak of all devices
/// the throughput was measured on. (Not clamped to 1: a value above 1 means a wrong peak.)
pub fn utilisation(tokens_per_s: f64, flops_per_token: f64, peak_flops: f64) -> Result<f64> {
    positive_f64("tokens/s", tokens_per_s)?;
    positive_f64("FLOPs per token", flops_per_token)?;
    positive_f64("peak FLOP/s", peak_flops)?;
    Ok(tokens_per_s * flops_per_token / peak_flops)
}

/// MFU and HFU of training `arch` at B sequences of S tokens from a measured throughput.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Utilisation {
    /// Measured tokens per second.
    pub tokens_per_s: f64,
    /// Peak FLOP/s of the devices used.
    pub peak_flops: f64,
    /// Model FLOPs per token, `3 × forward / (B·S)`.
    pub model_flops_per_token: f64,
    /// Hardware FLOPs per token (with the recomputation).
    pub hardware_flops_per_token: f64,
    /// Model FLOPs utilisation.
    pub mfu: f64,
    /// Hardware FLOPs utilisation.
    pub hfu: f64,
}

/// MFU and HFU of a training run of `arch` on B×S batches measured at `tokens_per_s` on
/// devices of total peak `peak_flops`, with `recompute` deciding the hardware FLOPs.
pub fn training_utilisation(
    arch: &Arch,
    batch: u64,
    seq: u64,
    recompute: Recompute,
    tokens_per_s: f64,
    peak_flops: f64,
) -> Result<Utilisation> {
    let f = training_flops(arch, batch, seq, recompute)?;
    let tokens = batch as f64 * seq as f64;
    let model_flops_per_token = f.model as f64 / tokens;
    let hardware_flops_per_token = f.hardware as f64 / tokens;
    Ok(Utilisation {
        tokens_per_s,
        peak_flops,
        model_flops_per_token,
        hardware_flops_per_token,
        mfu: utilisation(tokens_per_s, model_flops_per_token, peak_flops)?,
        hfu: utilisation(tokens_per_s, hardware_flops_per_token, peak_flops)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_mfu_is_refused() {
        assert!(training_time(1e20, 8, 312e12, 1.5).is_err());
        assert!(training_time(1e20, 0, 312e12, 0.5).is_err());
        assert!(peak_flops("a100-bf16").unwrap() == 312e12 && peak_flops("1e12").unwrap() == 1e12);
        assert!(peak_flops("tpu").is_err());
    }
}
