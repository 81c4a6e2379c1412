//! Interpretability: a forward pass that keeps what the fused kernels never materialise — every
//! layer's attention probabilities and the residual stream between blocks (book ch. 16
//! "interpretability"; Elhage et al. 2021; nostalgebraist 2020, the logit lens).
//!
//! Attention here is the textbook composition `softmax(q·kᵀ/√D + causal) · v` from primitive
//! ops, so its probabilities can be returned; a test checks that the traced logits equal the
//! fused forward's.

use super::{Block, Gpt};
use kiln_core::{no_grad, Error, Result, Tensor};
use kiln_nn::position::RotaryEmbedding;

/// What [`Gpt::trace`] records for one sequence of T tokens.
#[derive(Clone, Debug)]
pub struct GptTrace {
    /// The residual stream (T, C): after the embeddings, then after each of the L blocks.
    pub residual: Vec<Tensor>,
    /// Attention probabilities (H, T, T) of each layer (row i: how query i spreads over keys ≤ i).
    pub attention: Vec<Tensor>,
    /// Final logits (T, V).
    pub logits: Tensor,
}

impl Block {
    /// The block on `x` (1, T, C) with explicit attention; returns the output and the
    /// probabilities (H, T, T).
    fn forward_traced(&self, x: &Tensor, rope: Option<&RotaryEmbedding>) -> Result<(Tensor, Tensor)> {
        let cfg = &self.attn.cfg;
        let (h, hkv, d) = (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim());
        let t = x.dims()[1];
        let qkv = self.attn.c_attn.forward(&self.ln_1.forward(x)?)?; // (1,T,(H+2Hkv)·D)
        let parts = qkv.split(&[h * d, hkv * d, hkv * d], -1)?;
        let heads = |p: &Tensor, n: usize| p.reshape(&[1, t, n, d])?.transpose(1, 2); // (1,n,T,D)
        let (mut q, mut k, v) = (heads(&parts[0], h)?, heads(&parts[1], hkv)?, heads(&parts[2], hkv)?);
        if let Some(r) = rope {
            q = r.forward(&q, 0)?;
            k = r.forward(&k, 0)?;
        }
        // Grouped-query attention: query head i reads kv head i / (H / Hkv).
        let group = Tensor::from_vec((0..h).map(|i| (i / (h / hkv)) as i64).collect(), &[h], x.device())?;
        let (k, v) = (k.index_select(1, &group)?, v.index_select(1, &group)?);
        // Causal, and within the sliding window when the model has one: key j visible to query i
        // iff i − w < j ≤ i.
        let w = self.attn.cfg.window.unwrap_or(t);
        let hidden = |i: usize, j: usize| j > i || j + w <= i;
        let mask: Vec<f32> = (0..t * t).map(|n| if hidden(n / t, n % t) { f32::NEG_INFINITY } else { 0.0 }).collect();
        let mask = Tensor::from_vec(mask, &[t, t], x.device())?;
        let scores = q.matmul(&k.transpose(2, 3)?)?.scale(1.0 / (d as f64).sqrt())?.add(&mask)?; // (1,H,T,T)
        let probs = scores.softmax()?; // over the last dim (keys)
        let y = probs.matmul(&v)?.transpose(1, 2)?.reshape(&[1, t, h * d])?;
        let x = x.add(&self.attn.c_proj.forward(&y)?)?;
        let m = self.mlp.forward(&self.ln_2.forward(&x)?)?;
        Ok((x.add(&m)?, probs.reshape(&[h, t, t])?))
    }
}

impl Gpt {
    /// A traced forward pass over `tokens` (T) of one sequence: residual stream, attention
    /// probabilities and logits; see [`GptTrace`].
    pub fn trace(&self, tokens: &[u32]) -> Result<GptTrace> {
        let t = tokens.len();
        if t == 0 || t > self.cfg.n_positions {
            return Err(Error::Invalid {
                op: "Gpt::trace",
                msg: format!("{t} tokens (1 to the context of {} allowed)", self.cfg.n_positions),
            });
        }
        let dev = self.wte.weight.device();
        no_grad(|| {
            let ids = Tensor::from_vec(tokens.iter().map(|&x| x as i64).collect(), &[1, t], dev)?;
            let mut x = self.wte.forward(&ids)?; // (1,T,C)
            if let Some(wpe) = &self.wpe {
                let pos = Tensor::from_vec((0..t as i64).collect(), &[1, t], dev)?;
                x = x.add(&wpe.forward(&pos)?)?;
            }
            let c = self.cfg.n_embd;
            let mut residual = vec![x.reshape(&[t, c])?];
            let mut attention = vec![];
            for blk in &self.h {
                let (y, p) = blk.forward_traced(&x, self.rope.as_ref())?;
                x = y;
                residual.push(x.reshape(&[t, c])?);
                attention.push(p);
            }
            let logits = self.head(&self.ln_f.forward(&x)?)?.reshape(&[t, self.cfg.vocab_size])?;
            Ok(GptTrace { residual, attention, logits })
        })
    }

    /// The logit lens: the output head applied to residual stream `h` (T, C) through the final
    /// norm, as if the remaining layers were skipped; logits (T, V).
    pub fn logit_lens(&self, h: &Tensor) -> Result<Tensor> {
        no_grad(|| self.head(&self.ln_f.forward(h)?))
    }
}
