//! [`KvCache`]: keys and values of past tokens, preallocated and written in place (seed 001/003
//! "KV cache"; book ch. 12). Decoding one token then costs O(T) attention work instead of
//! recomputing all T positions.
//!
//! For a sliding-window model (Mistral: a query sees its own key and the `w − 1` before it),
//! [`KvCache::with_window`] makes the buffer a rolling one: when an append would overflow, the
//! keys no later query can see are dropped and the last `w − 1` move to the front (one copy of
//! `w − 1` rows per overflow, amortised O(w / (capacity − w)) rows per token). Keys stay in
//! position order, so attention and its window mask are unchanged; [`KvCache::position`] counts
//! the dropped tokens too and is what RoPE and learned positions use.

use kiln_core::{no_grad, DType, Device, Error, Result, Tensor};

/// Per-layer key/value buffers of shape (B, Hkv, max_len, D), filled up to `len`.
#[derive(Clone, Debug)]
pub struct KvCache {
    k: Tensor,
    v: Tensor,
    len: usize,
    /// Tokens dropped from the front (rolling buffer).
    dropped: usize,
    /// Sliding window `w` of a rolling buffer.
    window: Option<usize>,
}

impl KvCache {
    /// Zeroed buffers for `max_len` positions.
    pub fn new(
        batch: usize,
        kv_heads: usize,
        max_len: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<KvCache> {
        let shape = [batch, kv_heads, max_len, head_dim];
        Ok(KvCache {
            k: Tensor::zeros(&shape, dtype, device)?,
            v: Tensor::zeros(&shape, dtype, device)?,
            len: 0,
            dropped: 0,
            window: None,
        })
    }

    /// A rolling buffer for a model with a sliding window of `w` keys (see the module docs).
    /// Appends of up to `capacity − (w − 1)` tokens at a time then never overflow.
    pub fn with_window(mut self, w: usize) -> KvCache {
        self.window = Some(w.max(1));
        self
    }

    /// Position of the next token: tokens cached plus tokens dropped by the rolling buffer.
    pub fn position(&self) -> usize {
        self.dropped + self.len
    }

    /// Tokens held in the buffer (all tokens so far, unless a rolling buffer dropped some).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first append.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Capacity in tokens.
    pub fn max_len(&self) -> usize {
        self.k.dims()[2]
    }

    /// Forgets every cached token (the buffers are reused).
    pub fn reset(&mut self) {
        self.len = 0;
        self.dropped = 0;
    }

    /// Keeps the tokens before position `len` and forgets the rest (speculative decoding rolls
    /// back rejected draft tokens); a position beyond the cached ones, or before the tokens a
    /// rolling buffer already dropped, is an error.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.position() || len < self.dropped {
            return Err(Error::Invalid {
                op: "KvCache::truncate",
                msg: format!("cannot keep {len} tokens: positions {}..{} are cached", self.dropped, self.position()),
            });
        }
        self.len = len - self.dropped;
        Ok(())
    }

    /// Replaces the batch with rows `rows` of the current one (a row may repeat): beam search
    /// follows its surviving beams this way. The cached prefix is copied into fresh buffers of
    /// the same capacity.
    pub fn select_rows(&mut self, rows: &[usize]) -> Result<()> {
        let d = self.k.dims().to_vec(); // (B, Hkv, max_len, D)
        if let Some(&r) = rows.iter().find(|&&r| r >= d[0]) {
            return Err(Error::Invalid { op: "KvCache::select_rows", msg: format!("row {r} of a batch of {}", d[0]) });
        }
        let device = self.k.device().clone();
        let mut next = KvCache::new(rows.len(), d[1], d[2], d[3], self.k.dtype(), &device)?;
        if self.len > 0 && !rows.is_empty() {
            let ids = Tensor::from_vec(rows.iter().map(|&r| r as i64).collect(), &[rows.len()], &device)?;
            no_grad(|| -> Result<()> {
                let k = self.k.narrow(2, 0, self.len)?.index_select(0, &ids)?;
                let v = self.v.narrow(2, 0, self.len)?.index_select(0, &ids)?;
                next.k.narrow(2, 0, self.len)?.assign_(&k)?;
                next.v.narrow(2, 0, self.len)?.assign_(&v)
            })?;
        }
        next.len = self.len;
        next.dropped = self.dropped;
        next.window = self.window;
        *self = next;
        Ok(())
    }

    /// Writes `k`, `v` (B, Hkv, T, D) after the cached tokens and returns views of all keys and
    /// values so far, (B, Hkv, len + T, D). Inference only: not recorded on the tape.
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let t = k.dims().get(2).copied().unwrap_or(0);
        if let Some(w) = self.window.filter(|&w| self.len + t > self.max_len() && w - 1 + t <= self.max_len()) {
            self.roll(w)?;
        }
        if self.len + t > self.max_len() {
            return Err(Error::Invalid {
                op: "KvCache::append",
                msg: format!("{} cached + {t} new tokens exceed the capacity of {}", self.len, self.max_len()),
            });
        }
        no_grad(|| -> Result<()> {
            self.k.narrow(2, self.len, t)?.assign_(&k.detach())?;
            self.v.narrow(2, self.len, t)?.assign_(&v.detach())
        })?;
        self.len += t;
        Ok((self.k.narrow(2, 0, self.len)?, self.v.narrow(2, 0, self.len)?))
    }

    /// Drops all but the last `w − 1` cached tokens, moving those to the front.
    fn roll(&mut self, w: usize) -> Result<()> {
        let keep = self.len.min(w - 1);
        let start = self.len - keep;
        if start == 0 {
            return Ok(());
        }
        no_grad(|| -> Result<()> {
            if keep > 0 {
                // copied out first: source and destination rows may overlap
                let k = self.k.narrow(2, start, keep)?.contiguous()?;
                let v = self.v.narrow(2, start, keep)?.contiguous()?;
                self.k.narrow(2, 0, keep)?.assign_(&k)?;
                self.v.narrow(2, 0, keep)?.assign_(&v)?;
            }
            Ok(())
        })?;
        self.dropped += start;
        self.len = keep;
        Ok(())
    }
}
