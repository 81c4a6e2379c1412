//! Tokenizers: character-level, and byte-level BPE (GPT-2 style; seed 002 "BPE") trained on the
//! corpus with the `tokenizers` crate. Both save to and load from `tokenizer.json`: the BPE one in
//! Hugging Face's format, the character one as `{"type": "char", "chars": "…"}`.

use crate::error::{io, DataError, Result};
use std::collections::HashMap;
use std::path::Path;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

/// The end-of-text token of BPE tokenizers (GPT-2's name).
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// Character-level tokenizer: one id per distinct character of the training text, ids in
/// code-point order.
#[derive(Clone, Debug, PartialEq)]
pub struct CharTokenizer {
    chars: Vec<char>,
    index: HashMap<char, u32>,
}

impl CharTokenizer {
    /// The vocabulary of `text`.
    pub fn train(text: &str) -> CharTokenizer {
        let mut chars: Vec<char> = text.chars().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        chars.shrink_to_fit();
        CharTokenizer::from_chars(chars)
    }

    fn from_chars(chars: Vec<char>) -> CharTokenizer {
        let index = chars.iter().enumerate().map(|(i, &c)| (c, i as u32)).collect();
        CharTokenizer { chars, index }
    }

    /// Ids of each character; unknown characters are an error.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        text.chars().map(|c| self.index.get(&c).copied().ok_or(DataError::UnknownChar(c))).collect()
    }

    /// Text of the ids.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        ids.iter()
            .map(|&id| self.chars.get(id as usize).copied().ok_or(DataError::BadToken { id, vocab: self.chars.len() }))
            .collect()
    }

    /// Number of distinct characters.
    pub fn vocab_size(&self) -> usize {
        self.chars.len()
    }
}

/// A trained tokenizer of either kind.
#[derive(Clone, Debug)]
pub enum Tokenizer {
    /// One token per character.
    Char(CharTokenizer),
    /// Byte-level BPE from the `tokenizers` crate.
    Bpe(Box<tokenizers::Tokenizer>),
}

impl Tokenizer {
    /// Trains a byte-level BPE tokenizer with `vocab_size` tokens (256 byte tokens, the
    /// end-of-text token, and learned merges) on `text`, pre-tokenised with GPT-2's regex.
    pub fn train_bpe(text: &str, vocab_size: usize) -> Result<Tokenizer> {
        if vocab_size < 257 {
            return Err(DataError::Tokenizers(format!("vocab_size {vocab_size} < 257 (256 bytes + end-of-text)")));
        }
        let trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(2)
            .show_progress(false)
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
            .build();
        let mut trainer = TrainerWrapper::BpeTrainer(trainer);
        let mut tk = tokenizers::Tokenizer::new(BPE::default());
        tk.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
        tk.with_decoder(Some(ByteLevel::default()));
        tk.train(&mut trainer, text.lines()).map_err(|e| DataError::Tokenizers(e.to_string()))?;
        Ok(Tokenizer::Bpe(Box::new(tk)))
    }

    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Char(c) => c.encode(text),
            Tokenizer::Bpe(t) => {
                Ok(t.encode(text, false).map_err(|e| DataError::Tokenizers(e.to_string()))?.get_ids().to_vec())
            }
        }
    }

    /// Text of token ids.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Tokenizer::Char(c) => c.decode(ids),
            Tokenizer::Bpe(t) => {
                let vocab = self.vocab_size();
                if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
                    return Err(DataError::BadToken { id, vocab });
                }
                t.decode(ids, false).map_err(|e| DataError::Tokenizers(e.to_string()))
            }
        }
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Char(c) => c.vocab_size(),
            // `get_vocab_size(true)` clones the whole vocabulary into a map on every call (49k
            // entries for SmolLM2: milliseconds); the model's size and the few added tokens' ids
            // give the same number
            Tokenizer::Bpe(t) => {
                let added = t.get_added_tokens_decoder().keys().map(|&id| id as usize + 1).max().unwrap_or(0);
                t.get_vocab_size(false).max(added)
            }
        }
    }

    /// The bytes each token id stands for (`None` for special/added tokens, and for tokens whose
    /// text cannot be recovered): a character's UTF-8 for the char tokenizer; for byte-level BPE
    /// the token string mapped back through GPT-2's byte↔unicode table; other vocabularies (e.g.
    /// SentencePiece-style) fall back to decoding the token alone. Constrained decoding walks an
    /// automaton over these bytes.
    pub fn token_bytes(&self) -> Vec<Option<Vec<u8>>> {
        match self {
            Tokenizer::Char(c) => c.chars.iter().map(|ch| Some(ch.to_string().into_bytes())).collect(),
            Tokenizer::Bpe(t) => {
                let to_byte = byte_level_decoder();
                let added = t.get_added_tokens_decoder();
                (0..self.vocab_size() as u32)
                    .map(|id| {
                        if added.contains_key(&id) {
                            return None;
                        }
                        let s = t.id_to_token(id)?;
                        let mapped: Option<Vec<u8>> = s.chars().map(|c| to_byte.get(&c).copied()).collect();
                        mapped.or_else(|| {
                            t.decode(&[id], false).ok().filter(|d| !d.contains('\u{FFFD}')).map(String::into_bytes)
                        })
                    })
                    .collect()
            }
        }
    }

    /// `"char"` or `"bpe"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Tokenizer::Char(_) => "char",
            Tokenizer::Bpe(_) => "bpe",
        }
    }

    /// Writes `tokenizer.json` atomically (temp file + rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = match self {
            Tokenizer::Char(c) => {
                serde_json::json!({ "type": "char", "chars": c.chars.iter().collect::<String>() }).to_string()
            }
            Tokenizer::Bpe(t) => t.to_string(true).map_err(|e| DataError::Tokenizers(e.to_string()))?,
        };
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io(path))
    }

    /// Reads a `tokenizer.json` written by [`Tokenizer::save`] (or any Hugging Face tokenizer).
    pub fn load(path: &Path) -> Result<Tokenizer> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| DataError::Format { path: path.to_path_buf(), msg: format!("not JSON: {e}") })?;
        if value.get("type").and_then(|t| t.as_str()) == Some("char") {
            let chars = value.get("chars").and_then(|c| c.as_str()).ok_or_else(|| DataError::Format {
                path: path.to_path_buf(),
                msg: "char tokenizer without a \"chars\" string".into(),
            })?;
            return Ok(Tokenizer::Char(CharTokenizer::from_chars(chars.chars().collect())));
        }
        let t = tokenizers::Tokenizer::from_str(&text)
            .map_err(|e| DataError::Format { path: path.to_path_buf(), msg: e.to_string() })?;
        Ok(Tokenizer::Bpe(Box::new(t)))
    }
}

use std::str::FromStr;

/// GPT-2's byte-level alphabet inverted: the printable stand-in character of each byte → the
/// byte (bytes `!`…`~`, `¡`…`¬`, `®`…`ÿ` stand for themselves, the other 68 for U+0100 onwards).
fn byte_level_decoder() -> HashMap<char, u8> {
    let keep = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
    let mut next = 0x100u32;
    (0..=255u32)
        .map(|b| {
            let c = if keep(b) {
                b
            } else {
                next += 1;
                next - 1
            };
            (char::from_u32(c).unwrap_or('\u{FFFD}'), b as u8)
        })
        .collect()
}

#[cfg(test)]
mod vocab_size_tests {
    use super::*;

    /// The cheap vocabulary size equals the `tokenizers` crate's own count with added tokens,
    /// for a trained BPE (with its end-of-text token) and for the cached real tokenizers.
    #[test]
    fn vocab_size_matches_tokenizers_count() {
        let mut toks =
            vec![Tokenizer::train_bpe(&"the quick brown fox jumps over the lazy dog ".repeat(50), 300).expect("train")];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models");
        for p in ["minilm/tokenizer.json"] {
            if let Ok(t) = Tokenizer::load(&root.join(p)) {
                toks.push(t);
            }
        }
        for t in &toks {
            let Tokenizer::Bpe(inner) = t else { continue };
            assert_eq!(t.vocab_size(), inner.get_vocab_size(true));
        }
    }
}
