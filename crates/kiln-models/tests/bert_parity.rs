//! BERT against Hugging Face: a tiny random-weight BERT (always; fixtures in `tests/fixtures/`,
//! written by `tools/make_bert_fixtures.py` with transformers and sentence-transformers) and the
//! real all-MiniLM-L6-v2 (when `python3 tools/fetch_models.py minilm` has put it in
//! `.cache/models/minilm`; skipped with the reason otherwise). Plus the loader's errors for
//! missing tensors, wrong shapes and bad configs, and the pooling maths.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::{DType, Module, Tensor};
use kiln_models::bert::{read_checkpoint, Bert, BertConfig, HiddenAct};
use kiln_models::embed::{l2_normalize, pool};
use kiln_models::{Pooling, SentenceEmbedder};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load(path: &Path) -> HashMap<String, Tensor> {
    let (ts, _) = kiln_core::safetensors::load(path, &kiln_cpu::cpu())
        .unwrap_or_else(|e| panic!("{e} (regenerate with python3 tools/make_bert_fixtures.py)"));
    ts.into_iter().collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.dims(), b.dims());
    a.to_vec_f64().unwrap().iter().zip(b.to_vec_f64().unwrap()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

fn rows(t: &Tensor) -> Vec<Vec<f64>> {
    let c = *t.dims().last().unwrap();
    t.to_vec_f64().unwrap().chunks(c).map(<[f64]>::to_vec).collect()
}

/// A scratch folder removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("kiln-bert-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn tiny_bert_matches_transformers() {
    let dev = kiln_cpu::cpu();
    let out = load(&fixtures().join("tiny_bert_outputs.safetensors"));
    let model = Bert::from_dir(&fixtures().join("tiny_bert"), &dev).unwrap();
    assert!(model.pooler.is_some());
    assert_eq!(model.num_params(), model.cfg.num_params(true));
    let (ids, mask, types) = (&out["input_ids"], &out["attention_mask"], &out["token_type_ids"]);
    assert!(types.to_vec_f64().unwrap().contains(&1.0), "the batch should hold a sentence pair");
    let h = model.forward(ids, Some(mask), Some(types)).unwrap();
    let d = max_diff(&h, &out["last_hidden_state"]);
    eprintln!("tiny BERT: last hidden state max |kiln − HF| = {d:e}");
    assert!(d <= 1e-5, "last hidden state: max |kiln − HF| = {d:e}");
    let d = max_diff(&model.pooler_output(&h).unwrap(), &out["pooler_output"]);
    eprintln!("tiny BERT: pooler output max |kiln − HF| = {d:e}");
    assert!(d <= 1e-5, "pooler output: max |kiln − HF| = {d:e}");
}

/// `bert.`-prefixed names with unused `cls.*` head tensors, f16 weights, sharded files, GELU-tanh.
#[test]
fn prefixed_sharded_f16_checkpoint_matches_transformers() {
    let dev = kiln_cpu::cpu();
    let dir = fixtures().join("tiny_bert_variant");
    assert!(dir.join("model.safetensors.index.json").exists() && !dir.join("model.safetensors").exists());
    let (raw, _) = read_checkpoint(&dir, &dev).unwrap();
    assert!(raw.keys().all(|k| k.starts_with("bert.") || k.starts_with("cls.")), "{:?}", raw.keys());
    assert_eq!(raw["bert.embeddings.word_embeddings.weight"].dtype(), DType::F16);
    let model = Bert::from_dir(&dir, &dev).unwrap();
    assert_eq!(model.cfg.hidden_act, HiddenAct::GeluNew);
    assert!(model.pooler.is_none());
    let out = load(&fixtures().join("tiny_bert_outputs.safetensors"));
    let h = model.forward(&out["input_ids"], Some(&out["attention_mask"]), Some(&out["token_type_ids"])).unwrap();
    let d = max_diff(&h, &out["variant.last_hidden_state"]);
    eprintln!("tiny BERT variant: last hidden state max |kiln − HF| = {d:e}");
    assert!(d <= 1e-5, "last hidden state: max |kiln − HF| = {d:e}");
    let e = model.pooler_output(&h).unwrap_err().to_string();
    assert!(e.contains("no pooler"), "{e}");
}

/// The weight-name table written as a checkpoint loads back to the same model (HF's
/// query/key/value row blocks of the fused projection included).
#[test]
fn weight_table_round_trips_through_safetensors() {
    let dev = kiln_cpu::cpu();
    let mut cfg = BertConfig::new(40, 16, 2, 2, 24);
    cfg.max_position_embeddings = 12;
    let model = Bert::new(cfg.clone(), true, 7, &dev).unwrap();
    let table = model.hf_weight_table().unwrap();
    let names: Vec<&str> = table.iter().map(|(n, _)| n.as_str()).collect();
    for n in [
        "encoder.layer.1.attention.self.query.weight",
        "encoder.layer.0.attention.self.value.bias",
        "pooler.dense.bias",
    ] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }
    assert_eq!(table.iter().map(|(_, t)| t.numel()).sum::<usize>(), cfg.num_params(true));
    let dir = Scratch::new("roundtrip");
    kiln_core::safetensors::save(&dir.0.join("model.safetensors"), &table, None).unwrap();
    std::fs::write(dir.0.join("config.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
    let back = Bert::from_dir(&dir.0, &dev).unwrap();
    let ids = Tensor::from_vec(vec![1i64, 5, 9, 2, 3, 0, 0, 0], &[2, 4], &dev).unwrap();
    let mask = Tensor::from_vec(vec![1i64, 1, 1, 1, 1, 1, 0, 0], &[2, 4], &dev).unwrap();
    let (a, b) = (model.forward(&ids, Some(&mask), None).unwrap(), back.forward(&ids, Some(&mask), None).unwrap());
    assert_eq!(max_diff(&a, &b), 0.0);
}

/// A sentence's hidden states do not depend on the padding around it, and batched embedding
/// (sorted by length, padded per batch) returns each sentence's own embedding in input order.
#[test]
fn padding_and_batching_do_not_change_results() {
    let dev = kiln_cpu::cpu();
    let mut cfg = BertConfig::new(50, 32, 2, 4, 64);
    cfg.max_position_embeddings = 16;
    let model = Bert::new(cfg, false, 3, &dev).unwrap();
    let alone = Tensor::from_vec(vec![2i64, 7, 11, 3], &[1, 4], &dev).unwrap();
    let padded = Tensor::from_vec(vec![2i64, 7, 11, 3, 0, 0, 2, 9, 9, 9, 9, 3], &[2, 6], &dev).unwrap();
    let mask = Tensor::from_vec(vec![1i64, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1], &[2, 6], &dev).unwrap();
    let h1 = model.forward(&alone, None, None).unwrap();
    let h2 = model.forward(&padded, Some(&mask), None).unwrap().narrow(0, 0, 1).unwrap().narrow(1, 0, 4).unwrap();
    assert!(max_diff(&h1, &h2.contiguous().unwrap()) <= 1e-5);

    let emb = SentenceEmbedder::new(model, vec![Pooling::Mean], true);
    let seqs: Vec<Vec<u32>> = vec![vec![2, 5, 3], vec![2, 8, 8, 8, 8, 8, 3], vec![2, 3], vec![2, 6, 7, 9, 3]];
    let batched = emb.embed_sequences(&seqs, 3).unwrap();
    for (s, got) in seqs.iter().zip(&batched) {
        let one = emb.embed_sequences(std::slice::from_ref(s), 1).unwrap().remove(0);
        let d = one.iter().zip(got).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(d <= 1e-5, "{s:?}: {d}");
        let norm = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    assert!(emb.embed_sequences(&seqs, 0).is_err());
    let long = vec![vec![1u32; 17]];
    let e = emb.embed_sequences(&long, 1).unwrap_err().to_string();
    assert!(e.contains("17 tokens") && e.contains("max_position_embeddings 16"), "{e}");
}

#[test]
fn pooling_modes_follow_their_formulas() {
    let dev = kiln_cpu::cpu();
    // B=1, S=3 (last position padding), C=2
    let h = Tensor::from_vec(vec![1.0f32, -2.0, 3.0, 4.0, 100.0, 100.0], &[1, 3, 2], &dev).unwrap();
    let m = Tensor::from_vec(vec![1i64, 1, 0], &[1, 3], &dev).unwrap();
    let got = |modes: &[Pooling]| pool(&h, &m, modes).unwrap().to_vec_f64().unwrap();
    assert_eq!(got(&[Pooling::Mean]), [2.0, 1.0]);
    assert_eq!(got(&[Pooling::Max]), [3.0, 4.0]);
    assert_eq!(got(&[Pooling::Cls]), [1.0, -2.0]);
    let s = 2f64.sqrt();
    let sq = got(&[Pooling::MeanSqrtLen]);
    assert!((sq[0] - 4.0 / s).abs() < 1e-6 && (sq[1] - 2.0 / s).abs() < 1e-6, "{sq:?}");
    assert_eq!(got(&[Pooling::Cls, Pooling::Mean]), [1.0, -2.0, 2.0, 1.0]);
    let n = l2_normalize(&Tensor::from_vec(vec![3.0f32, 4.0, 0.0, 0.0], &[2, 2], &dev).unwrap()).unwrap();
    assert_eq!(n.to_vec_f64().unwrap(), [0.6, 0.8, 0.0, 0.0].map(|x: f64| x as f32 as f64));
}

#[test]
fn bad_checkpoints_and_configs_give_clear_errors() {
    let dev = kiln_cpu::cpu();
    let tiny = fixtures().join("tiny_bert");
    let cfg = BertConfig::from_file(&tiny.join("config.json")).unwrap();
    let (tensors, _) = read_checkpoint(&tiny, &dev).unwrap();
    let err = |t: &HashMap<String, Tensor>, cfg: &BertConfig| {
        Bert::from_tensors(cfg.clone(), t, "ckpt.safetensors", &dev).unwrap_err().to_string()
    };

    let mut missing = tensors.clone();
    missing.remove("encoder.layer.1.attention.self.key.weight");
    let e = err(&missing, &cfg);
    assert!(
        e.contains("ckpt.safetensors") && e.contains("missing tensor encoder.layer.1.attention.self.key.weight"),
        "{e}"
    );

    let mut wrong = tensors.clone();
    let name = "encoder.layer.0.intermediate.dense.weight";
    wrong.insert(name.into(), Tensor::zeros(&[31, 16], DType::F32, &dev).unwrap());
    let e = err(&wrong, &cfg);
    assert!(e.contains(name) && e.contains("[31, 16]") && e.contains("[32, 16]"), "{e}");

    let mut ints = tensors.clone();
    ints.insert("pooler.dense.bias".into(), Tensor::zeros(&[16], DType::I64, &dev).unwrap());
    let e = err(&ints, &cfg);
    assert!(e.contains("pooler.dense.bias") && e.contains("i64"), "{e}");

    let mut fewer = cfg.clone();
    fewer.num_hidden_layers = 1;
    let e = err(&tensors, &fewer);
    assert!(e.contains("encoder.layer.1.") && e.contains("num_hidden_layers = 1"), "{e}");

    // config.json problems, through from_dir: each names the file and the key.
    let dir = Scratch::new("badcfg");
    std::fs::copy(tiny.join("model.safetensors"), dir.0.join("model.safetensors")).unwrap();
    let text = std::fs::read_to_string(tiny.join("config.json")).unwrap();
    let cases = [
        (
            r#""num_attention_heads": 4"#,
            r#""num_attention_heads": 5"#,
            "num_attention_heads 5 does not divide hidden_size 16",
        ),
        (r#""hidden_act": "gelu""#, r#""hidden_act": "swish""#, "swish"),
        (r#""hidden_size": 16"#, r#""hidden_size": 0"#, "hidden_size must be positive"),
        (r#""model_type": "bert""#, r#""model_type": "roberta""#, "roberta"),
    ];
    for (from, to, needle) in cases {
        assert!(text.contains(from), "fixture config lacks {from}");
        std::fs::write(dir.0.join("config.json"), text.replace(from, to)).unwrap();
        let e = Bert::from_dir(&dir.0, &dev).unwrap_err().to_string();
        assert!(e.contains(needle) && e.contains("config.json"), "{to}: {e}");
    }
    // A missing tensor in a file on disk names the file and the tensor.
    std::fs::write(dir.0.join("config.json"), &text).unwrap();
    let mut kept: Vec<(String, Tensor)> =
        tensors.into_iter().filter(|(n, _)| n != "embeddings.LayerNorm.bias").collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    kiln_core::safetensors::save(&dir.0.join("model.safetensors"), &kept, None).unwrap();
    let e = Bert::from_dir(&dir.0, &dev).unwrap_err().to_string();
    assert!(e.contains("model.safetensors") && e.contains("missing tensor embeddings.LayerNorm.bias"), "{e}");
    std::fs::remove_file(dir.0.join("model.safetensors")).unwrap();
    let e = Bert::from_dir(&dir.0, &dev).unwrap_err().to_string();
    assert!(e.contains("no model.safetensors"), "{e}");
}

/// sentence-transformers directories: the encoder in a sub-folder, concatenated pooling modes,
/// no normalisation; unsupported modules and pooling modes are errors naming them.
#[test]
fn sentence_transformers_layouts() {
    let dev = kiln_cpu::cpu();
    let tiny = fixtures().join("tiny_bert");
    let dir = Scratch::new("st");
    std::fs::create_dir_all(dir.0.join("0_Transformer")).unwrap();
    std::fs::create_dir_all(dir.0.join("1_Pooling")).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(tiny.join(f), dir.0.join("0_Transformer").join(f)).unwrap();
    }
    let pooling = |extra: &str| {
        let cfg = format!(r#"{{"pooling_mode_cls_token": true, "pooling_mode_mean_tokens": true{extra}}}"#);
        std::fs::write(dir.0.join("1_Pooling/config.json"), cfg).unwrap();
    };
    let modules = |extra: &str| {
        let m = format!(
            r#"[{{"idx": 0, "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"}},
                {{"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}}{extra}]"#
        );
        std::fs::write(dir.0.join("modules.json"), m).unwrap();
    };
    pooling("");
    modules("");
    let e = SentenceEmbedder::from_dir(&dir.0, &dev).unwrap();
    assert_eq!((e.pooling.as_slice(), e.normalize, e.dim()), (&[Pooling::Cls, Pooling::Mean][..], false, 32));
    assert_eq!((e.model_dir.file_name().unwrap(), e.max_seq_length), ("0_Transformer".as_ref(), 48));
    let v = e.embed_sequences(&[vec![2, 20, 3]], 1).unwrap();
    assert_eq!(v[0].len(), 32);

    modules(r#", {"idx": 2, "path": "2_Dense", "type": "sentence_transformers.models.Dense"}"#);
    let err = SentenceEmbedder::from_dir(&dir.0, &dev).unwrap_err().to_string();
    assert!(err.contains("modules.json") && err.contains("sentence_transformers.models.Dense"), "{err}");
    modules("");
    pooling(r#", "pooling_mode_lasttoken": true"#);
    let err = SentenceEmbedder::from_dir(&dir.0, &dev).unwrap_err().to_string();
    assert!(err.contains("1_Pooling/config.json") && err.contains("last-token"), "{err}");
}

fn minilm() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/models/minilm");
    if dir.join("model.safetensors").exists() && fixtures().join("minilm_outputs.safetensors").exists() {
        Some(dir)
    } else {
        eprintln!(
            "skipping the MiniLM parity test: {} is not fetched (python3 tools/fetch_models.py minilm)",
            dir.display()
        );
        None
    }
}

/// all-MiniLM-L6-v2: last hidden state of the padded batch within 1e-4 of transformers at the
/// real tokens; sentence embeddings with cosine ≥ 0.99999 to sentence-transformers'.
#[test]
fn minilm_matches_transformers_and_sentence_transformers() {
    let Some(dir) = minilm() else { return };
    let dev = kiln_cpu::cpu();
    let out = load(&fixtures().join("minilm_outputs.safetensors"));
    let emb = SentenceEmbedder::from_dir(&dir, &dev).unwrap();
    assert_eq!(
        (emb.pooling.as_slice(), emb.normalize, emb.max_seq_length, emb.dim()),
        (&[Pooling::Mean][..], true, 256, 384)
    );
    let (ids, mask) = (&out["input_ids"], &out["attention_mask"]);
    let h = kiln_core::no_grad(|| emb.model.forward(ids, Some(mask), None)).unwrap();
    let keep = mask.to_vec_f64().unwrap();
    let real: Vec<Vec<f64>> = rows(&h).into_iter().zip(&keep).filter(|(_, m)| **m == 1.0).map(|(r, _)| r).collect();
    let want = rows(&out["hidden"]);
    assert_eq!(real.len(), want.len());
    let d = real.iter().flatten().zip(want.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    eprintln!("MiniLM: last hidden state max |kiln − HF| = {d:e} over {} real tokens", want.len());
    assert!(d <= 1e-4, "last hidden state: max |kiln − HF| = {d:e} over {} real tokens", want.len());

    let st = rows(&out["st_embeddings"]);
    let padded = rows(&kiln_core::no_grad(|| emb.embed_ids(ids, mask)).unwrap());
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures().join("minilm.json")).unwrap()).unwrap();
    let seqs: Vec<Vec<u32>> = serde_json::from_value(meta["input_ids"].clone()).unwrap();
    let batched = emb.embed_sequences(&seqs, 3).unwrap();
    let mut worst = 1.0f64;
    for (i, want) in st.iter().enumerate() {
        let b: Vec<f64> = batched[i].iter().map(|&x| x as f64).collect();
        for (how, got) in [("padded batch", &padded[i]), ("embed_sequences", &b)] {
            let c = cosine(got, want);
            assert!(c >= 0.99999, "sentence {i} ({how}): cosine {c} to sentence-transformers");
            worst = worst.min(c);
        }
    }
    eprintln!("MiniLM: min cosine to sentence-transformers {worst:.9}");
}
