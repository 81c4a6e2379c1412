//! Fused scaled-dot-product attention (Vaswani et al. 2017; book ch. 8; seed 003 "FlashAttention").
//!
//! `Attention(Q, K, V) = softmax(scale·QKᵀ + M) V`, with an optional additive mask `M`, the causal
//! mask, dropout on the probabilities, and grouped-query attention (`Hkv` kv heads shared by
//! `H/Hkv` query heads each; `Hkv = 1` is multi-query attention). The backend kernel is tiled
//! with the online softmax (FlashAttention-2): the T×S score matrix is never materialised, and
//! the backward recomputes probabilities from the saved per-row log-sum-exp.
//!
//! # Shapes
//! `q`: (B, H, T, D); `k`, `v`: (B, Hkv, S, D); `mask`: broadcastable to (B, H, T, S);
//! output: (B, H, T, D). Causal: query `i` sees keys `j ≤ i + S − T` (so a decode step with
//! T = 1 sees the whole cache).

use crate::backend::{AttentionArgs, CmpOp};
use crate::tensor::{check_compute, check_same_device, check_same_dtype};
use crate::{Error, Result, Tensor};

/// Options of [`Tensor::scaled_dot_product_attention`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionOpts {
    /// Apply the causal mask.
    pub causal: bool,
    /// Score scale; `None` means `1/√D`.
    pub scale: Option<f64>,
    /// Dropout probability on the attention weights (training only); 0 disables it.
    pub dropout_p: f64,
    /// Seed of the dropout mask.
    pub seed: u64,
}

impl AttentionOpts {
    /// No mask, no dropout, scale `1/√D`.
    pub const fn new() -> AttentionOpts {
        AttentionOpts { causal: false, scale: None, dropout_p: 0.0, seed: 0 }
    }

    /// Causal self-attention, no dropout.
    pub const fn causal() -> AttentionOpts {
        AttentionOpts { causal: true, scale: None, dropout_p: 0.0, seed: 0 }
    }
}

impl Default for AttentionOpts {
    fn default() -> Self {
        AttentionOpts::new()
    }
}

fn validate(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>, opts: &AttentionOpts) -> Result<Vec<usize>> {
    for t in [k, v] {
        check_same_device("attention", q, t)?;
        check_same_dtype("attention", q, t)?;
    }
    check_compute("attention", q)?;
    let (qs, ks) = (q.dims(), k.dims());
    let bad = |rhs: &[usize]| Error::ShapeMismatch { op: "attention", lhs: qs.to_vec(), rhs: rhs.to_vec() };
    if q.rank() != 4 || k.rank() != 4 || v.dims() != ks {
        return Err(bad(if k.rank() != 4 { ks } else { v.dims() }));
    }
    if qs[0] != ks[0] || qs[3] != ks[3] || ks[1] == 0 || qs[1] % ks[1] != 0 {
        return Err(bad(ks));
    }
    if !(0.0..1.0).contains(&opts.dropout_p) {
        return Err(Error::Invalid { op: "attention", msg: format!("dropout_p {} is not in [0, 1)", opts.dropout_p) });
    }
    let full = vec![qs[0], qs[1], qs[2], ks[2]];
    if let Some(m) = mask {
        check_same_dtype("attention", q, m)?;
        crate::shape::broadcast_shapes("attention mask", m.dims(), &full)
            .ok()
            .filter(|s| *s == full)
            .ok_or_else(|| Error::Broadcast { op: "attention", lhs: m.dims().to_vec(), rhs: full.clone() })?;
    }
    Ok(full)
}

impl Tensor {
    /// Fused attention of queries `q` over keys `k` and values `v` (see the module docs).
    pub fn scaled_dot_product_attention(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        opts: &AttentionOpts,
    ) -> Result<Tensor> {
        let full = validate(q, k, v, mask, opts)?;
        let args = AttentionArgs {
            scale: opts.scale.unwrap_or(1.0 / (q.dims()[3] as f64).sqrt()),
            causal: opts.causal,
            dropout_p: opts.dropout_p,
            seed: opts.seed,
        };
        let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
        let mask = mask.map(|m| m.broadcast_as(&full)).transpose()?.map(|m| m.detach());
        let ms = mask.as_ref().map(|m| m.storage());
        let marg = ms.as_ref().zip(mask.as_ref()).map(|(s, m)| (&***s, m.layout()));
        let (out, lse) = q.device().backend().attention(
            &args,
            (&**q.storage(), q.layout()),
            (&**k.storage(), k.layout()),
            (&**v.storage(), v.layout()),
            marg,
        )?;
        drop(ms);
        let lse = Tensor::from_storage(lse, &full[..3], q.device())?;
        let out = Tensor::from_storage(out, q.dims(), q.device())?;
        let (qs, ks, vs, os) = (q.clone(), k.clone(), v.clone(), out.clone());
        out.record("attention", &[&q, &k, &v], move |g| {
            let g = g.contiguous()?;
            let ms = mask.as_ref().map(|m| m.storage());
            let marg = ms.as_ref().zip(mask.as_ref()).map(|(s, m)| (&***s, m.layout()));
            let (dq, dk, dv) = qs.device().backend().attention_bwd(
                &args,
                (&**qs.storage(), qs.layout()),
                (&**ks.storage(), ks.layout()),
                (&**vs.storage(), vs.layout()),
                marg,
                (&**os.storage(), os.layout()),
                (&**lse.storage(), lse.layout()),
                (&**g.storage(), g.layout()),
            )?;
            let dev = qs.device();
            let wrap = |st, x: &Tensor| -> Result<Option<Tensor>> {
                Ok(if x.requires_grad() { Some(Tensor::from_storage(st, x.dims(), dev)?) } else { None })
            };
            Ok(vec![wrap(dq, &qs)?, wrap(dk, &ks)?, wrap(dv, &vs)?])
        })
    }

    /// The naive attention the fused kernel is tested against, from primitives: materialises the
    /// (B, H, T, S) scores, repeats kv heads for GQA, ignores dropout. Rows whose keys are all
    /// masked give NaN here (softmax of −∞), 0 in the fused kernel.
    pub fn attention_reference(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        opts: &AttentionOpts,
    ) -> Result<Tensor> {
        let full = validate(q, k, v, mask, opts)?;
        let (b, h, t, d) = (full[0], full[1], full[2], q.dims()[3]);
        let (hkv, s) = (k.dims()[1], k.dims()[2]);
        let repeat = |x: &Tensor| -> Result<Tensor> {
            if hkv == h {
                return Ok(x.clone());
            }
            x.unsqueeze(2)?.broadcast_as(&[b, hkv, h / hkv, s, d])?.reshape(&[b, h, s, d])
        };
        let (k, v) = (repeat(k)?, repeat(v)?);
        let scale = opts.scale.unwrap_or(1.0 / (d as f64).sqrt());
        let mut scores = q.matmul(&k.t()?)?.scale(scale)?;
        if let Some(m) = mask {
            scores = scores.add(m)?;
        }
        if opts.causal {
            let i = Tensor::arange(t, q.dtype(), q.device())?.reshape(&[t, 1])?.add_scalar(s as f64 - t as f64)?;
            let j = Tensor::arange(s, q.dtype(), q.device())?.reshape(&[1, s])?;
            let future = j.cmp(&i, CmpOp::Gt)?;
            scores = scores.masked_fill(&future, f64::NEG_INFINITY)?;
        }
        scores.softmax()?.matmul(&v)
    }
}
