//! [`HfTokenizer`]: a Hugging Face `tokenizer.json` (WordPiece for BERT models, or any other
//! model the `tokenizers` crate reads) for encoder inputs — special tokens, truncation to a
//! maximum length, and right-padded batches with their attention mask.
//!
//! The file's own padding and truncation settings are replaced: padding is done per batch to
//! the batch's longest sequence ([`HfTokenizer::encode_batch`]), and truncation keeps at most
//! [`HfTokenizer::max_length`] tokens *including* the special tokens (`[CLS] … [SEP]` stays
//! intact), as `transformers`' `tokenizer(texts, truncation=True, max_length=n)` does.

use crate::error::{io, DataError, Result};
use kiln_core::{Device, Tensor};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use tokenizers::{TruncationDirection, TruncationParams, TruncationStrategy};

/// Default truncation length: BERT's 512 positions.
pub const DEFAULT_MAX_LENGTH: usize = 512;

/// A padded batch of token ids.
///
/// # Shapes
/// `ids`, `attention_mask`: row-major (batch, seq_len); `lengths`: (batch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaddedBatch {
    /// Token ids, each row right-padded with the pad id.
    pub ids: Vec<i64>,
    /// 1 for a real token, 0 for padding.
    pub attention_mask: Vec<i64>,
    /// Real tokens of each row (special tokens included).
    pub lengths: Vec<usize>,
    /// Rows B.
    pub batch: usize,
    /// Columns S: the longest row's length.
    pub seq_len: usize,
}

impl PaddedBatch {
    /// `(ids, attention_mask)` as (B, S) `I64` tensors on `device`.
    pub fn tensors(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let shape = [self.batch, self.seq_len];
        Ok((
            Tensor::from_vec(self.ids.clone(), &shape, device)?,
            Tensor::from_vec(self.attention_mask.clone(), &shape, device)?,
        ))
    }
}

/// A Hugging Face tokenizer read from `tokenizer.json`.
#[derive(Clone, Debug)]
pub struct HfTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    max_length: usize,
    pad_id: u32,
}

impl HfTokenizer {
    /// Reads `path` (a `tokenizer.json`), truncating to [`DEFAULT_MAX_LENGTH`] tokens. The pad
    /// id is the file's padding id, else the id of `[PAD]`, else 0.
    pub fn from_file(path: &Path) -> Result<HfTokenizer> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let mut inner = tokenizers::Tokenizer::from_str(&text)
            .map_err(|e| DataError::Format { path: path.to_path_buf(), msg: e.to_string() })?;
        let pad_id = inner.get_padding().map(|p| p.pad_id).or_else(|| inner.token_to_id("[PAD]")).unwrap_or(0);
        inner.with_padding(None);
        let tok = HfTokenizer { inner, path: path.to_path_buf(), max_length: DEFAULT_MAX_LENGTH, pad_id };
        tok.with_max_length(DEFAULT_MAX_LENGTH)
    }

    /// The same tokenizer truncating to `max_length` tokens, special tokens included (use the
    /// model's `max_position_embeddings` or sentence-transformers' `max_seq_length`).
    pub fn with_max_length(mut self, max_length: usize) -> Result<HfTokenizer> {
        if max_length == 0 {
            return Err(self.err("max_length must be positive"));
        }
        let params = TruncationParams {
            direction: TruncationDirection::Right,
            max_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
        };
        if let Err(e) = self.inner.with_truncation(Some(params)).map(|_| ()) {
            return Err(self.err(e));
        }
        self.max_length = max_length;
        Ok(self)
    }

    fn err(&self, e: impl std::fmt::Display) -> DataError {
        DataError::Tokenizers(format!("{}: {e}", self.path.display()))
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Longest encoding, special tokens included.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Id that pads batches.
    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Id of `token`, if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Token ids of `text` (with `[CLS]`/`[SEP]` or the model's equivalent when
    /// `add_special_tokens`), truncated to [`HfTokenizer::max_length`].
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        Ok(self.inner.encode(text, add_special_tokens).map_err(|e| self.err(e))?.get_ids().to_vec())
    }

    /// Token ids of each text, with special tokens, truncated, unpadded (encoded in parallel).
    pub fn encode_each(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encs = self.inner.encode_batch(texts.to_vec(), true).map_err(|e| self.err(e))?;
        Ok(encs.into_iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// A padded batch of `texts` (special tokens added, each truncated): ids (B, S) right-padded
    /// with [`HfTokenizer::pad_id`] to the longest row, and the attention mask (B, S).
    pub fn encode_batch(&self, texts: &[&str]) -> Result<PaddedBatch> {
        let seqs = self.encode_each(texts)?;
        let seq_len = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let batch = seqs.len();
        let mut ids = vec![self.pad_id as i64; batch * seq_len];
        let mut attention_mask = vec![0i64; batch * seq_len];
        for (row, s) in seqs.iter().enumerate() {
            for (j, &t) in s.iter().enumerate() {
                ids[row * seq_len + j] = t as i64;
                attention_mask[row * seq_len + j] = 1;
            }
        }
        Ok(PaddedBatch { ids, attention_mask, lengths: seqs.iter().map(Vec::len).collect(), batch, seq_len })
    }

    /// Text of `ids` (special tokens dropped when `skip_special_tokens`); ids outside the
    /// vocabulary are an error.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let vocab = self.vocab_size();
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(DataError::BadToken { id, vocab });
        }
        self.inner.decode(ids, skip_special_tokens).map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn tiny() -> Option<HfTokenizer> {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-models/tests/fixtures/tiny_bert/tokenizer.json");
        if !p.exists() {
            eprintln!("skipping: {} not found (python3 tools/make_bert_fixtures.py writes it)", p.display());
            return None;
        }
        Some(HfTokenizer::from_file(&p).unwrap())
    }

    #[test]
    fn pads_masks_truncates_and_decodes() {
        let Some(tok) = tiny() else { return };
        let (cls, sep) = (tok.token_to_id("[CLS]").unwrap(), tok.token_to_id("[SEP]").unwrap());
        let ids = tok.encode("the cat", true).unwrap();
        assert_eq!((ids[0], *ids.last().unwrap()), (cls, sep));
        assert_eq!(tok.decode(&ids, true).unwrap(), "the cat");
        let b = tok.encode_batch(&["the cat sat on the mat", "a"]).unwrap();
        assert_eq!((b.batch, b.seq_len), (2, b.lengths[0]));
        assert!(b.lengths[1] < b.lengths[0]);
        assert_eq!(b.attention_mask[b.seq_len..].iter().sum::<i64>() as usize, b.lengths[1]);
        assert_eq!(*b.ids.last().unwrap(), tok.pad_id() as i64);
        let t = tok.clone().with_max_length(4).unwrap();
        let ids = t.encode("the cat sat on the mat", true).unwrap();
        assert_eq!((ids.len(), ids[3]), (4, sep));
        assert!(tok.clone().with_max_length(0).is_err());
        assert!(matches!(tok.decode(&[1_000_000], false), Err(DataError::BadToken { .. })));
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let e = HfTokenizer::from_file(Path::new("/nonexistent/tokenizer.json")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/tokenizer.json"), "{e}");
    }
}
