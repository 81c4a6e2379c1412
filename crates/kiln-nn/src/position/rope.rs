//! [`RotaryEmbedding`] (Su et al. 2021, RoFormer; LLaMA): rotate each pair of query/key channels
//! by an angle proportional to the position, so `⟨R_m q, R_n k⟩` depends only on `m − n`.
//!
//! With `θᵢ = base^(−2i/D)`, `i < D/2`, and the "rotate half" channel pairing of GPT-NeoX/HF
//! LLaMA (channel `i` pairs with `i + D/2`):
//! `rope(x)_t = x_t ⊙ cos(t·θ) + rotate_half(x_t) ⊙ sin(t·θ)`, `rotate_half([a, b]) = [−b, a]`.
//! One fused op ([`Tensor::rope`]) forward and backward.

use kiln_core::{DType, Device, Error, Result, Tensor};

/// Precomputed cos/sin tables for positions `0..max_positions`.
///
/// # Shapes
/// tables: (max_positions, D); input (B, H, T, D) → output (B, H, T, D).
#[derive(Clone, Debug)]
pub struct RotaryEmbedding {
    cos: Tensor,
    sin: Tensor,
    head_dim: usize,
}

impl RotaryEmbedding {
    /// Tables for head dim `head_dim` (even), frequency base `base` (LLaMA 10000, SmolLM2 100000).
    pub fn new(
        head_dim: usize,
        max_positions: usize,
        base: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<RotaryEmbedding> {
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(Error::Invalid {
                op: "RotaryEmbedding",
                msg: format!("head dim {head_dim} must be even and positive"),
            });
        }
        let half = head_dim / 2;
        let (mut cos, mut sin) =
            (Vec::with_capacity(max_positions * head_dim), Vec::with_capacity(max_positions * head_dim));
        for t in 0..max_positions {
            // The table repeats the D/2 frequencies twice, matching rotate_half's pairing.
            for _ in 0..2 {
                for i in 0..half {
                    let theta = base.powf(-2.0 * i as f64 / head_dim as f64);
                    let a = t as f64 * theta;
                    cos.push(a.cos());
                    sin.push(a.sin());
                }
            }
        }
        Ok(RotaryEmbedding {
            cos: Tensor::from_f64(&cos, &[max_positions, head_dim], dtype, device)?,
            sin: Tensor::from_f64(&sin, &[max_positions, head_dim], dtype, device)?,
            head_dim,
        })
    }

    /// Positions the tables cover.
    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Rotates `x` (B, H, T, D) as if its first token were at position `offset`.
    pub fn forward(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let d = self.head_dim;
        if x.rank() != 4 || x.dims()[3] != d {
            return Err(Error::ShapeMismatch { op: "RotaryEmbedding", lhs: x.dims().to_vec(), rhs: vec![d] });
        }
        let t = x.dims()[2];
        if offset + t > self.max_positions() {
            return Err(Error::Invalid {
                op: "RotaryEmbedding",
                msg: format!("positions {offset}..{} exceed the table of {}", offset + t, self.max_positions()),
            });
        }
        let cos = self.cos.narrow(0, offset, t)?; // (T, D), broadcast over (B, H)
        let sin = self.sin.narrow(0, offset, t)?;
        x.rope(&cos, &sin) // one fused node (Tensor::rope_reference composes it from primitives)
    }

    /// Rotates `x` (N, H, D) whose token `n` sits at position `positions[n]` (an (N) i64
    /// tensor): the ragged batches of paged decoding, where every sequence is at its own offset.
    pub fn forward_at(&self, x: &Tensor, positions: &Tensor) -> Result<Tensor> {
        let d = self.head_dim;
        if x.rank() != 3 || x.dims()[2] != d || positions.dims() != [x.dims()[0]] {
            return Err(Error::ShapeMismatch {
                op: "RotaryEmbedding::forward_at",
                lhs: x.dims().to_vec(),
                rhs: positions.dims().to_vec(),
            });
        }
        let cos = self.cos.index_select(0, positions)?; // (N, D)
        let sin = self.sin.index_select(0, positions)?;
        x.transpose(0, 1)?.rope(&cos, &sin)?.transpose(0, 1) // (H, N, D) rotated, back to (N, H, D)
    }
}
