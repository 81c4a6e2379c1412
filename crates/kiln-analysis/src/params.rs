//! Parameter counts, per component, exactly as kiln allocates them (book §12.2.1; seed 003 §1,
//! eq. 3.2; llm.c's `fill_in_parameter_sizes`).
//!
//! ```text
//! embeddings   V·C (token) + P·C (learned positions) + T_types·C (BERT) + norm (BERT: 2C)
//! per layer    q: C·(H·D) [+ H·D]   k, v: C·(Hkv·D) [+ Hkv·D] each   o: (H·D)·C [+ C]
//!              MLP: GELU 2·C·F [+ F + C];  SwiGLU 3·C·F   (× E experts, + router C·E, for MoE)
//!              norms: 2 × (C [+ C])   (LayerNorm gain [+ bias]; RMSNorm gain only)
//! final norm   C [+ C]  (decoders)
//! head         V·C when untied (decoders);  pooler C² [+ C] (encoders)
//! ```
//! `[…]` terms exist only with biases. For GPT-2-style models this is
//! `(12C² + 13C)·L + (V + P)·C + 2C`; for a textbook layer (MHA, F = 4C) the matrices alone are
//! the familiar `12·L·C²` (seed 003 eq. 3.2 with E = 4). A mixture of experts also has
//! **active** parameters: those one token uses (k experts instead of E), e.g. Mixtral 8×7B's
//! 46.7 B total and 12.9 B active.

use crate::arch::{Arch, Family, MlpKind, NormKind, PositionKind};
use crate::checked::{prod, sat64, sum, to_u64};
use crate::error::Result;
use serde::Serialize;

/// The parameters of one transformer layer, by tensor group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct LayerParams {
    /// Query projection weight, C·(H·D). (kiln fuses q/k/v into one `c_attn` matrix; these are
    /// its row blocks.)
    pub attn_q: u64,
    /// Key projection weight, C·(Hkv·D).
    pub attn_k: u64,
    /// Value projection weight, C·(Hkv·D).
    pub attn_v: u64,
    /// Output projection weight, (H·D)·C.
    pub attn_o: u64,
    /// Attention biases: (H + 2·Hkv)·D for q/k/v and C for the output, when `bias`.
    pub attn_bias: u64,
    /// Feed-forward weights: 2·C·F (GELU MLP) or 3·C·F (SwiGLU), times E experts.
    pub mlp: u64,
    /// Feed-forward biases, F + C (GELU MLP with `bias`; SwiGLU has none), times E experts.
    pub mlp_bias: u64,
    /// MoE router C·E (0 when dense).
    pub router: u64,
    /// Feed-forward weights and biases one token uses: k experts' (= `mlp + mlp_bias` when dense).
    pub mlp_active: u64,
    /// Norm gains, 2·C (two norms per layer).
    pub norm: u64,
    /// Norm biases, 2·C (LayerNorm with `bias`; RMSNorm has none).
    pub norm_bias: u64,
}

impl LayerParams {
    /// Attention weights and biases. (These totals saturate at `u64::MAX`; counts built by
    /// [`param_count`] never come near it.)
    pub fn attention(&self) -> u64 {
        sat64(&[self.attn_q, self.attn_k, self.attn_v, self.attn_o, self.attn_bias])
    }

    /// Feed-forward weights and biases (all experts) and the router.
    pub fn feed_forward(&self) -> u64 {
        sat64(&[self.mlp, self.mlp_bias, self.router])
    }

    /// What one token uses: the layer without the experts it is not routed to.
    pub fn active(&self) -> u64 {
        sat64(&[self.attention(), self.mlp_active, self.router, self.norm, self.norm_bias])
    }

    /// All biases of the layer (attention, MLP, norms).
    pub fn biases(&self) -> u64 {
        sat64(&[self.attn_bias, self.mlp_bias, self.norm_bias])
    }

    /// Everything in the layer.
    pub fn total(&self) -> u64 {
        sat64(&[self.attention(), self.feed_forward(), self.norm, self.norm_bias])
    }
}

/// A model's parameters, by component; `total` is what kiln's `Module::num_params` returns for
/// the model it builds from the same config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParamCount {
    /// Token embedding V·C (also the head when tied).
    pub token_embedding: u64,
    /// Learned position table P·C (0 with RoPE).
    pub position_embedding: u64,
    /// Token-type table T_types·C (encoders).
    pub token_type_embedding: u64,
    /// The LayerNorm after the embeddings (encoders), 2C.
    pub embedding_norm: u64,
    /// One layer (all layers are the same).
    pub layer: LayerParams,
    /// Number of layers L.
    pub n_layers: u64,
    /// All layers, L · `layer.total()`.
    pub layers: u64,
    /// The final norm (decoders): C [+ C].
    pub final_norm: u64,
    /// Untied LM head V·C (decoders; 0 when tied).
    pub head: u64,
    /// Pooler C² [+ C] (encoders with a pooler).
    pub pooler: u64,
    /// Everything.
    pub total: u64,
    /// What one token uses: `total` with k of the E experts per layer (= `total` when dense).
    pub active: u64,
    /// `total` without the token, position and token-type tables: Kaplan et al.'s N (an untied
    /// head is kept, as it costs FLOPs).
    pub non_embedding: u64,
}

/// The parameters of one layer of `arch` (validated by the caller).
fn layer_params(arch: &Arch) -> LayerParams {
    // INVARIANT: `arch` is validated (C ≤ 2¹⁷, F ≤ 2¹⁹, H·D = C, Hkv·D ≤ C), so every product
    // here is below 2⁴⁰ and plain u64 arithmetic cannot overflow.
    let (c, f) = (arch.d_model, arch.d_ff);
    let (qd, kvd) = (arch.q_dim(), arch.kv_dim());
    let b = |n: u64| if arch.bias { n } else { 0 };
    let (mlp, mlp_bias) = match arch.mlp {
        MlpKind::Gelu => (2 * c * f, b(f + c)),
        MlpKind::SwiGlu => (3 * c * f, 0),
    };
    // validated: E ≤ 2¹², so E·3·C·F < 2⁵² still fits
    let (e, k) = (arch.experts(), arch.experts_per_token());
    let router = if arch.moe.is_some() { c * e } else { 0 };
    LayerParams {
        attn_q: c * qd,
        attn_k: c * kvd,
        attn_v: c * kvd,
        attn_o: qd * c,
        attn_bias: b(qd + 2 * kvd + c),
        mlp: e * mlp,
        mlp_bias: e * mlp_bias,
        router,
        mlp_active: k * (mlp + mlp_bias),
        norm: 2 * c,
        norm_bias: if arch.norm == NormKind::LayerNorm { b(2 * c) } else { 0 },
    }
}

/// Every parameter of `arch`, by component (see the module table). Errors when `arch` is
/// invalid.
pub fn param_count(arch: &Arch) -> Result<ParamCount> {
    arch.validate()?;
    let (v, c) = (arch.vocab_size as u128, arch.d_model as u128);
    let what = "parameter count";
    let layer = layer_params(arch);
    let n_layers = arch.n_layers;
    let layers = to_u64(what, prod(what, &[n_layers as u128, layer.total() as u128])?)?;
    let token_embedding = to_u64(what, v * c)?;
    let position_embedding = match arch.position {
        PositionKind::Learned => to_u64(what, arch.max_positions as u128 * c)?,
        PositionKind::Rope => 0,
    };
    // INVARIANT: validated sizes (C ≤ 2¹⁷) keep the norm and pooler sizes far below u64::MAX.
    let layer_norm_bias = arch.norm == NormKind::LayerNorm && arch.bias;
    let one_norm = arch.d_model + if layer_norm_bias { arch.d_model } else { 0 };
    let (token_type_embedding, embedding_norm, final_norm, head, pooler) = match arch.family {
        Family::Decoder => (0, 0, one_norm, if arch.tied_head { 0 } else { token_embedding }, 0),
        Family::Encoder => {
            let pooler =
                if arch.pooler { arch.d_model * arch.d_model + if arch.bias { arch.d_model } else { 0 } } else { 0 };
            (to_u64(what, arch.type_vocab_size as u128 * c)?, one_norm, 0, 0, pooler)
        }
    };
    let embeddings = [token_embedding, position_embedding, token_type_embedding].map(u128::from);
    let rest = [embedding_norm, layers, final_norm, head, pooler].map(u128::from);
    let non_embedding = to_u64(what, sum(what, &rest)?)?;
    let total = to_u64(what, sum(what, &embeddings)? + non_embedding as u128)?;
    let unused = (layer.total() - layer.active()) as u128 * n_layers as u128;
    let active = to_u64(what, total as u128 - unused)?;
    Ok(ParamCount {
        token_embedding,
        position_embedding,
        token_type_embedding,
        embedding_norm,
        layer,
        n_layers,
        layers,
        final_norm,
        head,
        pooler,
        total,
        active,
        non_embedding,
    })
}

/// The total parameter count of `arch` (`param_count(arch)?.total`).
pub fn num_params(arch: &Arch) -> Result<u64> {
    Ok(param_count(arch)?.total)
}

/// Seed 003's approximation `N ≈ (4 + 2E)·L·C²` (eq. 3.2; E = F/C, MHA, GELU MLP): the layer
/// matrices only, without embeddings, biases and norms.
pub fn approx_params(n_layers: u64, d_model: u64, ffn_ratio: f64) -> f64 {
    (4.0 + 2.0 * ffn_ratio) * n_layers as f64 * (d_model as f64).powi(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_closed_form() {
        // (12C² + 13C)·L + (V + P)·C + 2C
        let a = Arch::gpt2("t", 100, 16, 32, 3, 4);
        let (c, l, v, p) = (32u64, 3u64, 100u64, 16u64);
        assert_eq!(num_params(&a).unwrap(), (12 * c * c + 13 * c) * l + (v + p) * c + 2 * c);
    }
}
