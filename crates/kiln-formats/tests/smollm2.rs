//! The real SmolLM2-135M-Instruct Q4_1 GGUF (`python3 tools/fetch_models.py smollm2`) against what
//! gguf-py read from it (`tools/make_gguf_fixtures.py` → fixtures/smollm2_q4_1.json): header,
//! every metadata key and value, every tensor's name / type / dims / offset, and the sha256 of every
//! tensor dequantized to f32 — bit-equal to `gguf.quants.dequantize`. Skips (with the reason) when
//! the model is not in the cache.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::{check_scalar, elements, fixture, read_json, sha256_f32, smollm2_path, Sha256};
use kiln_formats::{GgufFile, Value};
use serde_json::Value as Json;

/// Opens the model, or prints why the test is skipped.
fn model() -> Option<GgufFile> {
    let path = smollm2_path();
    if !path.exists() {
        eprintln!("SKIPPED: {} is absent; fetch it with `python3 tools/fetch_models.py smollm2`", path.display());
        return None;
    }
    Some(GgufFile::open(&path).unwrap())
}

#[test]
fn sha256_known_vectors() {
    let h = |b: &[u8]| {
        let mut s = Sha256::default();
        s.update(b);
        s.hex()
    };
    assert_eq!(h(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(h(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_eq!(h(&[b'a'; 1000]), "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
    // Split updates hash the same as one.
    let mut s = Sha256::default();
    for c in [b'a'; 1000].chunks(37) {
        s.update(c);
    }
    assert_eq!(s.hex(), h(&[b'a'; 1000]));
}

#[test]
fn smollm2_header_and_metadata_match_gguf_py() {
    let Some(g) = model() else { return };
    let doc = read_json(&fixture("smollm2_q4_1.json"));
    assert_eq!(Some(u64::from(g.version())), doc["version"].as_u64());
    assert_eq!(Some(g.tensors().len() as u64), doc["tensor_count"].as_u64());
    assert_eq!(Some(g.alignment()), doc["alignment"].as_u64());
    let meta = doc["metadata"].as_array().unwrap();
    let keys: Vec<&str> = g.metadata().iter().map(|(k, _)| k.as_str()).collect();
    let want_keys: Vec<&str> = meta.iter().map(|j| j["key"].as_str().unwrap()).collect();
    assert_eq!(keys, want_keys);
    for ((key, value), j) in g.metadata().iter().zip(meta) {
        assert_eq!(Some(value.value_type().name()), j["type"].as_str(), "{key}");
        match value {
            Value::Array(a) => {
                assert_eq!(Some(a.element_type().name()), j["element_type"].as_str(), "{key}");
                assert_eq!(Some(a.len() as u64), j["len"].as_u64(), "{key}");
                let el = elements(a);
                let check = |got: &[Value], want: &Json, which: &str| {
                    let want = want.as_array().unwrap();
                    assert_eq!(got.len(), want.len(), "{key} {which}");
                    for (g, w) in got.iter().zip(want) {
                        check_scalar(&format!("{key} {which}"), g, w);
                    }
                };
                check(&el[..el.len().min(3)], &j["first"], "first");
                check(&el[el.len().saturating_sub(3)..], &j["last"], "last");
            }
            _ => check_scalar(key, value, &j["value"]),
        }
    }
    // The tokenizer tables through the typed getters.
    let n_vocab = meta.iter().find(|j| j["key"] == "tokenizer.ggml.tokens").unwrap()["len"].as_u64().unwrap();
    assert_eq!(g.get_str_array("tokenizer.ggml.tokens").unwrap().len() as u64, n_vocab);
    assert_eq!(g.get_i32_array("tokenizer.ggml.token_type").unwrap().len() as u64, n_vocab);
    assert!(g.get_str_array("tokenizer.ggml.merges").unwrap().len() > 1000);
    assert_eq!(g.get_str("general.architecture").unwrap(), "llama");
    assert!(g.get_u32("llama.context_length").unwrap() > 0);
}

#[test]
fn smollm2_tensors_dequantize_bit_equal_to_gguf_py() {
    let Some(g) = model() else { return };
    let doc = read_json(&fixture("smollm2_q4_1.json"));
    let tensors = doc["tensors"].as_array().unwrap();
    assert_eq!(g.tensors().len(), tensors.len());
    let mut n_values = 0usize;
    for (info, j) in g.tensors().iter().zip(tensors) {
        let name = &info.name;
        assert_eq!(Some(name.as_str()), j["name"].as_str());
        assert_eq!(Some(info.ggml_type.name()), j["type"].as_str(), "{name}");
        let dims: Vec<u64> = j["dims"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
        assert_eq!(info.dims, dims, "{name}");
        assert_eq!(Some(g.data_offset() + info.offset), j["data_offset"].as_u64(), "{name}");
        assert_eq!(Some(info.n_bytes), j["n_bytes"].as_u64(), "{name}");
        let values = g.dequantize(info).unwrap();
        assert_eq!(Some(sha256_f32(&values).as_str()), j["sha256"].as_str(), "{name} ({})", info.ggml_type);
        n_values += values.len();
    }
    eprintln!("{} tensors, {n_values} values bit-equal to gguf-py", tensors.len());
}

#[test]
fn smollm2_as_kiln_tensors() {
    let Some(g) = model() else { return };
    let dev = kiln_cpu::cpu();
    let emb = g.tensor_info("token_embd.weight").unwrap();
    let t = g.tensor("token_embd.weight", &dev).unwrap();
    // GGUF [hidden, vocab] → row-major [vocab, hidden]: one row per token.
    assert_eq!(t.dims(), [emb.dims[1] as usize, emb.dims[0] as usize]);
    assert_eq!(t.dims()[0], g.get_str_array("tokenizer.ggml.tokens").unwrap().len());
}
