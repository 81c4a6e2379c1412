//! Architectures from config files: HF GPT-2 / LLaMA / BERT configs, kiln run configs, Arch
//! JSON, the real MiniLM and SmolLM2 files when fetched; bad configs are clear errors.

use kiln_analysis::{num_params, Arch, Family};
use kiln_models::gpt::GptConfig;
use serde_json::json;

fn write(dir: &std::path::Path, v: &serde_json::Value) -> std::path::PathBuf {
    let p = dir.join("config.json");
    std::fs::write(&p, serde_json::to_string(v).unwrap()).unwrap();
    p
}

#[test]
fn hf_configs() {
    let gpt2 = json!({"model_type": "gpt2", "vocab_size": 50257, "n_positions": 1024, "n_embd": 768,
                      "n_layer": 12, "n_head": 12, "n_inner": null, "activation_function": "gelu_new"});
    let a = Arch::from_config_json(&gpt2, "gpt2/config.json").unwrap();
    assert_eq!(num_params(&a).unwrap(), 124_439_808);
    assert_eq!(a.name, "gpt2");
    let llama = json!({"model_type": "llama", "vocab_size": 49152, "max_position_embeddings": 8192,
                       "hidden_size": 576, "num_hidden_layers": 30, "num_attention_heads": 9,
                       "num_key_value_heads": 3, "intermediate_size": 1536, "tie_word_embeddings": true,
                       "hidden_act": "silu", "rope_theta": 100000.0});
    let a = Arch::from_config_json(&llama, "x").unwrap();
    assert_eq!(num_params(&a).unwrap(), 134_515_008);
    assert_eq!(a.n_kv_heads, 3);
    let bert = json!({"model_type": "bert", "vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
                      "num_attention_heads": 12, "intermediate_size": 3072});
    let a = Arch::from_config_json(&bert, "x").unwrap();
    assert_eq!((a.family, num_params(&a).unwrap()), (Family::Encoder, 109_482_240));
    // Mixtral's released config.json (the keys that matter) is the preset.
    let mixtral = json!({"architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "vocab_size": 32000,
                         "max_position_embeddings": 32768, "hidden_size": 4096, "num_hidden_layers": 32,
                         "num_attention_heads": 32, "num_key_value_heads": 8, "intermediate_size": 14336,
                         "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 1e6, "sliding_window": null,
                         "num_local_experts": 8, "num_experts_per_tok": 2, "tie_word_embeddings": false});
    let a = Arch::from_config_json(&mixtral, "x").unwrap();
    assert_eq!(a, Arch::preset("mixtral-8x7b").unwrap().named("x"));
    let mut no_experts = mixtral.clone();
    no_experts.as_object_mut().unwrap().remove("num_experts_per_tok");
    let e = Arch::from_config_json(&no_experts, "x").unwrap_err().to_string();
    assert!(e.contains("num_experts_per_tok"), "{e}");
}

#[test]
fn kiln_run_config_and_arch_json() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GptConfig::llama(100, 64, 64, 2, 8, 2, 96);
    let path = write(dir.path(), &serde_json::to_value(&cfg).unwrap());
    let a = Arch::from_config_file(&path).unwrap();
    assert_eq!(num_params(&a).unwrap(), cfg.num_params() as u64);
    // a directory means its config.json; resolve() takes paths and presets
    assert_eq!(Arch::from_config_file(dir.path()).unwrap(), a);
    assert_eq!(Arch::resolve(dir.path().to_str().unwrap()).unwrap(), a);
    assert_eq!(Arch::resolve("gpt2-small").unwrap(), Arch::preset("gpt2-small").unwrap());
    // an Arch round-trips through JSON
    let arch = Arch::preset("llama-65b").unwrap();
    let back = Arch::from_config_json(&serde_json::to_value(&arch).unwrap(), "x").unwrap();
    assert_eq!(back, arch);
}

#[test]
fn bad_configs() {
    let err = |v: serde_json::Value| Arch::from_config_json(&v, "cfg.json").unwrap_err().to_string();
    let e = err(
        json!({"model_type": "gpt2", "vocab_size": 10, "n_positions": 8, "n_embd": -768, "n_layer": 1, "n_head": 1}),
    );
    assert!(e.contains("cfg.json") && e.contains("n_embd must be positive, got -768"), "{e}");
    let e =
        err(json!({"model_type": "gpt2", "vocab_size": 10, "n_positions": 8, "n_embd": 0, "n_layer": 1, "n_head": 1}));
    assert!(e.contains("n_embd must be positive"), "{e}");
    let e =
        err(json!({"model_type": "gpt2", "vocab_size": 10, "n_positions": 8, "n_embd": 10, "n_layer": 1, "n_head": 3}));
    assert!(e.contains("does not divide"), "{e}");
    let e = err(json!({"model_type": "llama", "vocab_size": 10, "max_position_embeddings": 8, "hidden_size": 16,
                       "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 3, "intermediate_size": 8}));
    assert!(e.contains("n_kv_head 3 does not divide n_head 4"), "{e}");
    let e = err(json!({"model_type": "bert", "vocab_size": 10, "hidden_size": 10, "num_hidden_layers": 1,
                       "num_attention_heads": 4, "intermediate_size": 8}));
    assert!(e.contains("does not divide hidden_size"), "{e}");
    let e = err(json!({"model_type": "t5", "d_model": 512}));
    assert!(e.contains("model_type \"t5\" is not supported"), "{e}");
    let e = err(json!({"hello": 1}));
    assert!(e.contains("cannot tell the architecture"), "{e}");
    let e = err(json!({"model_type": "gpt2", "n_embd": 7.5}));
    assert!(e.contains("n_embd must be a non-negative integer"), "{e}");
    assert!(err(json!([1, 2])).contains("JSON object"));
    let e = Arch::resolve("no-such-model").unwrap_err().to_string();
    assert!(e.contains("neither an existing config file") && e.contains("llama-7b"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
    assert!(Arch::from_config_file(dir.path()).unwrap_err().to_string().contains("not JSON"));
}

#[test]
fn real_minilm_directory() {
    let Some(dir) = crate::cached_model("minilm") else { return };
    let a = Arch::from_config_file(&dir).unwrap();
    // the checkpoint has pooler.dense (detected from the safetensors header)
    assert!(a.pooler);
    assert_eq!(num_params(&a).unwrap(), 22_713_216);
    let model = kiln_models::bert::Bert::from_dir(&dir, &kiln_cpu::cpu()).unwrap();
    assert_eq!(kiln_core::module::Module::num_params(&model) as u64, num_params(&a).unwrap());
    assert_eq!(a.clone().named("minilm-l6"), Arch::preset("minilm-l6").unwrap());
}

#[test]
fn real_smollm2_gguf_matches_the_preset() {
    let Some(dir) = crate::cached_model("smollm2") else { return };
    let g = kiln_formats::GgufFile::open(dir.join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let cfg = kiln_models::gpt::config_from_gguf(&g).unwrap();
    let a = Arch::from(&cfg).named("smollm2-135m");
    assert_eq!(a, Arch::preset("smollm2-135m").unwrap());
    // the file holds exactly this many weights
    let held: u64 = g.tensors().iter().map(|t| t.n_elements).sum();
    assert_eq!(held, num_params(&a).unwrap());
}
