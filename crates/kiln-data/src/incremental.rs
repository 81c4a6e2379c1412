//! [`IncrementalDecoder`]: the text of a growing token sequence, released piece by piece so
//! that multi-token characters (byte-level BPE) come out whole.

use crate::{DataError, Tokenizer};

/// Text of each new token, decoded in the context of the token before it (so decoders that
/// treat a sequence's first token specially, e.g. leading-space rules, behave as on the whole
/// sequence), held back while it ends in an incomplete UTF-8 character.
#[derive(Debug, Default)]
pub struct IncrementalDecoder {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl IncrementalDecoder {
    /// An empty decoder.
    pub fn new() -> IncrementalDecoder {
        IncrementalDecoder::default()
    }

    /// Adds `id`; returns the text it completes (possibly empty).
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String, DataError> {
        self.ids.push(id);
        let before = tok.decode(&self.ids[self.prefix..self.read])?;
        let now = tok.decode(&self.ids[self.prefix..])?;
        if now.len() > before.len() && !now.ends_with('\u{FFFD}') {
            if let Some(new) = now.get(before.len()..) {
                let new = new.to_string();
                self.prefix = self.read;
                self.read = self.ids.len();
                return Ok(new);
            }
        }
        Ok(String::new())
    }

    /// The text still held back (at the end of generation), even if incomplete.
    pub fn flush(&mut self, tok: &Tokenizer) -> Result<String, DataError> {
        let before = tok.decode(&self.ids[self.prefix..self.read])?;
        let now = tok.decode(&self.ids[self.prefix..])?;
        self.prefix = self.ids.len();
        self.read = self.ids.len();
        Ok(now.get(before.len()..).unwrap_or_default().to_string())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::CharTokenizer;

    #[test]
    fn char_tokens_come_out_one_by_one() {
        let tok = Tokenizer::Char(CharTokenizer::train("abcé"));
        let ids = tok.encode("béca").unwrap();
        let mut d = IncrementalDecoder::new();
        let pieces: Vec<String> = ids.iter().map(|&i| d.push(&tok, i).unwrap()).collect();
        assert_eq!(pieces, ["b", "é", "c", "a"]);
        assert_eq!(d.flush(&tok).unwrap(), "");
    }

    #[test]
    fn split_utf8_characters_wait_for_their_last_byte() {
        let tok = Tokenizer::train_bpe("hello world ", 257).unwrap();
        let text = "a€b✓";
        let ids = tok.encode(text).unwrap();
        let mut d = IncrementalDecoder::new();
        let pieces: Vec<String> = ids.iter().map(|&i| d.push(&tok, i).unwrap()).collect();
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
        assert_eq!(pieces.concat() + &d.flush(&tok).unwrap(), text);
    }
}
