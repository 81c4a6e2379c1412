//! Training and inference memory: model states (weights, gradients, optimizer state) by
//! precision, their ZeRO sharding across N data-parallel devices, activations
//! ([`crate::activations`]), and "what fits" — the largest batch or context under a budget.
//!
//! Bytes per parameter (book §12.2.3; seed 003 §3.1.1; seed 004 "Memory Footprint"; REFERENCE.md):
//! ```text
//!                         weights  grads  fp32 master  optimizer state      total (Adam)
//! fp32                       4       4         –        Adam m, v: 4 + 4        16
//! mixed fp16/bf16            2       2         4        Adam m, v: 4 + 4        16
//! ```
//! (SGD with momentum keeps one fp32 state, plain SGD none.) ZeRO (Rajbhandari et al. 2020, §5
//! and Fig. 1), Ψ parameters, K optimizer bytes per parameter (master + states), N devices:
//! stage 0 `(w + g + K)·Ψ`; stage 1 shards the optimizer state, `(w + g)·Ψ + K·Ψ/N`; stage 2
//! also the gradients, `w·Ψ + (g + K)·Ψ/N`; stage 3 also the weights, `(w + g + K)·Ψ/N`.
//! With tensor parallelism over t devices every parameter is counted as split t ways (norm gains
//! and biases are in fact replicated; they are O(1/C) of the total).

use crate::activations::{activation_memory, ActivationOpts, Activations};
use crate::arch::Arch;
use crate::checked::{div_ceil, positive, prod, sat64, sum, to_u64};
use crate::dtype::Dtype;
use crate::error::{AnalysisError, Result};
use crate::params::num_params;
use serde::{Deserialize, Serialize};

/// Number format of the training weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// fp32 weights and gradients, no master copy.
    Fp32,
    /// fp16 or bf16 weights and gradients for the passes, an fp32 master copy for the update
    /// (Micikevicius et al. 2018).
    Mixed,
}

/// The optimizer, by the fp32 state it keeps per parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Optimizer {
    /// Adam / AdamW: first and second moments, 8 bytes.
    Adam,
    /// SGD with momentum: one buffer, 4 bytes.
    SgdMomentum,
    /// Plain SGD: no state.
    Sgd,
}

/// ZeRO stage (Rajbhandari et al. 2020): what is sharded across the data-parallel devices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZeroStage {
    /// Plain data parallelism: every device holds everything.
    #[default]
    Stage0,
    /// P_os: optimizer state (with the master copy) sharded.
    Stage1,
    /// P_os+g: optimizer state and gradients sharded.
    Stage2,
    /// P_os+g+p: optimizer state, gradients and weights sharded.
    Stage3,
}

impl ZeroStage {
    /// The stage's number, 0–3.
    pub fn number(self) -> u8 {
        match self {
            ZeroStage::Stage0 => 0,
            ZeroStage::Stage1 => 1,
            ZeroStage::Stage2 => 2,
            ZeroStage::Stage3 => 3,
        }
    }

    /// The stage from its number 0–3.
    pub fn from_number(n: u8) -> Result<ZeroStage> {
        match n {
            0 => Ok(ZeroStage::Stage0),
            1 => Ok(ZeroStage::Stage1),
            2 => Ok(ZeroStage::Stage2),
            3 => Ok(ZeroStage::Stage3),
            _ => Err(AnalysisError::InvalidInput { what: "ZeRO stage", msg: format!("{n} is not 0, 1, 2 or 3") }),
        }
    }
}

/// Bytes per parameter of each model state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StateBytes {
    /// The weights the passes use (4 fp32, 2 fp16/bf16).
    pub weights: u64,
    /// Gradients (same format as the weights).
    pub grads: u64,
    /// fp32 master copy (mixed precision only).
    pub master: u64,
    /// fp32 optimizer state (8 for Adam).
    pub optimizer: u64,
}

impl StateBytes {
    /// K of ZeRO: master copy + optimizer state.
    pub fn optimizer_total(&self) -> u64 {
        self.master.saturating_add(self.optimizer)
    }

    /// All states: 16 for Adam in fp32 or in mixed precision.
    pub fn total(&self) -> u64 {
        sat64(&[self.weights, self.grads, self.optimizer_total()])
    }
}

/// Bytes per parameter of weights, gradients, master copy and optimizer state (module table).
pub fn state_bytes_per_param(precision: Precision, optimizer: Optimizer) -> StateBytes {
    let (weights, master) = match precision {
        Precision::Fp32 => (4, 0),
        Precision::Mixed => (2, 4),
    };
    let optimizer = match optimizer {
        Optimizer::Adam => 8,
        Optimizer::SgdMomentum => 4,
        Optimizer::Sgd => 0,
    };
    StateBytes { weights, grads: weights, master, optimizer }
}

/// Model-state bytes on one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ModelStates {
    /// Parameters Ψ (before sharding).
    pub params: u64,
    /// Bytes per parameter of each state.
    pub per_param: StateBytes,
    /// The ZeRO stage.
    pub zero: ZeroStage,
    /// Data-parallel devices N the states are sharded over.
    pub devices: u64,
    /// Weights on this device.
    pub weights: u64,
    /// Gradients on this device.
    pub grads: u64,
    /// Master copy + optimizer state on this device.
    pub optimizer: u64,
    /// All three.
    pub total: u64,
}

/// Model-state bytes per device for Ψ = `params` (ZeRO formulas in the module docs; a sharded
/// state takes `bytes·⌈Ψ/N⌉`).
pub fn model_states(
    params: u64,
    precision: Precision,
    optimizer: Optimizer,
    zero: ZeroStage,
    devices: u64,
) -> Result<ModelStates> {
    positive("devices", devices)?;
    let what = "model-state bytes";
    let per_param = state_bytes_per_param(precision, optimizer);
    let shard = div_ceil(params as u128, devices as u128);
    let bytes = |b: u64, sharded: bool| -> Result<u64> {
        to_u64(what, prod(what, &[b as u128, if sharded { shard } else { params as u128 }])?)
    };
    let weights = bytes(per_param.weights, zero >= ZeroStage::Stage3)?;
    let grads = bytes(per_param.grads, zero >= ZeroStage::Stage2)?;
    let optimizer = bytes(per_param.optimizer_total(), zero >= ZeroStage::Stage1)?;
    let total = to_u64(what, sum(what, &[weights, grads, optimizer].map(u128::from))?)?;
    Ok(ModelStates { params, per_param, zero, devices, weights, grads, optimizer, total })
}

/// Bytes of the weights alone in a storage format, e.g. for inference (`dtype.bytes(Ψ)`; the
/// book's `2P` for fp16, eq. 12.89).
pub fn weight_bytes(params: u64, dtype: Dtype) -> Result<u64> {
    dtype.bytes(params)
}

/// A training configuration for memory accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingSetup {
    /// Weight precision.
    pub precision: Precision,
    /// Optimizer.
    pub optimizer: Optimizer,
    /// ZeRO stage.
    pub zero: ZeroStage,
    /// Data-parallel devices N (ZeRO shards over these).
    pub data_parallel: u64,
    /// Activation storage, recomputation and tensor/sequence parallelism.
    pub activations: ActivationOpts,
}

impl TrainingSetup {
    /// Adam, no ZeRO, one device, no recomputation; activations in the weights' format (p = 2
    /// for mixed precision, 4 for fp32) with dropout masks.
    pub fn new(precision: Precision) -> TrainingSetup {
        let bytes = match precision {
            Precision::Fp32 => 4,
            Precision::Mixed => 2,
        };
        TrainingSetup {
            precision,
            optimizer: Optimizer::Adam,
            zero: ZeroStage::Stage0,
            data_parallel: 1,
            activations: ActivationOpts { bytes, ..ActivationOpts::default() },
        }
    }
}

/// Memory of one training step on one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TrainingMemory {
    /// Weights, gradients and optimizer state (after ZeRO and tensor-parallel sharding).
    pub states: ModelStates,
    /// Stored activations.
    pub activations: Activations,
    /// `states.total + activations.total`.
    pub total: u64,
}

/// Memory per device of training `arch` on B sequences of S tokens under `setup`.
pub fn training_memory(arch: &Arch, batch: u64, seq: u64, setup: &TrainingSetup) -> Result<TrainingMemory> {
    let states = sharded_states(arch, setup)?;
    let activations = activation_memory(arch, batch, seq, &setup.activations)?;
    let total =
        states.total.checked_add(activations.total).ok_or(AnalysisError::Overflow { what: "training memory" })?;
    Ok(TrainingMemory { states, activations, total })
}

/// Model states of `arch` per device: Ψ split t ways by tensor parallelism, then ZeRO over N.
fn sharded_states(arch: &Arch, setup: &TrainingSetup) -> Result<ModelStates> {
    let t = positive("tensor_parallel", setup.activations.tensor_parallel)?;
    let per_tp = num_params(arch)?.div_ceil(t);
    let mut states = model_states(per_tp, setup.precision, setup.optimizer, setup.zero, setup.data_parallel)?;
    states.params = num_params(arch)?;
    Ok(states)
}

/// The largest `hi ≥ n ≥ 1` with `fits(n)`, for `fits` monotone (true then false); `None`
/// when not even 1 fits.
fn largest(hi: u64, fits: impl Fn(u64) -> Result<bool>) -> Result<Option<u64>> {
    if !fits(1)? {
        return Ok(None);
    }
    let (mut lo, mut hi) = (1u64, hi);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if fits(mid)? {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    Ok(Some(lo))
}

/// The largest batch B of S-token sequences whose training memory per device is ≤ `budget`
/// bytes; `None` when not even B = 1 fits (the model states alone may not). Activations are
/// linear in B, so this is `⌊(budget − states) / per-sequence activations⌋` up to rounding;
/// it is found by bisection over B ≤ 2³².
pub fn max_batch(arch: &Arch, seq: u64, setup: &TrainingSetup, budget: u64) -> Result<Option<u64>> {
    largest(1 << 32, |b| within(training_memory(arch, b, seq, setup), budget))
}

/// Whether a memory estimate is within `budget`; one too large to count does not fit.
fn within(memory: Result<TrainingMemory>, budget: u64) -> Result<bool> {
    match memory {
        Ok(m) => Ok(m.total <= budget),
        Err(AnalysisError::Overflow { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The longest context S (≤ P for learned positions, ≤ 2²⁴ for RoPE) that B sequences can
/// train at within `budget` bytes per device; `None` when not even S = 1 fits. Activations
/// grow with S (quadratically with a stored attention core), so this is a bisection.
pub fn max_seq(arch: &Arch, batch: u64, setup: &TrainingSetup, budget: u64) -> Result<Option<u64>> {
    arch.validate()?;
    let hi = match arch.position {
        crate::arch::PositionKind::Learned => arch.max_positions,
        crate::arch::PositionKind::Rope => 1 << 24,
    };
    largest(hi, |s| within(training_memory(arch, batch, s, setup), budget))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bytes_per_param_for_adam() {
        assert_eq!(state_bytes_per_param(Precision::Mixed, Optimizer::Adam).total(), 16);
        assert_eq!(state_bytes_per_param(Precision::Fp32, Optimizer::Adam).total(), 16);
        assert_eq!(state_bytes_per_param(Precision::Mixed, Optimizer::Adam).optimizer_total(), 12);
    }
}
