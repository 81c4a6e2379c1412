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
    // Mistral's sliding window caps the context (null means no window).
    let mistral = |w: &str| {
        cfg(&format!(
            r#"{{"model_type": "mistral", "vocab_size": 10, "max_position_embeddings": 64, "hidden_size": 16,
            "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 32, "sliding_window": {w}}}"#
        ))
    };
    assert_eq!(mistral("16").unwrap().n_positions, 16);
    assert_eq!(mistral("null").unwrap().n_positions, 64);
    assert_eq!(mistral("4096").unwrap().n_positions, 64);
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
