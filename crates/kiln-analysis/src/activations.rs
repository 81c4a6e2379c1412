//! Activation memory of training: the tensors the backward pass needs, per layer (Korthikanti et
//! al. 2022, "Reducing Activation Recomputation in Large Transformer Models", §4 and Table 2;
//! seed 003 §3.1.3, eqs. 3.5–3.8; book §12.2.2).
//!
//! Counting rule (Korthikanti's): the input of every matrix product and non-linearity is
//! stored with p bytes per element, dropout masks with 1 byte. Per token of one layer, with
//! Q = H·D and K = Hkv·D:
//! ```text
//! norms            2·p·C                   (inputs of the two norms)
//! attention        p·C (qkv input) + p·Q + 2·p·K (Q, K, V) + p·Q (out-proj input) + C (mask)
//! attention core   H·S·(p + 1 + p)         (softmax output, dropout mask, dropout output;
//!                  H·S·p without dropout)  — the S² term
//! MLP (GELU)       p·C + 2·p·F + C (mask)  (input, GELU input, GELU output)
//! MLP (SwiGLU)     p·C + 4·p·F + C (mask)  (input, gate, silu(gate), up, product)
//! ```
//! For MHA, F = 4C, p = 2 with dropout this is Korthikanti's `s·b·h·(34 + 5·a·s/h)` bytes
//! (h = C, a = H): 11 + 19 + 4 = 34 and 2 + 1 + 2 = 5.
//!
//! Parallelism and recomputation (Korthikanti Table 2): tensor parallelism over t devices
//! shards Q, K, V, the out-proj input, the MLP hidden activations and the core (24/t and 5/t of
//! the textbook layer) but not the norm inputs, the attention and MLP inputs and the two masks
//! (10); sequence parallelism also shards those (all / t). Selective recomputation drops the
//! attention core; full recomputation keeps only the layer input (p·C per token, Korthikanti's
//! `2·s·b·h`), and rebuilds one layer's activations at a time during the backward pass.

use crate::arch::{Arch, Family, MlpKind};
use crate::checked::{div_ceil, prod, sat64, sum, to_u64};
use crate::error::{AnalysisError, Result};
use crate::flops::Recompute;
use serde::{Deserialize, Serialize};

/// How activations are stored and split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationOpts {
    /// Bytes per stored activation element p (2 for fp16/bf16 mixed precision, 4 for fp32).
    pub bytes: u64,
    /// Dropout is on: its 1-byte masks are stored (Korthikanti's setting; LLaMA trains without).
    pub dropout: bool,
    /// What the backward pass recomputes.
    pub recompute: Recompute,
    /// Tensor-parallel degree t (Megatron-LM), ≥ 1.
    pub tensor_parallel: u64,
    /// Sequence parallelism on top of tensor parallelism: norms, dropout and the layer inputs
    /// are split along the sequence, so every activation is divided by t.
    pub sequence_parallel: bool,
}

impl Default for ActivationOpts {
    /// Korthikanti's baseline: p = 2, dropout, no recomputation, no parallelism.
    fn default() -> ActivationOpts {
        ActivationOpts {
            bytes: 2,
            dropout: true,
            recompute: Recompute::None,
            tensor_parallel: 1,
            sequence_parallel: false,
        }
    }
}

/// Stored activation bytes of one layer, on one device, for the whole (B, S) batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LayerActivations {
    /// Inputs of the two norms.
    pub norms: u64,
    /// Attention, linear in S: the qkv input, Q, K, V, the out-projection input, the mask.
    pub attention: u64,
    /// The S² term: softmax output, its dropout mask and output.
    pub attention_core: u64,
    /// The feed-forward block.
    pub mlp: u64,
    /// With full recomputation, the stored layer input (the other fields are then 0).
    pub checkpoint: u64,
}

impl LayerActivations {
    /// Everything stored for the layer (saturating at `u64::MAX`).
    pub fn total(&self) -> u64 {
        sat64(&[self.norms, self.attention, self.attention_core, self.mlp, self.checkpoint])
    }

    /// `total()`, or an overflow error.
    fn checked_total(&self) -> Result<u64> {
        let what = "activation bytes";
        let parts = [self.norms, self.attention, self.attention_core, self.mlp, self.checkpoint];
        to_u64(what, sum(what, &parts.map(u128::from))?)
    }
}

/// Stored activation bytes of a training step, on one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Activations {
    /// Sequences B.
    pub batch: u64,
    /// Tokens per sequence S.
    pub seq: u64,
    /// The options used.
    pub opts: ActivationOpts,
    /// One layer, as stored under `opts.recompute`.
    pub layer: LayerActivations,
    /// Layers L.
    pub n_layers: u64,
    /// L · `layer.total()`.
    pub layers: u64,
    /// Full recomputation only: one layer's activations, rebuilt during its backward pass.
    pub recompute_working: u64,
    /// Embedding block: the dropout mask (C bytes per token with dropout) and, for encoders,
    /// the embedding LayerNorm input (p·C).
    pub embeddings: u64,
    /// Decoders: final-norm input and head input (p·C each) and the fp32 logits for the loss
    /// (4·V per token, vocab-parallel over t).
    pub output: u64,
    /// Everything.
    pub total: u64,
}

/// Bytes of a component with `unsharded` and `sharded` bytes per token: `n·unsharded +
/// ⌈n·sharded / t⌉`, n = B·S tokens.
fn split(what: &'static str, tokens: u128, unsharded: u128, sharded: u128, t: u128) -> Result<u64> {
    let u = prod(what, &[tokens, unsharded])?;
    let s = div_ceil(prod(what, &[tokens, sharded])?, t);
    to_u64(what, sum(what, &[u, s])?)
}

/// The full (not recomputed) activations of one layer under `opts`' parallelism.
fn full_layer(arch: &Arch, batch: u64, seq: u64, opts: &ActivationOpts, core: bool) -> Result<LayerActivations> {
    let what = "activation bytes";
    // INVARIANT: p < 2⁶⁴ and the validated widths are < 2²⁰, so the per-token byte counts below
    // are < 2⁹⁰ and u128 arithmetic cannot overflow; products with B·S are checked.
    let (p, t) = (opts.bytes as u128, opts.tensor_parallel as u128);
    let tokens = prod(what, &[batch as u128, seq as u128])?;
    let (c, q, kv, f) = (arch.d_model as u128, arch.q_dim() as u128, arch.kv_dim() as u128, arch.d_ff as u128);
    let mask = if opts.dropout { c } else { 0 };
    // unsharded (input-side) parts move to the sharded side under sequence parallelism
    let part = |unsharded: u128, sharded: u128| -> Result<u64> {
        if opts.sequence_parallel {
            split(what, tokens, 0, unsharded + sharded, t)
        } else {
            split(what, tokens, unsharded, sharded, t)
        }
    };
    // each token's hidden activations in each of the k experts it is routed to
    let mlp_hidden = arch.experts_per_token() as u128
        * match arch.mlp {
            MlpKind::Gelu => 2 * p * f,
            MlpKind::SwiGlu => 4 * p * f,
        };
    let per_score = if opts.dropout { 2 * p + 1 } else { p };
    let core_bytes = if core {
        let per_token = prod(what, &[arch.n_heads as u128, seq as u128, per_score])?;
        to_u64(what, div_ceil(prod(what, &[tokens, per_token])?, t))?
    } else {
        0
    };
    Ok(LayerActivations {
        norms: part(2 * p * c, 0)?,
        attention: part(p * c + mask, 2 * p * q + 2 * p * kv)?,
        attention_core: core_bytes,
        mlp: part(p * c + mask, mlp_hidden)?,
        checkpoint: 0,
    })
}

/// Stored activation bytes of one training step of `arch` on B sequences of S tokens, per
/// device (see the module docs for what is counted).
pub fn activation_memory(arch: &Arch, batch: u64, seq: u64, opts: &ActivationOpts) -> Result<Activations> {
    arch.validate()?;
    crate::checked::positive("batch", batch)?;
    arch.check_seq("seq", seq)?;
    crate::checked::positive("activation bytes per element", opts.bytes)?;
    let t = crate::checked::positive("tensor_parallel", opts.tensor_parallel)?;
    if !arch.n_heads.is_multiple_of(t) || !arch.n_kv_heads.is_multiple_of(t) {
        return Err(AnalysisError::InvalidInput {
            what: "tensor_parallel",
            msg: format!("t = {t} must divide the {} heads and {} kv heads", arch.n_heads, arch.n_kv_heads),
        });
    }
    if opts.sequence_parallel && t == 1 {
        return Err(AnalysisError::InvalidInput {
            what: "sequence_parallel",
            msg: "needs tensor parallelism (t > 1)".into(),
        });
    }
    let what = "activation bytes";
    let (p, t128) = (opts.bytes as u128, t as u128);
    let tokens = prod(what, &[batch as u128, seq as u128])?;
    let c = arch.d_model as u128;
    let sp_t = if opts.sequence_parallel { t128 } else { 1 };
    let full = full_layer(arch, batch, seq, opts, true)?;
    let (layer, recompute_working) = match opts.recompute {
        Recompute::None => (full, 0),
        Recompute::Selective => (full_layer(arch, batch, seq, opts, false)?, 0),
        Recompute::Full => {
            let checkpoint = split(what, tokens, 0, p * c, sp_t)?;
            (LayerActivations { checkpoint, ..LayerActivations::default() }, full.checked_total()?)
        }
    };
    let layers = to_u64(what, prod(what, &[arch.n_layers as u128, layer.checked_total()? as u128])?)?;
    let mask = if opts.dropout { c } else { 0 };
    let embeddings = match arch.family {
        Family::Decoder => split(what, tokens, 0, mask, sp_t)?,
        Family::Encoder => split(what, tokens, 0, mask + p * c, sp_t)?,
    };
    let output = match arch.family {
        Family::Decoder => {
            let logits = split(what, tokens, 0, 4 * arch.vocab_size as u128, t128)?;
            split(what, tokens, 0, 2 * p * c, sp_t)? as u128 + logits as u128
        }
        Family::Encoder => 0,
    };
    let output = to_u64(what, output)?;
    let total = sum(what, &[layers, recompute_working, embeddings, output].map(u128::from))?;
    Ok(Activations {
        batch,
        seq,
        opts: *opts,
        layer,
        n_layers: arch.n_layers,
        layers,
        recompute_working,
        embeddings,
        output,
        total: to_u64(what, total)?,
    })
}

/// Korthikanti et al.'s per-layer activation bytes with no parallelism and no recomputation
/// (fp16, dropout, MHA, F = 4h): `s·b·h·(34 + 5·a·s/h) = 34·s·b·h + 5·a·s²·b` (their eq. 1).
pub fn korthikanti_layer_bytes(seq: u64, batch: u64, width: u64, heads: u64) -> Result<u64> {
    let what = "Korthikanti activation bytes";
    let (s, b, h, a) = (seq as u128, batch as u128, width as u128, heads as u128);
    to_u64(what, sum(what, &[prod(what, &[34, s, b, h])?, prod(what, &[5, a, s, s, b])?])?)
}

/// Korthikanti et al.'s per-layer bytes under t-way tensor parallelism (their eq. 2):
/// `s·b·h·(10 + 24/t + 5·a·s/(h·t))`.
pub fn korthikanti_tensor_parallel(seq: u64, batch: u64, width: u64, heads: u64, t: u64) -> f64 {
    let (s, b, h, a, t) = (seq as f64, batch as f64, width as f64, heads as f64, t as f64);
    s * b * h * (10.0 + 24.0 / t + 5.0 * a * s / (h * t))
}

/// Korthikanti et al.'s per-layer bytes under tensor + sequence parallelism (their eq. 4):
/// `s·b·h/t · (34 + 5·a·s/h)`.
pub fn korthikanti_sequence_parallel(seq: u64, batch: u64, width: u64, heads: u64, t: u64) -> f64 {
    let (s, b, h, a, t) = (seq as f64, batch as f64, width as f64, heads as f64, t as f64);
    s * b * h / t * (34.0 + 5.0 * a * s / h)
}

/// Korthikanti et al.'s per-layer bytes with selective recomputation (their eq. 6):
/// `34·s·b·h/t` with sequence parallelism, `s·b·h·(10 + 24/t)` without.
pub fn korthikanti_selective(seq: u64, batch: u64, width: u64, t: u64, sequence_parallel: bool) -> f64 {
    let (s, b, h, t) = (seq as f64, batch as f64, width as f64, t as f64);
    if sequence_parallel {
        34.0 * s * b * h / t
    } else {
        s * b * h * (10.0 + 24.0 / t)
    }
}

/// Korthikanti et al.'s per-layer bytes with full recomputation: the fp16 layer input,
/// `2·s·b·h`.
pub fn korthikanti_full_recompute(seq: u64, batch: u64, width: u64) -> Result<u64> {
    let what = "Korthikanti activation bytes";
    to_u64(what, prod(what, &[2, seq as u128, batch as u128, width as u128])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textbook_layer_is_korthikanti() {
        let a = Arch::gpt2("t", 50, 64, 32, 2, 4);
        let m = activation_memory(&a, 3, 64, &ActivationOpts::default()).unwrap();
        assert_eq!(m.layer.total(), korthikanti_layer_bytes(64, 3, 32, 4).unwrap());
    }
}
