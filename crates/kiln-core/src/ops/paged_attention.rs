//! Paged attention (Kwon et al. 2023, vLLM; seed 003/004 "paged KV cache"): keys and values live
//! in fixed-size blocks of a shared pool, and each sequence's block table maps its logical
//! positions to physical slots, so sequences of any length share one preallocated cache without
//! fragmentation, and forks (beams, parallel samples, common prefixes) share blocks.
//!
//! For query token `n` of sequence `s = token_seq[n]`, seeing its first `L = token_len[n]` keys:
//! `slot(j) = block_tables[s, j / bs]·bs + j % bs`,
//! `out[n, h] = Σ_j softmax_j(scale · q[n, h]·k[slot(j), h / G]) · v[slot(j), h / G]`,
//! with `G = H / Hkv` query heads per kv head (grouped-query attention). With a sliding window
//! `w` (Mistral) the sum runs over the last `min(L, w)` keys only.
//!
//! # Shapes
//! `q`: (N, H, D) f32; `k`, `v`: (slots, Hkv, D) f32/f16/bf16, or (slots, Hkv, D + 4) u8 for
//! an int8 cache (below); `block_tables`: (S, max_blocks) i64; `token_seq`, `token_len`: (N)
//! i64; output (N, H, D) f32. Inference only (not recorded).
//!
//! # int8 cache
//! A `u8` cache stores each (slot, kv head) row of `D` values as [`q8_row_bytes`]`(D) = D + 4`
//! bytes: its scale `s = max|x| / 127` as a little-endian f32, then the codes
//! `round(x / s)` ∈ [−127, 127] as two's-complement bytes; `x ≈ s·code`. Per-token, per-head
//! scales follow each row's own range (keys vary a lot across heads), at 1 + 4/D bytes per value
//! — a quarter of f32, half of f16 — with a relative error of at most 1/254 of the row's largest
//! magnitude.

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

/// Bytes of one int8 cache row of `d` values: an f32 scale and `d` codes.
pub const fn q8_row_bytes(d: usize) -> usize {
    d + 4
}

/// Quantizes `x` (`d` values) into an int8 cache row `out` ([`q8_row_bytes`]`(d)` bytes).
pub fn q8_quantize_row(x: &[f32], out: &mut [u8]) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = amax / 127.0;
    let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
    out[..4].copy_from_slice(&scale.to_le_bytes());
    for (o, &v) in out[4..].iter_mut().zip(x) {
        *o = ((v * inv).round().clamp(-127.0, 127.0) as i8) as u8;
    }
}

/// The values of an int8 cache row (`out.len()` = `d`).
pub fn q8_dequantize_row(row: &[u8], out: &mut [f32]) {
    let scale = f32::from_le_bytes([row[0], row[1], row[2], row[3]]);
    for (o, &c) in out.iter_mut().zip(&row[4..]) {
        *o = scale * (c as i8) as f32;
    }
}

/// The head dim of a cache tensor's last dim (`D`, or `D + 4` bytes for int8).
fn cache_head_dim(cache: &Tensor) -> Option<usize> {
    let last = *cache.dims().last()?;
    if cache.dtype() == DType::U8 {
        last.checked_sub(4)
    } else {
        Some(last)
    }
}

/// An int8 cache (slots, Hkv, D + 4) as f32 (slots, Hkv, D).
fn q8_dequantize_cache(c: &Tensor) -> Result<Tensor> {
    let d = cache_head_dim(c).ok_or_else(|| bad(format!("an int8 cache row needs 4 + D bytes, got {:?}", c.dims())))?;
    let bytes = c.contiguous()?.to_vec::<u8>()?;
    let mut out = vec![0f32; bytes.len() / q8_row_bytes(d) * d];
    for (row, o) in bytes.chunks_exact(q8_row_bytes(d)).zip(out.chunks_exact_mut(d)) {
        q8_dequantize_row(row, o);
    }
    let dims = [&c.dims()[..c.rank() - 1], &[d]].concat();
    Tensor::from_vec(out, &dims, c.device())
}

impl Tensor {
    /// Paged attention of `q` (N, H, D) over the paged cache `k`, `v` (slots, Hkv, D); see the
    /// module docs. `scale` defaults to `1/√D`; `window` limits each token to its last `w` keys.
    pub fn paged_attention(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        batch: &PagedBatch,
        scale: Option<f64>,
        window: Option<usize>,
    ) -> Result<Tensor> {
        check_same_device("paged_attention", q, k)?;
        check_same_device("paged_attention", q, v)?;
        let (qd, kd) = (q.dims(), k.dims());
        if q.rank() != 3
            || k.rank() != 3
            || v.dims() != kd
            || cache_head_dim(k) != Some(qd[2])
            || kd[1] == 0
            || qd[1] % kd[1] != 0
        {
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
        if window == Some(0) {
            return Err(bad("a sliding window must hold at least one key".into()));
        }
        let scale = scale.unwrap_or(1.0 / (qd[2] as f64).sqrt());
        let args = PagedAttentionArgs { block_size: batch.block_size, scale, window };
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
        window: Option<usize>,
    ) -> Result<Tensor> {
        no_grad(|| {
            let (tables, seqs, lens) = (
                batch.block_tables.to_vec::<i64>()?,
                batch.token_seq.to_vec::<i64>()?,
                batch.token_len.to_vec::<i64>()?,
            );
            let (mb, bs) = (batch.block_tables.dims()[1], batch.block_size);
            let widen =
                |c: &Tensor| if c.dtype() == DType::U8 { q8_dequantize_cache(c) } else { c.to_dtype(DType::F32) };
            let (k, v) = (widen(k)?, widen(v)?);
            let opts = crate::ops::AttentionOpts { scale, ..crate::ops::AttentionOpts::new() };
            let mut outs = Vec::with_capacity(seqs.len());
            for (n, (&s, &len)) in seqs.iter().zip(&lens).enumerate() {
                let first = window.map_or(0, |w| (len as usize).saturating_sub(w));
                let slots: Vec<i64> = (first..len as usize)
                    .map(|j| tables[s as usize * mb + j / bs] * bs as i64 + (j % bs) as i64)
                    .collect();
                let ids = Tensor::from_vec(slots, &[len as usize - first], q.device())?;
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
    /// converting f32 to the cache's dtype (an int8 cache (slots, Hkv, D + 4) quantizes each
    /// (token, head) row of `src` (N, Hkv, D)). Not recorded on the tape.
    pub fn paged_write_(&self, slots: &Tensor, src: &Tensor) -> Result<()> {
        check_same_device("paged_write", self, src)?;
        let (cd, sd) = (self.dims(), src.dims());
        // Rows of the same shape, or for int8 (slots, Hkv, D + 4) bytes from (N, Hkv, D) values.
        let row_ok = || {
            if self.dtype() == DType::U8 {
                self.rank() == 3 && cd[1] == sd[1] && cache_head_dim(self) == Some(sd[2])
            } else {
                cd[1..] == sd[1..]
            }
        };
        if self.rank() < 1 || src.rank() != self.rank() || !row_ok() || slots.dims() != [sd[0]] {
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
