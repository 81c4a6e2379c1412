//! A byte-level BPE tokenizer rebuilt from the vocabulary a GGUF file carries in its metadata
//! (`tokenizer.ggml.model = "gpt2"`: `tokenizer.ggml.tokens`, `tokenizer.ggml.merges`,
//! `tokenizer.ggml.token_type`, and the pre-tokeniser name `tokenizer.ggml.pre`), so a `.gguf`
//! model runs without any other file. The pre-tokenisers are llama.cpp's (`llama-vocab.cpp`),
//! expressed with the `tokenizers` crate's parts, which is how their Hugging Face originals are
//! defined.

use crate::{DataError, Result, Tokenizer};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::AddedToken;

/// GGUF token types (`llama_token_type`): 1 normal, 2 unknown, 3 control, 4 user-defined,
/// 5 unused, 6 byte.
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

/// The `tokenizer.ggml.pre` names kiln understands, with the pre-tokenisation each means.
pub const GGUF_PRE_TOKENIZERS: &[&str] = &["default", "gpt2", "smollm", "starcoder", "refact", "codeshell"];

impl Tokenizer {
    /// A byte-level BPE tokenizer from GGUF vocabulary metadata: `tokens[i]` is the text of id
    /// `i` (in GPT-2's byte-to-unicode alphabet), `merges` are `"a b"` pairs in rank order,
    /// `token_types` the GGUF types (control and user-defined tokens become special tokens
    /// matched whole, like `<|im_start|>`), `pre` the pre-tokeniser name:
    /// `gpt2`/`default` — GPT-2's regex; `smollm` (also `starcoder`, `refact`, `codeshell`) —
    /// every digit split off first (`\p{N}`), then GPT-2's regex.
    pub fn from_gguf_vocab(tokens: &[String], merges: &[String], token_types: &[i32], pre: &str) -> Result<Tokenizer> {
        let bad = |msg: String| DataError::Tokenizers(format!("GGUF vocabulary: {msg}"));
        if tokens.is_empty() {
            return Err(bad("no tokens".into()));
        }
        if !token_types.is_empty() && token_types.len() != tokens.len() {
            return Err(bad(format!("{} token types for {} tokens", token_types.len(), tokens.len())));
        }
        let mut vocab = Vocab::default();
        for (i, t) in tokens.iter().enumerate() {
            // duplicates: the first id wins, as in llama.cpp
            vocab.entry(t.clone()).or_insert(i as u32);
        }
        let pairs = merges
            .iter()
            .map(|m| {
                let (a, b) = m.split_once(' ').ok_or_else(|| bad(format!("merge {m:?} is not \"a b\"")))?;
                Ok((a.to_string(), b.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        let bpe = BPE::builder().vocab_and_merges(vocab, pairs).build().map_err(|e| bad(e.to_string()))?;
        let mut tk = tokenizers::Tokenizer::new(bpe);
        let byte_level = ByteLevel::default().add_prefix_space(false);
        match pre {
            "default" | "gpt2" => {
                tk.with_pre_tokenizer(Some(byte_level));
            }
            "smollm" | "starcoder" | "refact" | "codeshell" => {
                tk.with_pre_tokenizer(Some(Sequence::new(vec![
                    PreTokenizerWrapper::Digits(Digits::new(true)),
                    PreTokenizerWrapper::ByteLevel(byte_level),
                ])));
            }
            other => {
                return Err(bad(format!(
                    "pre-tokenizer {other:?} is not supported (kiln knows {})",
                    GGUF_PRE_TOKENIZERS.join(", ")
                )))
            }
        }
        tk.with_decoder(Some(ByteLevelDecoder::default()));
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(token_types)
            .filter(|(_, &ty)| ty == CONTROL || ty == USER_DEFINED)
            .map(|(t, _)| AddedToken::from(t.clone(), true))
            .collect();
        tk.add_special_tokens(&specials);
        Ok(Tokenizer::Bpe(Box::new(tk)))
    }
}
