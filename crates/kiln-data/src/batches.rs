//! Seeded random batches for next-token prediction.
//!
//! The token file is split into train (first `1 − val_fraction`) and validation (the rest).
//! Batch `k` of a run with seed `s` draws its `B` window starts from a counter-based generator
//! keyed by `(s, split, k)`, so a batch depends only on its index: a resumed run continues with
//! exactly the batches the uninterrupted run would have seen, whatever the thread count.
//! `x` = tokens `[p, p+T)`, `y` = tokens `[p+1, p+T+1)`, both `I64` of shape (B, T).

use crate::error::{DataError, Result};
use crate::TokenFile;
use kiln_core::{Device, Tensor};

/// Which part of the data a batch comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The training part.
    Train,
    /// The held-out validation part.
    Val,
}

fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Draws `(x, y)` batches from a [`TokenFile`].
pub struct Batcher {
    tokens: TokenFile,
    split_at: usize,
    batch: usize,
    context: usize,
    seed: u64,
    buf_x: Vec<i64>,
    buf_y: Vec<i64>,
}

impl Batcher {
    /// A batcher over `tokens` with `val_fraction` held out, batches of `batch` windows of
    /// `context` tokens. Fails when either split is shorter than one window plus one token.
    pub fn new(tokens: TokenFile, val_fraction: f64, batch: usize, context: usize, seed: u64) -> Result<Batcher> {
        if batch == 0 || context == 0 {
            return Err(DataError::TooShort("batch size and context must be positive".into()));
        }
        if !(0.0..1.0).contains(&val_fraction) {
            return Err(DataError::TooShort(format!("val_fraction {val_fraction} is not in [0, 1)")));
        }
        let n = tokens.len();
        let split_at = ((n as f64) * (1.0 - val_fraction)).round() as usize;
        let need = context + 1;
        if split_at < need || (val_fraction > 0.0 && n - split_at < need) {
            return Err(DataError::TooShort(format!(
                "{}: {n} tokens leave a split shorter than context + 1 = {need} tokens (train {split_at}, val {})",
                tokens.path().display(),
                n - split_at
            )));
        }
        Ok(Batcher { tokens, split_at, batch, context, seed, buf_x: Vec::new(), buf_y: Vec::new() })
    }

    /// Tokens in a split.
    pub fn split_len(&self, split: Split) -> usize {
        match split {
            Split::Train => self.split_at,
            Split::Val => self.tokens.len() - self.split_at,
        }
    }

    /// Batch number `index` of `split`: `(x, y)`, each (B, T) `I64` on `device`.
    pub fn batch(&mut self, split: Split, index: u64, device: &Device) -> Result<(Tensor, Tensor)> {
        let (lo, len) = match split {
            Split::Train => (0, self.split_at),
            Split::Val => (self.split_at, self.tokens.len() - self.split_at),
        };
        if len < self.context + 1 {
            return Err(DataError::TooShort(format!("the {split:?} split has {len} tokens, fewer than context + 1")));
        }
        let starts = (len - self.context) as u64; // valid window starts: 0..=len-T-1
        self.buf_x.clear();
        self.buf_y.clear();
        for b in 0..self.batch {
            let p = lo + (mix(self.seed, (split as u64) << 40 | index, b as u64) % starts) as usize;
            self.tokens.read_into(p, self.context, &mut self.buf_x);
            self.tokens.read_into(p + 1, self.context, &mut self.buf_y);
        }
        let shape = [self.batch, self.context];
        Ok((
            Tensor::from_vec(self.buf_x.clone(), &shape, device)?,
            Tensor::from_vec(self.buf_y.clone(), &shape, device)?,
        ))
    }
}
