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
use crate::{Error, Layout, Result, Tensor};

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
    /// Sliding window `w` (causal only; Mistral): each query sees its own key and the `w − 1`
    /// before it, computed inside the fused kernel (no mask tensor, O(T·w) work).
    pub window: Option<usize>,
}

impl AttentionOpts {
    /// No mask, no dropout, scale `1/√D`.
    pub const fn new() -> AttentionOpts {
        AttentionOpts { causal: false, scale: None, dropout_p: 0.0, seed: 0, window: None }
    }

    /// Causal self-attention, no dropout.
    pub const fn causal() -> AttentionOpts {
        AttentionOpts { causal: true, scale: None, dropout_p: 0.0, seed: 0, window: None }
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
    if let Some(w) = opts.window {
        if w == 0 || !opts.causal {
            return Err(Error::Invalid {
                op: "attention",
                msg: format!("a sliding window needs causal attention and at least one key (got {w})"),
            });
        }
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

/// The backend's forward kernel on contiguous `q`, `k`, `v` (and a broadcast, detached `mask`
/// of shape `full` = (B, H, T, S)): `(out (B,H,T,D), lse (B,H,T))`, both untracked.
fn kernel_fwd(
    args: &AttentionArgs,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    full: &[usize],
) -> Result<(Tensor, Tensor)> {
    let ms = mask.map(|m| m.storage());
    let marg = ms.as_ref().zip(mask).map(|(s, m)| (&***s, m.layout()));
    let (out, lse) = q.device().backend().attention(
        args,
        (&**q.storage(), q.layout()),
        (&**k.storage(), k.layout()),
        (&**v.storage(), v.layout()),
        marg,
    )?;
    // model FLOPs: QKᵀ and PV over the full (B,H,T,S) scores, 2·2·B·H·T·S·D
    crate::flops::add(crate::flops::product(&[2, full.iter().product::<usize>(), q.dims()[3]]));
    Ok((Tensor::from_storage(out, q.dims(), q.device())?, Tensor::from_storage(lse, &full[..3], q.device())?))
}

/// The backend's backward kernel: `(dq, dk, dv)` from the forward's inputs, `(out, lse)` and the
/// contiguous output gradient `dout` (B,H,T,D).
fn kernel_bwd(
    args: &AttentionArgs,
    (q, k, v): (&Tensor, &Tensor, &Tensor),
    mask: Option<&Tensor>,
    (out, lse): (&Tensor, &Tensor),
    dout: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let ms = mask.map(|m| m.storage());
    let marg = ms.as_ref().zip(mask).map(|(s, m)| (&***s, m.layout()));
    let (dq, dk, dv) = q.device().backend().attention_bwd(
        args,
        (&**q.storage(), q.layout()),
        (&**k.storage(), k.layout()),
        (&**v.storage(), v.layout()),
        marg,
        (&**out.storage(), out.layout()),
        (&**lse.storage(), lse.layout()),
        (&**dout.storage(), dout.layout()),
    )?;
    // model FLOPs: dP, dV, dQ, dK, 4·2·B·H·T·S·D (the recomputed scores are not counted)
    let scores: usize = q.dims()[..3].iter().product::<usize>() * k.dims()[2];
    crate::flops::add(crate::flops::product(&[4, scores, q.dims()[3]]));
    let dev = q.device();
    Ok((
        Tensor::from_storage(dq, q.dims(), dev)?,
        Tensor::from_storage(dk, k.dims(), dev)?,
        Tensor::from_storage(dv, v.dims(), dev)?,
    ))
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
            window: opts.window,
        };
        // Without a gradient to compute, a head-strided k/v (a KV cache's filled prefix) is read
        // in place; the backward wants them contiguous.
        let tracked = crate::autograd::grad_enabled() && [q, k, v].iter().any(|t| t.requires_grad());
        let hs = k.layout().head_strided();
        let (k, v) = if !tracked && hs.is_some() && v.layout().head_strided() == hs {
            (k.clone(), v.clone())
        } else {
            (k.contiguous()?, v.contiguous()?)
        };
        let q = q.contiguous()?;
        let mask = mask.map(|m| m.broadcast_as(&full)).transpose()?.map(|m| m.detach());
        let (out, lse) = kernel_fwd(&args, &q, &k, &v, mask.as_ref(), &full)?;
        let (qs, ks, vs, os) = (q.clone(), k.clone(), v.clone(), out.clone());
        out.record("attention", &[&q, &k, &v], move |g| {
            let (dq, dk, dv) = kernel_bwd(&args, (&qs, &ks, &vs), mask.as_ref(), (&os, &lse), &g.contiguous()?)?;
            let keep = |d: Tensor, x: &Tensor| if x.requires_grad() { Some(d) } else { None };
            Ok(vec![keep(dq, &qs), keep(dk, &ks), keep(dv, &vs)])
        })
    }

    /// Fused self-attention straight from a packed projection: `qkv` (B, T, (H + 2·Hkv)·D) holds
    /// the queries, keys and values side by side (the layout of GPT-2's `c_attn` output); the
    /// result is (B, T, H·D), ready for the output projection. Same maths as
    /// [`Tensor::scaled_dot_product_attention`] on the split, head-major views, but one autograd
    /// node: the backward writes dQ, dK and dV once each into a single (B, T, (H + 2·Hkv)·D)
    /// gradient instead of three zero-filled full-size gradients (one per split view) summed.
    pub fn packed_attention(
        qkv: &Tensor,
        n_heads: usize,
        n_kv_heads: usize,
        mask: Option<&Tensor>,
        opts: &AttentionOpts,
    ) -> Result<Tensor> {
        let dims = qkv.dims();
        let width = n_heads + 2 * n_kv_heads;
        if qkv.rank() != 3 || n_kv_heads == 0 || !dims[2].is_multiple_of(width) || !n_heads.is_multiple_of(n_kv_heads) {
            return Err(Error::BadShape {
                op: "packed_attention",
                shape: dims.to_vec(),
                msg: format!("expected (B, T, (H + 2·Hkv)·D) with H = {n_heads}, Hkv = {n_kv_heads}"),
            });
        }
        let (b, t, d) = (dims[0], dims[1], dims[2] / width);
        let x = qkv.detach().contiguous()?;
        // (B, n, T, D) view of heads [start, start + n) of a contiguous (B, T, W·D) tensor:
        // strides (T·W·D, D, W·D, 1), no copy.
        let heads = move |x: &Tensor, start: usize, n: usize| -> Tensor {
            let l = x.layout();
            x.with_layout(Layout::new(vec![b, n, t, d], vec![t * width * d, d, width * d, 1], l.offset() + start * d))
        };
        let (q, k, v) = (
            heads(&x, 0, n_heads).contiguous()?,
            heads(&x, n_heads, n_kv_heads).contiguous()?,
            heads(&x, n_heads + n_kv_heads, n_kv_heads).contiguous()?,
        );
        let full = validate(&q, &k, &v, mask, opts)?;
        let args = AttentionArgs {
            scale: opts.scale.unwrap_or(1.0 / (d as f64).sqrt()),
            causal: opts.causal,
            dropout_p: opts.dropout_p,
            seed: opts.seed,
            window: opts.window,
        };
        let mask = mask.map(|m| m.broadcast_as(&full)).transpose()?.map(|m| m.detach());
        let (out, lse) = kernel_fwd(&args, &q, &k, &v, mask.as_ref(), &full)?; // (B,H,T,D)
        let y = out.transpose(1, 2)?.contiguous()?.reshape(&[b, t, n_heads * d])?; // (B,T,H·D)
        let (qkv_dims, dtype, device) = (dims.to_vec(), qkv.dtype(), qkv.device().clone());
        y.record("packed_attention", &[qkv], move |g| {
            let dout = g.reshape(&[b, t, n_heads, d])?.transpose(1, 2)?.contiguous()?; // (B,H,T,D)
            let (dq, dk, dv) = kernel_bwd(&args, (&q, &k, &v), mask.as_ref(), (&out, &lse), &dout)?;
            let dqkv = Tensor::zeros(&qkv_dims, dtype, &device)?;
            heads(&dqkv, 0, n_heads).assign_(&dq)?;
            heads(&dqkv, n_heads, n_kv_heads).assign_(&dk)?;
            heads(&dqkv, n_heads + n_kv_heads, n_kv_heads).assign_(&dv)?;
            Ok(vec![Some(dqkv)])
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
            if let Some(w) = opts.window {
                let too_old = j.cmp(&i.add_scalar(-(w as f64))?, CmpOp::Le)?;
                scores = scores.masked_fill(&too_old, f64::NEG_INFINITY)?;
            }
        }
        scores.softmax()?.matmul(&v)
    }
}
