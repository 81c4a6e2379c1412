//! FLOP counts of the forward and backward passes (book §12.1, eqs. 12.2–12.36; seed 003 §4;
//! seed 004 "Total Computational Cost"), counting 2 FLOPs per multiply–accumulate of every
//! matrix product and neglecting the O(B·S·C) element-wise work (norms, activations, softmax,
//! residuals), as all three sources do.
//!
//! ```text
//! per layer (B sequences of S tokens):
//!   q 2·B·S·C·(H·D)   k, v 2·B·S·C·(Hkv·D) each   o 2·B·S·(H·D)·C        (projections)
//!   QKᵀ 2·B·H·S²·D    PV 2·B·H·S²·D                                      (the S² term)
//!   MLP 2·2·B·S·C·F (GELU) or 3·2·B·S·C·F (SwiGLU)   (× k experts per token, + router
//!       2·B·S·C·E, for a mixture of experts)
//! MHA with F = 4C:  24·B·S·C² + 4·B·S²·C                                 (book eq. 12.26)
//! head (decoders) 2·B·S·C·V;  pooler (encoders) 2·B·C²
//! ```
//! Attention is counted over the full S×S score matrix (as the book and Megatron-LM's MFU do),
//! not the causal half. Backward ≈ 2 × forward (seed 003 §4.1: one product for ∂W, one for
//! ∂x); full activation recomputation adds one forward pass of the layers, selective
//! recomputation (Korthikanti et al. 2022) only the QKᵀ and PV products.

use crate::arch::{Arch, Family, MlpKind};
use crate::checked::{prod, sat128, sum};
use crate::error::Result;
use serde::{Deserialize, Serialize};

/// Forward FLOPs of one layer for B sequences of S tokens, by matrix product.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LayerFlops {
    /// Query projection, 2·B·S·C·(H·D).
    pub q: u128,
    /// Key projection, 2·B·S·C·(Hkv·D).
    pub k: u128,
    /// Value projection, 2·B·S·C·(Hkv·D).
    pub v: u128,
    /// Output projection, 2·B·S·(H·D)·C.
    pub o: u128,
    /// Scores QKᵀ, 2·B·H·S²·D.
    pub scores: u128,
    /// Weighted values PV, 2·B·H·S²·D.
    pub weighted: u128,
    /// Feed-forward matrices, 4·B·S·C·F (GELU) or 6·B·S·C·F (SwiGLU), times the k experts
    /// each token uses, plus the router's 2·B·S·C·E for a mixture of experts.
    pub mlp: u128,
}

impl LayerFlops {
    /// The four attention projections. (These totals saturate at `u128::MAX`; the analyses
    /// compute theirs with overflow checks.)
    pub fn projections(&self) -> u128 {
        sat128(&[self.q, self.k, self.v, self.o])
    }

    /// The S² term: QKᵀ and PV.
    pub fn attention_core(&self) -> u128 {
        sat128(&[self.scores, self.weighted])
    }

    /// The products linear in S (projections and MLP).
    pub fn linear(&self) -> u128 {
        sat128(&[self.projections(), self.mlp])
    }

    /// The whole layer.
    pub fn total(&self) -> u128 {
        sat128(&[self.linear(), self.attention_core()])
    }
}

/// Forward FLOPs of a model on B sequences of S tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ForwardFlops {
    /// Sequences B.
    pub batch: u64,
    /// Tokens per sequence S.
    pub seq: u64,
    /// One layer.
    pub layer: LayerFlops,
    /// Layers L.
    pub n_layers: u64,
    /// All layers, L · `layer.total()` (BERT's "encoder only" count).
    pub layers: u128,
    /// LM head 2·B·S·C·V (decoders, tied or not).
    pub head: u128,
    /// Pooler 2·B·C² (encoders with a pooler: one token per sequence).
    pub pooler: u128,
    /// Everything: layers + head + pooler.
    pub total: u128,
}

impl ForwardFlops {
    /// Forward FLOPs per token, `total / (B·S)`.
    pub fn per_token(&self) -> f64 {
        self.total as f64 / (self.batch as f64 * self.seq as f64)
    }
}

/// Which activations the backward pass recomputes instead of storing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Recompute {
    /// Everything is stored.
    #[default]
    None,
    /// The attention core (softmax, dropout, QKᵀ and PV) is recomputed (Korthikanti et al.
    /// 2022 §5): no S² activations, +QKᵀ and PV forward FLOPs.
    Selective,
    /// Only each layer's input is stored; the whole layer forward runs again in the backward
    /// pass (gradient checkpointing, Chen et al. 2016): +1 forward of the layers.
    Full,
}

/// FLOPs of one training step (forward + backward) on B sequences of S tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct TrainingFlops {
    /// The forward pass.
    pub forward: ForwardFlops,
    /// Backward, 2 × forward.
    pub backward: u128,
    /// Extra forward work for recomputation (0, the attention core, or the layers).
    pub recompute: u128,
    /// Model FLOPs, forward + backward = 3 × forward: the numerator of MFU.
    pub model: u128,
    /// Hardware FLOPs, model + recompute: the numerator of HFU.
    pub hardware: u128,
}

/// Forward FLOPs of one layer of `arch` on B sequences of S tokens (see the module table).
pub fn layer_flops(arch: &Arch, batch: u64, seq: u64) -> Result<LayerFlops> {
    arch.validate()?;
    crate::checked::positive("batch", batch)?;
    arch.check_seq("seq", seq)?;
    let what = "layer FLOPs";
    let (b, s, c) = (batch as u128, seq as u128, arch.d_model as u128);
    let (qd, kvd, f) = (arch.q_dim() as u128, arch.kv_dim() as u128, arch.d_ff as u128);
    let mats = match arch.mlp {
        MlpKind::Gelu => 2,
        MlpKind::SwiGlu => 3,
    };
    let attn = prod(what, &[2, b, arch.n_heads as u128, s, s, arch.head_dim() as u128])?;
    Ok(LayerFlops {
        q: prod(what, &[2, b, s, c, qd])?,
        k: prod(what, &[2, b, s, c, kvd])?,
        v: prod(what, &[2, b, s, c, kvd])?,
        o: prod(what, &[2, b, s, qd, c])?,
        scores: attn,
        weighted: attn,
        mlp: sum(
            what,
            &[
                prod(what, &[2, mats, b, s, c, f, arch.experts_per_token() as u128])?,
                if arch.moe.is_some() { prod(what, &[2, b, s, c, arch.experts() as u128])? } else { 0 },
            ],
        )?,
    })
}

/// Forward FLOPs of `arch` on B sequences of S tokens: L layers, plus the LM head for decoders
/// or the pooler for encoders.
pub fn forward_flops(arch: &Arch, batch: u64, seq: u64) -> Result<ForwardFlops> {
    let layer = layer_flops(arch, batch, seq)?;
    let what = "forward FLOPs";
    let (b, s, c) = (batch as u128, seq as u128, arch.d_model as u128);
    let l = &layer;
    let layer_total = sum(what, &[l.q, l.k, l.v, l.o, l.scores, l.weighted, l.mlp])?;
    let layers = prod(what, &[arch.n_layers as u128, layer_total])?;
    let head = match arch.family {
        Family::Decoder => prod(what, &[2, b, s, c, arch.vocab_size as u128])?,
        Family::Encoder => 0,
    };
    let pooler = if arch.pooler { prod(what, &[2, b, c, c])? } else { 0 };
    Ok(ForwardFlops {
        batch,
        seq,
        layer,
        n_layers: arch.n_layers,
        layers,
        head,
        pooler,
        total: sum(what, &[layers, head, pooler])?,
    })
}

/// FLOPs of one training step: backward = 2 × forward; recomputation adds the forward of the
/// recomputed parts (the head is never recomputed, as in Megatron-LM's
/// `96·B·S·L·C²·(1 + S/(6C) + V/(16·L·C))` for full recomputation).
pub fn training_flops(arch: &Arch, batch: u64, seq: u64, recompute: Recompute) -> Result<TrainingFlops> {
    let forward = forward_flops(arch, batch, seq)?;
    let what = "training FLOPs";
    let backward = prod(what, &[2, forward.total])?;
    let recompute = match recompute {
        Recompute::None => 0,
        Recompute::Selective => {
            let core = sum(what, &[forward.layer.scores, forward.layer.weighted])?;
            prod(what, &[arch.n_layers as u128, core])?
        }
        Recompute::Full => forward.layers,
    };
    let model = sum(what, &[forward.total, backward])?;
    Ok(TrainingFlops { forward, backward, recompute, model, hardware: sum(what, &[model, recompute])? })
}

/// Forward FLOPs to decode one token with a KV cache holding `context` earlier tokens (the new
/// token attends to `context + 1` keys): the linear products of one token,
/// `L·(2·C·(H·D + 2·Hkv·D) + 2·(H·D)·C + MLP)`, plus `L·4·H·D·(context + 1)` for QKᵀ and PV,
/// plus the head `2·C·V` (seed 003 §13, "kv-Cache Inference").
pub fn decode_flops_per_token(arch: &Arch, context: u64) -> Result<u128> {
    let one = layer_flops(arch, 1, 1)?;
    let what = "decode FLOPs";
    let keys = (context as u128).checked_add(1).ok_or(crate::AnalysisError::Overflow { what })?;
    let attn = prod(what, &[4, arch.n_heads as u128, arch.head_dim() as u128, keys])?;
    let per_layer = sum(what, &[one.linear(), attn])?;
    let head = match arch.family {
        Family::Decoder => 2 * arch.d_model as u128 * arch.vocab_size as u128,
        Family::Encoder => 0,
    };
    sum(what, &[prod(what, &[arch.n_layers as u128, per_layer])?, head])
}

/// The textbook's per-layer forward FLOPs for MHA with F = 4H (book eq. 12.26, seed 004):
/// `24·B·S·H² + 4·B·S²·H`, H the width.
pub fn layer_flops_closed_form(batch: u64, seq: u64, width: u64) -> Result<u128> {
    let what = "closed-form layer FLOPs";
    let (b, s, h) = (batch as u128, seq as u128, width as u128);
    sum(what, &[prod(what, &[24, b, s, h, h])?, prod(what, &[4, b, s, s, h])?])
}

/// Seed 003's total model FLOPs of a training step, `12·B·C·L·S·(S + (2 + E)·C)` (eq. 4.2;
/// E = F/C; forward + backward of the layers, no head).
pub fn training_flops_closed_form(batch: u64, seq: u64, width: u64, n_layers: u64, ffn_ratio: f64) -> f64 {
    let (b, s, c, l) = (batch as f64, seq as f64, width as f64, n_layers as f64);
    12.0 * b * c * l * s * (s + (2.0 + ffn_ratio) * c)
}

/// Training compute `C ≈ 6·N·D` for N parameters and D tokens (seed 003 eq. 4.3 and 5.2, seed
/// 004; Kaplan et al. 2020 §2.1): 2 FLOPs per parameter per token forward, 4 backward.
pub fn six_n_d(n_params: f64, tokens: f64) -> f64 {
    6.0 * n_params * tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn textbook_layer_matches_closed_form() {
        let a = Arch::gpt2("t", 50, 64, 32, 2, 4);
        let f = layer_flops(&a, 3, 64).unwrap();
        assert_eq!(f.total(), layer_flops_closed_form(3, 64, 32).unwrap());
    }
}
