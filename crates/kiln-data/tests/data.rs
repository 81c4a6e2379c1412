//! The data pipeline end to end: corpus, tokenizers, token files, batches, and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cloned_ref_to_slice_refs)] // tests fail loudly by design

use kiln_data::tokenizer::END_OF_TEXT;
use kiln_data::{corpus, Batcher, CharTokenizer, DataError, Split, TokenFile, Tokenizer};

#[test]
fn shipped_corpus_is_english_text() {
    let text = corpus::shipped().unwrap();
    assert!(text.len() > 10_000_000, "{} characters", text.len());
    assert!(text.starts_with("State of the Union, 1790, George Washington"));
    assert!(text.contains("Fellow-Citizens of the Senate and House of Representatives"));
    let chars = CharTokenizer::train(&text);
    assert!(chars.vocab_size() < 100, "ASCII-normalised: {} distinct characters", chars.vocab_size());
}

#[test]
fn char_tokenizer_round_trips_and_saves() {
    let tok = Tokenizer::Char(CharTokenizer::train("hello world"));
    assert_eq!(tok.vocab_size(), 8);
    let ids = tok.encode("hello").unwrap();
    assert_eq!(tok.decode(&ids).unwrap(), "hello");
    assert!(matches!(tok.encode("hex!"), Err(DataError::UnknownChar('x'))));
    assert!(matches!(tok.decode(&[99]), Err(DataError::BadToken { id: 99, vocab: 8 })));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokenizer.json");
    tok.save(&p).unwrap();
    let back = Tokenizer::load(&p).unwrap();
    assert_eq!(back.kind(), "char");
    assert_eq!(back.encode("world").unwrap(), tok.encode("world").unwrap());
}

#[test]
fn bpe_first_merge_is_the_most_frequent_pair() {
    // Seed 002's example: in "aaabdaaabac" the pair "aa" is the most frequent, so it merges first.
    let tok = Tokenizer::train_bpe("aaabdaaabac", 258).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokenizer.json");
    tok.save(&p).unwrap();
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    let merges = json["model"]["merges"].as_array().unwrap();
    assert_eq!(merges.len(), 1);
    let first = &merges[0];
    let pair = first
        .as_str()
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("{} {}", first[0].as_str().unwrap(), first[1].as_str().unwrap()));
    assert_eq!(pair, "a a");
}

#[test]
fn bpe_on_the_corpus_round_trips() {
    let text: String = corpus::shipped().unwrap().chars().take(200_000).collect();
    let tok = Tokenizer::train_bpe(&text, 1024).unwrap();
    assert_eq!(tok.vocab_size(), 1024);
    let sample = "The Congress of the United States, in 1862, said: \"liberty\" — and more.";
    let ids = tok.encode(sample).unwrap();
    assert!(ids.len() < sample.len() / 2, "BPE compresses: {} tokens for {} bytes", ids.len(), sample.len());
    assert_eq!(tok.decode(&ids).unwrap(), sample);
    let eot = tok.encode(END_OF_TEXT).unwrap();
    assert_eq!(eot.len(), 1, "end-of-text is one special token");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokenizer.json");
    tok.save(&p).unwrap();
    assert_eq!(Tokenizer::load(&p).unwrap().encode(sample).unwrap(), ids);
}

#[test]
fn token_files_round_trip_and_reject_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokens.bin");
    let small: Vec<u32> = (0..1000).map(|i| (i * 7) % 300).collect();
    TokenFile::write(&p, &small).unwrap();
    let f = TokenFile::open(&p).unwrap();
    assert_eq!(f.len(), 1000);
    assert!((0..1000).all(|i| f.get(i) == small[i]));
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 16 + 2000, "u16 storage for a small vocab");
    let big = vec![70_000u32, 1, 2];
    TokenFile::write(&p, &big).unwrap();
    let f = TokenFile::open(&p).unwrap();
    assert_eq!((f.get(0), f.get(2)), (70_000, 2));
    // Truncation and garbage are caught.
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 1]).unwrap();
    assert!(matches!(TokenFile::open(&p), Err(DataError::Format { .. })));
    std::fs::write(&p, b"not tokens at all").unwrap();
    assert!(matches!(TokenFile::open(&p), Err(DataError::Format { .. })));
    assert!(matches!(TokenFile::open(&dir.path().join("missing.bin")), Err(DataError::Io { .. })));
}

#[test]
fn batches_are_seeded_shifted_and_split() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokens.bin");
    let toks: Vec<u32> = (0..10_000).collect();
    TokenFile::write(&p, &toks).unwrap();
    let dev = kiln_cpu::cpu();
    let mut a = Batcher::new(TokenFile::open(&p).unwrap(), 0.1, 4, 16, 7).unwrap();
    let mut b = Batcher::new(TokenFile::open(&p).unwrap(), 0.1, 4, 16, 7).unwrap();
    let (x, y) = a.batch(Split::Train, 3, &dev).unwrap();
    assert_eq!(x.dims(), &[4, 16]);
    let (xv, yv) = (x.to_vec::<i64>().unwrap(), y.to_vec::<i64>().unwrap());
    // y is x shifted by one, windows are contiguous and inside the train split.
    for r in 0..4 {
        for t in 0..16 {
            assert_eq!(yv[r * 16 + t], xv[r * 16 + t] + 1);
        }
        assert!(yv[r * 16 + 15] < 9000);
    }
    // Same seed and index → same batch, independent of what was drawn before.
    let _ = b.batch(Split::Train, 0, &dev).unwrap();
    assert_eq!(b.batch(Split::Train, 3, &dev).unwrap().0.to_vec::<i64>().unwrap(), xv);
    assert_ne!(a.batch(Split::Train, 4, &dev).unwrap().0.to_vec::<i64>().unwrap(), xv);
    let (xv_val, _) = a.batch(Split::Val, 0, &dev).unwrap();
    assert!(xv_val.to_vec::<i64>().unwrap().iter().all(|&t| t >= 9000));
    // A context longer than the data is a clear error.
    let err = Batcher::new(TokenFile::open(&p).unwrap(), 0.1, 4, 5000, 7).err().unwrap();
    assert!(matches!(err, DataError::TooShort(_)), "{err}");
}

#[test]
fn bad_corpus_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "  \n").unwrap();
    assert!(matches!(corpus::read_text(&empty), Err(DataError::EmptyCorpus(_))));
    let bin = dir.path().join("bin.txt");
    std::fs::write(&bin, [0xffu8, 0xfe, 0x00]).unwrap();
    assert!(matches!(corpus::read_text(&bin), Err(DataError::NotText(_))));
    let err = corpus::read_text(&dir.path().join("nope.txt")).unwrap_err();
    assert!(err.to_string().contains("nope.txt"), "{err}");
}
