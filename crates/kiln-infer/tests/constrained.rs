//! Constrained decoding: every sampled output matches the regex in full, the mask agrees with
//! a brute-force check, and token bytes reproduce the text for char and byte-level BPE
//! tokenizers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_data::{CharTokenizer, Tokenizer};
use kiln_infer::{generate_constrained, RegexConstraint, Sampler};
use kiln_models::gpt::{Gpt, GptConfig};

const TEXT: &str = "Order 123-abc shipped to Ann on 2024-05-17; code 9-zz, ref 77-qwer. Total: 45 items!";

#[test]
fn token_bytes_spell_the_text() {
    let char_tok = Tokenizer::Char(CharTokenizer::train(TEXT));
    let bpe = Tokenizer::train_bpe(&TEXT.repeat(20), 300).unwrap();
    for tok in [char_tok, bpe] {
        let bytes = tok.token_bytes();
        assert_eq!(bytes.len(), tok.vocab_size());
        let text = "ref 123-abc on 2024, Ann!";
        let spelled: Vec<u8> =
            tok.encode(text).unwrap().iter().flat_map(|&i| bytes[i as usize].clone().unwrap()).collect();
        assert_eq!(String::from_utf8(spelled).unwrap(), text, "{}", tok.kind());
    }
    // special tokens spell nothing
    let bpe = Tokenizer::train_bpe(&TEXT.repeat(20), 300).unwrap();
    let eot = bpe.encode(kiln_data::END_OF_TEXT).unwrap();
    assert_eq!(eot.len(), 1);
    assert!(bpe.token_bytes()[eot[0] as usize].is_none());
}

#[test]
fn mask_agrees_with_brute_force() {
    let tok = Tokenizer::train_bpe(&TEXT.repeat(20), 300).unwrap();
    let bytes = tok.token_bytes();
    let c = RegexConstraint::new(r"[0-9]{2,3}-[a-z]+", bytes.clone()).unwrap();
    let full = regex_check(r"[0-9]{2,3}-[a-z]+");
    for prefix in ["", "1", "12", "123", "123-", "123-ab", "1234"] {
        let Some(s) = c.walk(c.start().unwrap(), prefix.as_bytes()) else {
            assert_eq!(prefix, "1234");
            continue;
        };
        let allowed = c.allowed(s);
        for (id, b) in bytes.iter().enumerate() {
            // a token may follow iff prefix + token is still a prefix of some match
            let want = b.as_ref().is_some_and(|b| !b.is_empty() && full(&[prefix.as_bytes(), b].concat()));
            assert_eq!(
                allowed[id],
                want,
                "prefix {prefix:?}, token {id} {:?}",
                b.as_ref().map(|b| String::from_utf8_lossy(b))
            );
        }
        assert_eq!(c.is_match(s), prefix == "123-ab");
    }
    assert!(RegexConstraint::new("(", bytes).is_err());
}

/// Whether `s` can still be extended to a match of `^pattern$` (brute force over short
/// completions from the pattern's alphabet).
fn regex_check(_pattern: &str) -> impl Fn(&[u8]) -> bool {
    // for [0-9]{2,3}-[a-z]+: digits (2–3), a dash, then letters
    |s: &[u8]| {
        let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
        let rest = &s[digits..];
        if rest.is_empty() {
            return digits <= 3;
        }
        (2..=3).contains(&digits) && rest[0] == b'-' && rest[1..].iter().all(|b| b.is_ascii_lowercase())
    }
}

#[test]
fn sampled_outputs_match_in_full() {
    let dev = kiln_cpu::cpu();
    let tok = Tokenizer::Char(CharTokenizer::train(TEXT));
    let model = Gpt::new(GptConfig::gpt2(tok.vocab_size(), 64, 32, 2, 4), 4, &dev).unwrap();
    let pattern = r"(19|20)[0-9]{2}-(0[1-9]|1[0-2])-[0-3][0-9]";
    let c = RegexConstraint::new(pattern, tok.token_bytes()).unwrap();
    let check = regex_automata::meta::Regex::new(&format!("^(?:{pattern})$")).unwrap();
    let prompt = tok.encode("on ").unwrap();
    for seed in 0..20 {
        let s = Sampler { temperature: 1.5, seed, ..Default::default() };
        let mut streamed = vec![];
        let (out, done) = generate_constrained(&model, &prompt, 30, &s, &c, None, &dev, |t| {
            streamed.push(t);
            Ok(())
        })
        .unwrap();
        let text = tok.decode(&out).unwrap();
        assert!(done && check.is_match(&text), "seed {seed}: {text:?}");
        assert_eq!(streamed, out);
    }
    // greedy, and a max_new too short to finish: a prefix, reported as incomplete
    let greedy = Sampler { temperature: 0.0, ..Default::default() };
    let (out, done) = generate_constrained(&model, &prompt, 4, &greedy, &c, None, &dev, |_| Ok(())).unwrap();
    assert_eq!(out.len(), 4);
    assert!(!done);
}

#[test]
fn end_of_sequence_is_allowed_only_on_a_match() {
    let dev = kiln_cpu::cpu();
    let tok = Tokenizer::train_bpe(&TEXT.repeat(20), 300).unwrap();
    let eos = tok.encode(kiln_data::END_OF_TEXT).unwrap()[0];
    let model = Gpt::new(GptConfig::gpt2(tok.vocab_size(), 64, 32, 1, 4), 2, &dev).unwrap();
    let c = RegexConstraint::new(r"[a-z]{1,12}", tok.token_bytes()).unwrap();
    let check = regex_automata::meta::Regex::new(r"^[a-z]{1,12}$").unwrap();
    for seed in 0..10 {
        let s = Sampler { temperature: 2.0, seed, ..Default::default() };
        let (out, done) = generate_constrained(&model, &[eos], 20, &s, &c, Some(eos), &dev, |_| Ok(())).unwrap();
        let text = tok.decode(&out).unwrap();
        assert!(done && check.is_match(&text), "seed {seed}: {text:?}");
        assert!(!out.contains(&eos));
    }
}
