//! Paged attention (Kwon et al. 2023, vLLM; seed 003/004 "paged KV cache"): keys and values live
//! in fixed-size blocks of a shared pool, and each sequence's block table maps its logical
//! positions to physical slots, so sequences of any length share one preallocated cache without
//! fragmentation, and forks (beams, parallel samples, common prefixes) share blocks.
//!
//! For query token `n` of sequence `s = token_seq[n]`, seeing its first `L = token_len[n]` keys:
//! `slot(j) = block_tables[s, j / bs]·bs + j % bs`,
//! `out[n, h] = Σ_j softmax_j(scale · q[n, h]·k[slot(j), h / G]) · v[slot(j), h / G]`,
//! with `G = H / Hkv` query heads per kv head (grouped-query attention).
//!
//! # Shapes
//! `q`: (N, H, D) f32; `k`, `v`: (slots, Hkv, D) f32/f16/bf16; `block_tables`: (S, max_blocks)
//! i64; `token_seq`, `token_len`: (N) i64; output (N, H, D) f32. Inference only (not recorded).

use crate::backend::PagedAttentionArgs;
use crate::tensor::check_same_device;
use crate::{no_grad, DType, Error, Result, Tensor};

/// Which keys each query token of a paged batch sees: the per-step metadata of
/// [`Tensor::paged_attention`], built once per step and shared by every layer.
#[derive(Clone, Debug)]
pub struct PagedBatch {
    /// (S, max_blocks) i64: physical block ids of each sequence (unused entries 0).
    pub block_tables: Tensor,
    /// (N) i64: the sequence of each query token.
    pub token_seq: Tensor,
    /// (N) i64: keys visible to each query token (its position + 1).
    pub token_len: Tensor,
    /// (N) i64: the cache slot each new token's key and value are written to.
    pub slots: Tensor,
    /// (N) i64: the position of each token in its sequence.
    pub positions: Tensor,
    /// Slots per block.
    pub block_size: usize,
}

fn bad(msg: String) -> Error {
    Error::Invalid { op: "paged_attention", msg }
}

impl Tensor {
    /// Paged attention of `q` (N, H, D) over the paged cache `k`, `v` (slots, Hkv, D); see the
    /// module docs. `scale` defaults to `1/√D`.
    pub fn paged_attention(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        batch: &PagedBatch,
        scale: Option<f64>,
    ) -> Result<Tensor> {
        check_same_device("paged_attention", q, k)?;
        check_same_device("paged_attention", q, v)?;
        let (qd, kd) = (q.dims(), k.dims());
        if q.rank() != 3 || k.rank() != 3 || v.dims() != kd || kd[2] != qd[2] || kd[1] == 0 || qd[1] % kd[1] != 0 {
            return Err(Error::ShapeMismatch { op: "paged_attention", lhs: qd.to_vec(), rhs: kd.to_vec() });
        }
        if q.dtype() != DType::F32 || k.dtype() != v.dtype() {
            return Err(bad(format!(
                "q must be f32 and k, v one dtype (got {}, {}, {})",
                q.dtype(),
                k.dtype(),
                v.dtype()
            )));
        }
        let n = qd[0];
        if batch.token_seq.dims() != [n] || batch.token_len.dims() != [n] || batch.block_tables.rank() != 2 {
            return Err(bad(format!(
                "{n} query tokens but token_seq {:?}, token_len {:?}, block_tables {:?}",
                batch.token_seq.dims(),
                batch.token_len.dims(),
                batch.block_tables.dims()
            )));
        }
        if batch.block_size == 0 || kd[0] % batch.block_size != 0 {
            return Err(bad(format!("{} slots are not whole blocks of {}", kd[0], batch.block_size)));
        }
        let args =
            PagedAttentionArgs { block_size: batch.block_size, scale: scale.unwrap_or(1.0 / (qd[2] as f64).sqrt()) };
        let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
        let (bt, ts, tl) =
            (batch.block_tables.contiguous()?, batch.token_seq.contiguous()?, batch.token_len.contiguous()?);
        let out = q.device().backend().paged_attention(
            &args,
            (&**q.storage(), q.layout()),
            (&**k.storage(), k.layout()),
            (&**v.storage(), v.layout()),
            (&**bt.storage(), bt.layout()),
            (&**ts.storage(), ts.layout()),
            (&**tl.storage(), tl.layout()),
        )?;
        Tensor::from_storage(out, qd, q.device())
    }

    /// The reference [`Tensor::paged_attention`] is tested against: per query token, gather its
    /// keys and values with `index_select`, widen them to f32 and run the dense
    /// [`Tensor::scaled_dot_product_attention`].
    pub fn paged_attention_reference(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        batch: &PagedBatch,
        scale: Option<f64>,
    ) -> Result<Tensor> {
        no_grad(|| {
            let (tables, seqs, lens) = (
                batch.block_tables.to_vec::<i64>()?,
                batch.token_seq.to_vec::<i64>()?,
                batch.token_len.to_vec::<i64>()?,
            );
            let (mb, bs) = (batch.block_tables.dims()[1], batch.block_size);
            let (k, v) = (k.to_dtype(DType::F32)?, v.to_dtype(DType::F32)?);
            let opts = crate::ops::AttentionOpts { scale, ..crate::ops::AttentionOpts::new() };
            let mut outs = Vec::with_capacity(seqs.len());
            for (n, (&s, &len)) in seqs.iter().zip(&lens).enumerate() {
                let slots: Vec<i64> =
                    (0..len as usize).map(|j| tables[s as usize * mb + j / bs] * bs as i64 + (j % bs) as i64).collect();
                let ids = Tensor::from_vec(slots, &[len as usize], q.device())?;
                let kn = k.index_select(0, &ids)?.transpose(0, 1)?.unsqueeze(0)?; // (1,Hkv,L,D)
                let vn = v.index_select(0, &ids)?.transpose(0, 1)?.unsqueeze(0)?;
                let qn = q.narrow(0, n, 1)?.transpose(0, 1)?.unsqueeze(0)?; // (1,H,1,D)
                outs.push(Tensor::scaled_dot_product_attention(&qn, &kn, &vn, None, &opts)?.reshape(&[
                    1,
                    q.dims()[1],
                    q.dims()[2],
                ])?);
            }
            Tensor::cat(&outs.iter().collect::<Vec<_>>(), 0)
        })
    }

    /// Writes `src` (N, …) into rows `slots` (N) of this cache tensor (slots, …) in place,
    /// converting f32 to the cache's dtype. Not recorded on the tape.
    pub fn paged_write_(&self, slots: &Tensor, src: &Tensor) -> Result<()> {
        check_same_device("paged_write", self, src)?;
        let (cd, sd) = (self.dims(), src.dims());
        if self.rank() < 1 || src.rank() != self.rank() || cd[1..] != sd[1..] || slots.dims() != [sd[0]] {
            return Err(Error::ShapeMismatch { op: "paged_write", lhs: cd.to_vec(), rhs: sd.to_vec() });
        }
        if !self.is_contiguous() {
            return Err(Error::Invalid { op: "paged_write", msg: "the cache must be contiguous".into() });
        }
        let (src, slots) = (src.to_dtype(DType::F32)?.contiguous()?, slots.contiguous()?);
        let s = src.storage();
        let ids = slots.storage();
        let mut d = self.storage_mut();
        self.device().backend().paged_write(&mut **d, self.layout(), (&**ids, slots.layout()), (&**s, src.layout()))
    }
}
