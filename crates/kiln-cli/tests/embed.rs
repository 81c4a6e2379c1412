//! `kiln embed` end to end: the tiny fixture model (a complete sentence-transformers directory
//! written by `tools/make_bert_fixtures.py`) always; all-MiniLM-L6-v2 when fetched into
//! `.cache/models/minilm` (token ids equal to Hugging Face's, embeddings with cosine ≥ 0.99999
//! to sentence-transformers'), skipped with the reason otherwise.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::Tensor;
use kiln_data::HfTokenizer;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../kiln-models/tests/fixtures")
}

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).env("KILN_NUM_THREADS", "2").output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Runs `kiln embed` and returns the parsed JSON object.
fn embed(args: &[&str]) -> serde_json::Value {
    let o = kiln(&[&["embed"], args].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let s = String::from_utf8(o.stdout).unwrap();
    assert_eq!(s.lines().count(), 1, "one JSON object on one line");
    serde_json::from_str(&s).unwrap()
}

fn embeddings(v: &serde_json::Value) -> Vec<Vec<f64>> {
    serde_json::from_value(v["embeddings"].clone()).unwrap()
}

fn outputs(path: &Path) -> (HashMap<String, Tensor>, HashMap<String, String>) {
    let (ts, meta) = kiln_core::safetensors::load(path, &kiln_cpu::cpu())
        .unwrap_or_else(|e| panic!("{e} (regenerate with python3 tools/make_bert_fixtures.py)"));
    (ts.into_iter().collect(), meta)
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    let c = *t.dims().last().unwrap();
    t.to_vec_f64().unwrap().chunks(c).map(<[f64]>::to_vec).collect()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

#[test]
fn embeds_with_the_tiny_model() {
    let model = fixtures().join("tiny_bert");
    let model_s = model.display().to_string();
    let (out, meta) = outputs(&fixtures().join("tiny_bert_outputs.safetensors"));
    let texts: Vec<String> = serde_json::from_str(&meta["texts"]).unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let v = embed(&[&["--model", &model_s, "--batch", "3"], refs.as_slice()].concat());
    assert_eq!((v["dim"].as_u64(), v["count"].as_u64(), v["normalized"].as_bool()), (Some(16), Some(4), Some(true)));
    assert_eq!(v["model"].as_str(), Some(model_s.as_str()));
    let got = embeddings(&v);
    for (i, (e, want)) in got.iter().zip(rows(&out["st_embeddings"])).enumerate() {
        assert_eq!(e.len(), 16);
        let norm = e.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "text {i}: norm {norm}");
        let c = cosine(e, &want);
        assert!(c >= 0.99999, "text {i}: cosine {c} to sentence-transformers");
    }
    // --file: TEXT arguments first, then one row per line.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("lines.txt");
    std::fs::write(&file, format!("{}\n{}\n", texts[1], texts[2])).unwrap();
    let v = embed(&["--model", &model_s, "--file", &file.display().to_string(), &texts[0]]);
    let again = embeddings(&v);
    assert_eq!(again.len(), 3);
    for (a, b) in again.iter().zip(&got[..3]) {
        assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6));
    }
}

#[test]
fn bad_embed_input_gives_one_clear_error() {
    let model = fixtures().join("tiny_bert").display().to_string();
    let cases: [(&[&str], &str); 4] = [
        (&["embed", "--model", "/nonexistent/model", "hi"], "config.json"),
        (&["embed", "--model", &model], "nothing to embed"),
        (&["embed", "--model", &model, "--batch", "0", "hi"], "--batch"),
        (&["embed", "--model", &model, "--file", "/nonexistent/lines.txt"], "lines.txt"),
    ];
    for (args, needle) in cases {
        let o = kiln(args);
        let err = stderr(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}

fn minilm() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/minilm");
    if dir.join("model.safetensors").exists() && fixtures().join("minilm_outputs.safetensors").exists() {
        Some(dir)
    } else {
        eprintln!(
            "skipping the MiniLM CLI test: {} is not fetched (python3 tools/fetch_models.py minilm)",
            dir.display()
        );
        None
    }
}

/// all-MiniLM-L6-v2 from text: kiln's token ids equal Hugging Face's, and `kiln embed`'s
/// vectors have cosine ≥ 0.99999 to sentence-transformers'.
#[test]
fn minilm_text_to_embedding_matches_hugging_face() {
    let Some(dir) = minilm() else { return };
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("minilm.json")).unwrap()).unwrap();
    let sentences: Vec<String> = serde_json::from_value(meta["sentences"].clone()).unwrap();
    let want_ids: Vec<Vec<u32>> = serde_json::from_value(meta["input_ids"].clone()).unwrap();
    let tok = HfTokenizer::from_file(&dir.join("tokenizer.json")).unwrap().with_max_length(256).unwrap();
    for (s, want) in sentences.iter().zip(&want_ids) {
        assert_eq!(&tok.encode(s, true).unwrap(), want, "{s:?}");
    }
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let batch = tok.encode_batch(&refs).unwrap();
    let (ids, _) = outputs(&fixtures().join("minilm_outputs.safetensors"));
    let want: Vec<i64> = ids["input_ids"].to_vec().unwrap();
    assert_eq!(batch.ids, want, "padded batch ids");
    assert_eq!(batch.attention_mask, ids["attention_mask"].to_vec::<i64>().unwrap());

    let v = embed(&[&["--model", &dir.display().to_string(), "--batch", "4"], refs.as_slice()].concat());
    assert_eq!(v["dim"].as_u64(), Some(384));
    for (i, (e, st)) in embeddings(&v).iter().zip(rows(&ids["st_embeddings"])).enumerate() {
        let c = cosine(e, &st);
        assert!(c >= 0.99999, "sentence {i} {:?}: cosine {c} to sentence-transformers", sentences[i]);
    }
}
