//! Hugging Face decoder checkpoints written by transformers itself (random weights,
//! `tools/make_hf_fixtures.py`): GPT-2 (Conv1D weights, tied head, one file) and LLaMA (GQA 4/2,
//! RoPE θ = 500, untied head, sharded with an index) load into `Gpt` by name and give the same
//! logits; bad checkpoints are errors naming the problem.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::{safetensors, Error, Tensor};
use kiln_models::gpt::{load_hf_tensors, Gpt, GptConfig};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expected(name: &str) -> Tensor {
    let (ts, _) = safetensors::load(&fixtures().join("hf_expected.safetensors"), &kiln_cpu::cpu()).unwrap();
    ts.into_iter().find(|(n, _)| n == name).unwrap().1
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (a.to_vec_f64().unwrap(), b.to_vec_f64().unwrap());
    a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn check(dir: &str, logits: &str) {
    let model = Gpt::from_hf_dir(&fixtures().join(dir), &kiln_cpu::cpu()).unwrap();
    let ids = expected("ids");
    let got = model.forward(&ids, None, false, 0).unwrap();
    let err = max_abs(&got, &expected(logits));
    println!("{dir}: max |Δlogits| = {err:.2e}");
    assert!(err <= 1e-4, "{dir}: logits differ by {err}");
}

#[test]
fn gpt2_logits_match_transformers() {
    check("hf_gpt2", "gpt2.logits");
}

#[test]
fn sharded_llama_logits_match_transformers() {
    let dir = fixtures().join("hf_llama");
    assert!(dir.join("model.safetensors.index.json").is_file(), "the fixture is sharded");
    check("hf_llama", "llama.logits");
}

#[test]
fn cached_decoding_matches_the_full_forward_on_loaded_weights() {
    let model = Gpt::from_hf_dir(&fixtures().join("hf_llama"), &kiln_cpu::cpu()).unwrap();
    let ids = expected("ids").narrow(0, 0, 1).unwrap().contiguous().unwrap(); // (1, 12)
    let full = model.forward(&ids, None, false, 0).unwrap();
    let mut caches = model.new_caches(1, 12, &kiln_cpu::cpu()).unwrap();
    let first = model.forward(&ids.narrow(1, 0, 7).unwrap(), Some(&mut caches), false, 0).unwrap();
    let rest = model.forward(&ids.narrow(1, 7, 5).unwrap(), Some(&mut caches), false, 0).unwrap();
    let joined = Tensor::cat(&[&first, &rest], 1).unwrap();
    assert!(max_abs(&joined, &full) < 1e-5);
}

#[test]
fn config_errors_name_the_key() {
    let cfg = |s: &str| GptConfig::from_hf(&serde_json::from_str(s).unwrap());
    let e = cfg(r#"{"model_type": "bloom"}"#).unwrap_err().to_string();
    assert!(e.contains("bloom") && e.contains("gpt2"), "{e}");
    let e = cfg(r#"{"model_type": "gpt2", "vocab_size": 10}"#).unwrap_err().to_string();
    assert!(e.contains("n_positions"), "{e}");
    let e =
        cfg(r#"{"model_type": "gpt2", "vocab_size": 10, "n_positions": 8, "n_embd": 30, "n_layer": 1, "n_head": 4}"#)
            .unwrap_err()
            .to_string();
    assert!(e.contains("n_head"), "{e}");
    let e = cfg(r#"{"model_type": "llama", "vocab_size": 10, "max_position_embeddings": 8, "hidden_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 32, "hidden_act": "gelu"}"#)
    .unwrap_err()
    .to_string();
    assert!(e.contains("hidden_act"), "{e}");
    // Mistral's sliding window (null, or as long as the context: none).
    let mistral = |w: &str| {
        cfg(&format!(
            r#"{{"model_type": "mistral", "vocab_size": 10, "max_position_embeddings": 64, "hidden_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 32, "sliding_window": {w}}}"#
        ))
    };
    assert_eq!(mistral("16").unwrap().sliding_window, Some(16));
    assert_eq!(mistral("null").unwrap().sliding_window, None);
    assert_eq!(mistral("4096").unwrap().sliding_window, None);
    assert!(mistral("0").is_err());
}

#[test]
fn missing_and_misshaped_tensors_are_named() {
    let dev = kiln_cpu::cpu();
    let dir = fixtures().join("hf_llama");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let cfg = GptConfig::from_hf(&cfg).unwrap();
    let mut ts = load_hf_tensors(&dir, &dev).unwrap();
    let name = "model.layers.1.self_attn.k_proj.weight";
    let k = ts.remove(name).unwrap();
    let e = Gpt::from_hf_tensors(cfg.clone(), &ts).unwrap_err().to_string();
    assert!(e.contains(name), "{e}");
    ts.insert(name.into(), k.narrow(0, 0, 8).unwrap());
    let e = Gpt::from_hf_tensors(cfg, &ts).unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }));
    assert!(e.to_string().contains("c_attn") && e.to_string().contains("[64, 32]"), "{e}");
    // a config far larger than its weights is refused before any allocation, and absurd sizes
    // are refused by validation
    let mut huge =
        GptConfig::from_hf(&serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap())
            .unwrap();
    (huge.n_embd, huge.n_inner) = (1 << 16, 1 << 18);
    let e = Gpt::from_hf_tensors(huge.clone(), &load_hf_tensors(&dir, &dev).unwrap()).unwrap_err().to_string();
    assert!(e.contains("far more than"), "{e}");
    huge.n_embd = 1 << 40;
    let e = Gpt::from_hf_tensors(huge, &load_hf_tensors(&dir, &dev).unwrap()).unwrap_err().to_string();
    assert!(e.contains("n_embd") && e.contains("limit"), "{e}");
    // no weights at all, and an index naming a shard outside the directory
    let empty = tempfile::tempdir().unwrap();
    let e = load_hf_tensors(empty.path(), &dev).unwrap_err().to_string();
    assert!(e.contains("model.safetensors"), "{e}");
    std::fs::write(empty.path().join("model.safetensors.index.json"), r#"{"weight_map": {"a": "../x.safetensors"}}"#)
        .unwrap();
    let e = load_hf_tensors(empty.path(), &dev).unwrap_err().to_string();
    assert!(e.contains("outside"), "{e}");
}

/// Export is the inverse of import: the tensors written equal the ones transformers wrote
/// (names, shapes, values, GPT-2's Conv1D layout, LLaMA's separate q/k/v), and a saved directory
/// loads back to the same logits.
#[test]
fn export_reproduces_the_transformers_checkpoint() {
    let dev = kiln_cpu::cpu();
    for (dir, logits) in [("hf_gpt2", "gpt2.logits"), ("hf_llama", "llama.logits")] {
        let src = fixtures().join(dir);
        let model = Gpt::from_hf_dir(&src, &dev).unwrap();
        let original = load_hf_tensors(&src, &dev).unwrap();
        let exported = model.to_hf_tensors().unwrap();
        assert_eq!(exported.len(), original.len(), "{dir}: tensor count");
        for (name, t) in &exported {
            let o = original.get(name).unwrap_or_else(|| panic!("{dir}: exported {name} is not in the original"));
            assert_eq!(t.dims(), o.dims(), "{dir}: {name}");
            assert_eq!(max_abs(t, o), 0.0, "{dir}: {name} differs");
        }
        let out = tempfile::tempdir().unwrap();
        model.save_hf_dir(out.path(), &[]).unwrap();
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(GptConfig::from_hf(&cfg).unwrap(), model.cfg);
        let back = Gpt::from_hf_dir(out.path(), &dev).unwrap();
        let y = back.forward(&expected("ids"), None, false, 0).unwrap();
        assert!(max_abs(&y, &expected(logits)) <= 1e-4);
    }
}

/// Mistral's sliding-window attention (window 5 over 12 tokens) against transformers: the full
/// forward, cached decoding one token at a time past the window, and the paged path (prefill
/// chunk + decode steps) all give transformers' logits.
#[test]
fn mistral_sliding_window_matches_transformers() {
    let dev = kiln_cpu::cpu();
    let model = Gpt::from_hf_dir(&fixtures().join("hf_mistral"), &dev).unwrap();
    assert_eq!(model.cfg.sliding_window, Some(5));
    let (ts, _) = safetensors::load(&fixtures().join("hf_mistral_expected.safetensors"), &dev).unwrap();
    let get = |n: &str| ts.iter().find(|(k, _)| k == n).unwrap().1.clone();
    let (ids, want) = (get("ids"), get("mistral.logits"));
    let err = max_abs(&model.forward(&ids, None, false, 0).unwrap(), &want);
    println!("hf_mistral: max |Δlogits| = {err:.2e}");
    assert!(err <= 1e-4, "full forward: {err}");
    // Cached: a 3-token prefill, then 9 single-token steps (the cache outgrows the window).
    let row = ids.narrow(0, 1, 1).unwrap().contiguous().unwrap(); // (1, 12)
    let want_row = want.narrow(0, 1, 1).unwrap().contiguous().unwrap();
    let mut caches = model.new_caches(1, 12, &dev).unwrap();
    let mut parts = vec![model.forward(&row.narrow(1, 0, 3).unwrap(), Some(&mut caches), false, 0).unwrap()];
    for t in 3..12 {
        parts.push(model.forward(&row.narrow(1, t, 1).unwrap(), Some(&mut caches), false, 0).unwrap());
    }
    let err = max_abs(&Tensor::cat(&parts.iter().collect::<Vec<_>>(), 1).unwrap(), &want_row);
    assert!(err <= 1e-4, "cached decoding: {err}");
    // Paged: the same sequence as a 4-token prefill chunk, then decode steps.
    let toks: Vec<u32> = row.to_vec::<i64>().unwrap().iter().map(|&t| t as u32).collect();
    let mut cache = model.new_paged_cache(8, 4, kiln_core::DType::F32, false, &dev).unwrap();
    cache.add_sequence(0, &toks).unwrap();
    let v = model.cfg.vocab_size;
    let want_v = want_row.to_vec::<f32>().unwrap();
    let mut at = 0;
    for n in [4, 1, 1, 1, 1, 1, 1, 1, 1] {
        assert!(cache.reserve(0, n).unwrap());
        let batch = cache.batch(&[(0, n)], &dev).unwrap();
        let flat = Tensor::from_vec(toks[at..at + n].iter().map(|&t| t as i64).collect(), &[n], &dev).unwrap();
        let rows = Tensor::from_vec((0..n as i64).collect(), &[n], &dev).unwrap();
        let got = model.forward_paged(&flat, &batch, &cache, &rows).unwrap().to_vec::<f32>().unwrap();
        cache.commit(0, &toks[at..at + n]).unwrap();
        for (i, g) in got.chunks(v).enumerate() {
            let w = &want_v[(at + i) * v..(at + i + 1) * v];
            let e = g.iter().zip(w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(e <= 1e-4, "paged position {}: {e}", at + i);
        }
        at += n;
    }
    // A kiln run with a window exports as a Mistral config that reads back the same.
    let hf = model.cfg.to_hf().unwrap();
    assert_eq!(hf["model_type"], "mistral");
    assert_eq!(GptConfig::from_hf(&hf).unwrap(), model.cfg);
}
