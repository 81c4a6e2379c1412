//! Fused kernels with hand-written backward: softmax, LayerNorm, RMSNorm, softmax-cross-entropy
//! and scaled-dot-product attention. Each `X` has its `X_bwd` right below it; the maths and the
//! saved state are documented on the matching op in `crate::ops`.

use super::{not_impl, Arg, BoxStorage, Storage};
use crate::{Layout, Result};

/// Options of the fused attention kernel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionArgs {
    /// Multiplies `Q·Kᵀ` (usually `1/√D`).
    pub scale: f64,
    /// Adds the causal mask (query `i` sees keys `j ≤ i + (S − T)`).
    pub causal: bool,
    /// Attention-probability dropout; 0 disables it.
    pub dropout_p: f64,
    /// Seed of the counter-based dropout RNG (the backward regenerates the same mask).
    pub seed: u64,
    /// Sliding window (with `causal`): query `i` sees only keys `j > i + (S − T) − w`, its own
    /// and the `w − 1` before it (Mistral). Kernels skip the key tiles outside it.
    pub window: Option<usize>,
}

/// The sizes of an attention call, from its operands' layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttentionDims {
    /// Batch.
    pub b: usize,
    /// Query heads.
    pub h: usize,
    /// Key/value heads (`h % hkv == 0`).
    pub hkv: usize,
    /// Query positions.
    pub t: usize,
    /// Key positions.
    pub s: usize,
    /// Head dim.
    pub d: usize,
}

impl AttentionDims {
    /// Checks the layouts of [`FusedOps::attention`]'s operands — `q` (B,H,T,D), `k` and `v`
    /// (B,Hkv,S,D) with `H % Hkv == 0`, a mask of exactly (B,H,T,S) — before a backend reads any
    /// data, and returns the sizes.
    pub fn of(q: &Layout, k: &Layout, v: &Layout, mask: Option<&Layout>) -> Result<AttentionDims> {
        let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
        let bad = |rhs: &[usize]| crate::Error::ShapeMismatch { op: "attention", lhs: qs.to_vec(), rhs: rhs.to_vec() };
        if qs.len() != 4
            || ks.len() != 4
            || ks != vs
            || qs[0] != ks[0]
            || qs[3] != ks[3]
            || ks[1] == 0
            || qs[1] % ks[1] != 0
        {
            return Err(bad(ks));
        }
        if let Some(m) = mask.filter(|m| m.shape() != [qs[0], qs[1], qs[2], ks[2]]) {
            return Err(bad(m.shape()));
        }
        Ok(AttentionDims { b: qs[0], h: qs[1], hkv: ks[1], t: qs[2], s: ks[2], d: qs[3] })
    }
}

/// Geometry of [`FusedOps::paged_attention`] (see `Tensor::paged_attention`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PagedAttentionArgs {
    /// Key/value slots per cache block.
    pub block_size: usize,
    /// Multiplies `q·k` (usually `1/√D`).
    pub scale: f64,
    /// Sliding window: a query token sees only its last `w` keys (`None`: all of them).
    pub window: Option<usize>,
}

/// Fused kernels. Inputs are contiguous (the tensor layer ensures it), reductions run over the last
/// dim, and all outputs are contiguous.
pub trait FusedOps {
    /// Softmax (or log-softmax when `log`) over the last dim.
    fn softmax(&self, x: Arg, log: bool) -> Result<BoxStorage> {
        let _ = (x, log);
        not_impl("softmax", "?")
    }
    /// Backward of [`FusedOps::softmax`] from its output `y`:
    /// `dx = y ⊙ (dy − Σ dy⊙y)`, or for log-softmax `dx = dy − eʸ Σ dy`.
    fn softmax_bwd(&self, y: Arg, dy: Arg, log: bool) -> Result<BoxStorage> {
        let _ = (y, dy, log);
        not_impl("softmax_bwd", "?")
    }
    /// LayerNorm over the last dim: returns `(y, mean, rstd)`, the last two per row.
    fn layer_norm(
        &self,
        x: Arg,
        w: Option<Arg>,
        b: Option<Arg>,
        eps: f64,
    ) -> Result<(BoxStorage, BoxStorage, BoxStorage)> {
        let _ = (x, w, b, eps);
        not_impl("layer_norm", "?")
    }
    /// Backward of LayerNorm: `(dx, dw, db)` (`dw`/`db` only when `w` is given).
    #[allow(clippy::type_complexity)]
    fn layer_norm_bwd(
        &self,
        x: Arg,
        w: Option<Arg>,
        mean: Arg,
        rstd: Arg,
        dy: Arg,
    ) -> Result<(BoxStorage, Option<BoxStorage>, Option<BoxStorage>)> {
        let _ = (x, w, mean, rstd, dy);
        not_impl("layer_norm_bwd", "?")
    }
    /// Rotary embedding of `x` (…, T, D) contiguous with tables `cos`, `sin` (T, D), rotate-half
    /// pairing; `transpose` applies the transposed Jacobian (the backward). See `Tensor::rope`.
    fn rope(&self, x: Arg, cos: Arg, sin: Arg, transpose: bool) -> Result<BoxStorage> {
        let _ = (x, cos, sin, transpose);
        not_impl("rope", "?")
    }
    /// RMSNorm over the last dim: returns `(y, rstd)`.
    fn rms_norm(&self, x: Arg, w: Option<Arg>, eps: f64) -> Result<(BoxStorage, BoxStorage)> {
        let _ = (x, w, eps);
        not_impl("rms_norm", "?")
    }
    /// Backward of RMSNorm: `(dx, dw)`.
    fn rms_norm_bwd(&self, x: Arg, w: Option<Arg>, rstd: Arg, dy: Arg) -> Result<(BoxStorage, Option<BoxStorage>)> {
        let _ = (x, w, rstd, dy);
        not_impl("rms_norm_bwd", "?")
    }
    /// Softmax cross-entropy per row of `logits` (N, V) against integer `targets` (N): returns
    /// `(loss (N), logsumexp (N))`; rows whose target is `ignore_index` get loss 0.
    fn cross_entropy(
        &self,
        logits: Arg,
        targets: Arg,
        ignore_index: i64,
        label_smoothing: f64,
    ) -> Result<(BoxStorage, BoxStorage)> {
        let _ = (logits, targets, ignore_index, label_smoothing);
        not_impl("cross_entropy", "?")
    }
    /// Backward of cross-entropy given `dloss` (N): `dlogits = dloss·(softmax − target_dist)`.
    fn cross_entropy_bwd(
        &self,
        logits: Arg,
        targets: Arg,
        lse: Arg,
        dloss: Arg,
        ignore_index: i64,
        label_smoothing: f64,
    ) -> Result<BoxStorage> {
        let _ = (logits, targets, lse, dloss, ignore_index, label_smoothing);
        not_impl("cross_entropy_bwd", "?")
    }
    /// Scaled-dot-product attention, `q` (B,H,T,D), `k`/`v` (B,Hkv,S,D) with `H % Hkv == 0`,
    /// optional additive `mask` already broadcast to (B,H,T,S). Returns `(out (B,H,T,D),
    /// lse (B,H,T))`, the log-sum-exp of each score row, saved for the backward. `q` is
    /// contiguous; `k` and `v` are contiguous or head-strided ([`crate::Layout::is_head_strided`]:
    /// each (b, kv head) a contiguous (S, D) block, blocks `hs ≥ S·D` apart — the first S
    /// positions of a KV cache, read in place).
    fn attention(
        &self,
        args: &AttentionArgs,
        q: Arg,
        k: Arg,
        v: Arg,
        mask: Option<Arg>,
    ) -> Result<(BoxStorage, BoxStorage)> {
        let _ = (args, q, k, v, mask);
        not_impl("attention", "?")
    }
    /// Backward of attention: `(dq, dk, dv)`, recomputing the probabilities tile by tile from
    /// `lse` (never the T×S matrix).
    #[allow(clippy::too_many_arguments)]
    fn attention_bwd(
        &self,
        args: &AttentionArgs,
        q: Arg,
        k: Arg,
        v: Arg,
        mask: Option<Arg>,
        out: Arg,
        lse: Arg,
        dout: Arg,
    ) -> Result<(BoxStorage, BoxStorage, BoxStorage)> {
        let _ = (args, q, k, v, mask, out, lse, dout);
        not_impl("attention_bwd", "?")
    }
    /// Paged attention (Kwon et al. 2023, vLLM): query token `n` of `q` (N,H,D) f32 belongs to
    /// sequence `token_seq[n]` and sees that sequence's first `token_len[n]` keys, key `j` living
    /// in cache slot `block_tables[seq, j / block_size]·block_size + j % block_size` of `k`/`v`
    /// (slots, Hkv, D) (f32, f16 or bf16). Returns the output (N,H,D) f32. Inference only.
    #[allow(clippy::too_many_arguments)]
    fn paged_attention(
        &self,
        args: &PagedAttentionArgs,
        q: Arg,
        k: Arg,
        v: Arg,
        block_tables: Arg,
        token_seq: Arg,
        token_len: Arg,
    ) -> Result<BoxStorage> {
        let _ = (args, q, k, v, block_tables, token_seq, token_len);
        not_impl("paged_attention", "?")
    }
    /// Writes rows `src` (N, W) f32 into rows `slots` (N) of `cache` (slots, W) in place,
    /// converting to the cache's dtype (f32, f16 or bf16): a paged KV cache's append.
    fn paged_write(&self, cache: &mut dyn Storage, cache_layout: &Layout, slots: Arg, src: Arg) -> Result<()> {
        let _ = (cache, cache_layout, slots, src);
        not_impl("paged_write", "?")
    }
}
