//! Parameter counts: verified numbers, kiln's own sizing functions, and the named parameters of
//! models kiln builds (per component, not just the total).

use kiln_analysis::{param_count, Arch, ParamCount, PRESETS};
use kiln_core::module::Module;
use kiln_models::bert::{Bert, BertConfig};
use kiln_models::gpt::{Gpt, GptConfig};
use std::collections::BTreeMap;

/// Sums the elements of kiln's named parameters by component (GPT and BERT names).
fn by_component(model: &dyn Module) -> BTreeMap<&'static str, u64> {
    let mut out = BTreeMap::new();
    model.visit_params("", &mut |name, t| {
        let bias = name.ends_with(".bias");
        let key = if name.contains("wte.") || name.contains("word_embeddings.") {
            "token"
        } else if name.contains("wpe.") || name.contains("position_embeddings.") {
            "position"
        } else if name.contains("token_type_embeddings.") {
            "token_type"
        } else if name.starts_with("embeddings.LayerNorm") {
            "embedding_norm"
        } else if name.contains("ln_f.") {
            "final_norm"
        } else if name.starts_with("lm_head.") {
            "head"
        } else if name.starts_with("pooler.") {
            "pooler"
        } else if name.contains("ln_1.") || name.contains("ln_2.") || name.contains("LayerNorm.") {
            if bias {
                "norm_bias"
            } else {
                "norm"
            }
        } else if name.contains(".attn.") || name.contains(".attention.") {
            if bias {
                "attn_bias"
            } else if name.contains("c_attn") || name.contains("qkv") {
                "qkv"
            } else {
                "o"
            }
        } else if name.contains(".mlp.") || name.contains("intermediate.") || name.contains(".output.dense") {
            if bias {
                "mlp_bias"
            } else {
                "mlp"
            }
        } else {
            panic!("unclassified parameter {name}")
        };
        *out.entry(key).or_insert(0) += t.numel() as u64;
    });
    out
}

/// The same components from the analysis.
fn expected(p: &ParamCount) -> BTreeMap<&'static str, u64> {
    let l = p.n_layers;
    let y = &p.layer;
    [
        ("token", p.token_embedding),
        ("position", p.position_embedding),
        ("token_type", p.token_type_embedding),
        ("embedding_norm", p.embedding_norm),
        ("qkv", l * (y.attn_q + y.attn_k + y.attn_v)),
        ("o", l * y.attn_o),
        ("attn_bias", l * y.attn_bias),
        ("mlp", l * y.mlp),
        ("mlp_bias", l * y.mlp_bias),
        ("norm", l * y.norm),
        ("norm_bias", l * y.norm_bias),
        ("final_norm", p.final_norm),
        ("head", p.head),
        ("pooler", p.pooler),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect()
}

fn check_gpt(cfg: GptConfig) {
    let arch = Arch::from(&cfg);
    let p = param_count(&arch).unwrap();
    let model = Gpt::new(cfg.clone(), 0, &kiln_cpu::cpu()).unwrap();
    assert_eq!(p.total, model.num_params() as u64, "{}", arch.name);
    assert_eq!(p.total, cfg.num_params() as u64, "{}", arch.name);
    assert_eq!(by_component(&model), expected(&p), "{}", arch.name);
}

fn check_bert(cfg: BertConfig, pooler: bool) {
    let arch = Arch::from(&cfg).with_pooler(pooler);
    let p = param_count(&arch).unwrap();
    let model = Bert::new(cfg.clone(), pooler, 0, &kiln_cpu::cpu()).unwrap();
    assert_eq!(p.total, model.num_params() as u64, "{} pooler {pooler}", arch.name);
    assert_eq!(p.total, cfg.num_params(pooler) as u64);
    assert_eq!(by_component(&model), expected(&p), "{} pooler {pooler}", arch.name);
}

#[test]
fn gpt2_style_models_as_built() {
    check_gpt(GptConfig::gpt2(97, 32, 48, 3, 4));
    let mut untied_no_bias = GptConfig::gpt2(61, 16, 32, 2, 2);
    untied_no_bias.bias = false;
    untied_no_bias.tie_word_embeddings = false;
    untied_no_bias.n_inner = 80;
    check_gpt(untied_no_bias);
}

#[test]
fn llama_style_models_as_built() {
    // GQA (8 heads, 2 kv heads), untied head
    check_gpt(GptConfig::llama(101, 64, 64, 2, 8, 2, 96));
    // MQA, tied head
    let mut tied = GptConfig::llama(50, 32, 32, 3, 4, 1, 72);
    tied.tie_word_embeddings = true;
    check_gpt(tied);
    // MHA LLaMA
    check_gpt(GptConfig::llama(40, 16, 32, 1, 4, 4, 64));
}

#[test]
fn bert_models_as_built() {
    for pooler in [true, false] {
        check_bert(BertConfig::new(53, 32, 2, 4, 80), pooler);
        let mut c = BertConfig::new(30, 48, 1, 6, 96);
        c.max_position_embeddings = 20;
        c.type_vocab_size = 3;
        check_bert(c, pooler);
    }
}

#[test]
fn full_size_gpt2_small_and_bert_base_as_built() {
    // zero-filled weights instead of random draws: only the shapes matter here
    let _guard = kiln_nn::SkipInitGuard::new();
    let gpt = Gpt::new(GptConfig::gpt2_small(), 0, &kiln_cpu::cpu()).unwrap();
    assert_eq!(gpt.num_params(), 124_439_808);
    assert_eq!(param_count(&Arch::preset("gpt2-small").unwrap()).unwrap().total, 124_439_808);
    assert_eq!(by_component(&gpt), expected(&param_count(&Arch::from(GptConfig::gpt2_small())).unwrap()));
    drop(gpt);
    let cfg = BertConfig::new(30522, 768, 12, 12, 3072);
    let bert = Bert::new(cfg.clone(), true, 0, &kiln_cpu::cpu()).unwrap();
    assert_eq!(bert.num_params(), 109_482_240);
    assert_eq!(param_count(&Arch::from(&cfg)).unwrap().total, 109_482_240);
}

#[test]
fn verified_totals() {
    let total = |name: &str| param_count(&Arch::preset(name).unwrap()).unwrap().total;
    assert_eq!(total("gpt2-small"), 124_439_808);
    assert_eq!(total("bert-base"), 109_482_240);
    // GPT-3 175B, dense, tied head, learned positions: ≈ 174.6e9
    assert_eq!(total("gpt3-175b"), 174_604_259_328);
    // LLaMA-65B, untied head: 65.29e9 (the paper rounds it to "65.2B")
    assert_eq!(total("llama-65b"), 65_285_660_672);
    assert!((total("llama-65b") as f64 / 65.2e9 - 1.0).abs() < 2e-3);
    assert_eq!(total("llama-7b"), 6_738_415_616);
    assert_eq!(total("llama-13b"), 13_015_864_320);
    assert_eq!(total("gpt2-medium"), 354_823_168);
    assert_eq!(total("gpt2-large"), 774_030_080);
    assert_eq!(total("gpt2-xl"), 1_557_611_200);
    assert_eq!(total("bert-large"), 335_141_888);
    assert_eq!(total("smollm2-135m"), 134_515_008);
    assert_eq!(total("minilm-l6"), 22_713_216);
}

/// Mixtral 8×7B: 46.7 B parameters, 12.9 B active per token (Jiang et al. 2024), from the
/// per-tensor sums: attention 41,943,040 + 8 experts × 176,160,768 + router 32,768 + norms 8,192
/// per layer, 32 layers, embeddings and untied head 2 × 131,072,000, final norm 4,096.
#[test]
fn mixture_of_experts_total_and_active() {
    let p = param_count(&Arch::preset("mixtral-8x7b").unwrap()).unwrap();
    assert_eq!(p.layer.mlp, 8 * 3 * 4096 * 14336);
    assert_eq!(p.layer.router, 4096 * 8);
    assert_eq!(p.layer.mlp_active, 2 * 3 * 4096 * 14336);
    assert_eq!(p.total, 46_702_792_704);
    assert_eq!(p.active, 12_879_925_248);
    assert!((p.total as f64 / 46.7e9 - 1.0).abs() < 1e-3 && (p.active as f64 / 12.9e9 - 1.0).abs() < 2e-3);
    // one expert, top 1 is the dense model plus a C-wide router
    let dense = Arch::llama("d", 100, 64, 32, 2, 4, 2, 64, false);
    let (d, m) = (param_count(&dense).unwrap(), param_count(&dense.clone().with_moe(1, 1)).unwrap());
    assert_eq!(m.total, d.total + 2 * 32);
    assert_eq!(d.active, d.total);
    // bad expert counts
    for (e, k) in [(0, 0), (4, 0), (4, 5)] {
        assert!(param_count(&dense.clone().with_moe(e, k)).is_err(), "{e} experts, top {k}");
    }
    let bert = Arch::preset("bert-base").unwrap().with_moe(4, 1);
    assert!(param_count(&bert).is_err());
}

#[test]
fn every_preset_agrees_with_kilns_sizing_functions() {
    for name in PRESETS {
        let a = Arch::preset(name).unwrap();
        if a.moe.is_some() {
            continue; // kiln builds no mixture-of-experts model yet: checked against published figures
        }
        let p = param_count(&a).unwrap();
        let kiln = match a.family {
            kiln_analysis::Family::Decoder => {
                let mut c = GptConfig::gpt2(
                    a.vocab_size as usize,
                    a.max_positions as usize,
                    a.d_model as usize,
                    a.n_layers as usize,
                    a.n_heads as usize,
                );
                if a.mlp == kiln_analysis::MlpKind::SwiGlu {
                    c = GptConfig::llama(
                        a.vocab_size as usize,
                        a.max_positions as usize,
                        a.d_model as usize,
                        a.n_layers as usize,
                        a.n_heads as usize,
                        a.n_kv_heads as usize,
                        a.d_ff as usize,
                    );
                    c.tie_word_embeddings = a.tied_head;
                }
                assert_eq!(Arch::from(&c).named(name), a, "{name}");
                c.num_params()
            }
            kiln_analysis::Family::Encoder => {
                let c = BertConfig::new(
                    a.vocab_size as usize,
                    a.d_model as usize,
                    a.n_layers as usize,
                    a.n_heads as usize,
                    a.d_ff as usize,
                );
                c.num_params(a.pooler)
            }
        };
        assert_eq!(p.total, kiln as u64, "{name}");
        assert_eq!(p.total, p.non_embedding + p.token_embedding + p.position_embedding + p.token_type_embedding);
    }
}

#[test]
fn non_embedding_and_approximation() {
    let p = param_count(&Arch::preset("gpt3-175b").unwrap()).unwrap();
    // seed 003 eq. 3.2: N ≈ 12·L·C² within O(V/(C·L)) + O(1/C)
    let approx = kiln_analysis::params::approx_params(96, 12288, 4.0);
    assert!((p.non_embedding as f64 / approx - 1.0).abs() < 1e-3);
    // the embedding is ≈ 0.3 % of GPT-3 (seed 003 §3.2)
    assert!((p.token_embedding as f64 / p.total as f64 - 0.0035).abs() < 5e-4);
}
