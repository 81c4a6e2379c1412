//! Architectures: presets, conversions from kiln configs, validation errors.

use kiln_analysis::{Arch, Family, MlpKind, NormKind, PositionKind, PRESETS};
use kiln_models::bert::BertConfig;
use kiln_models::gpt::GptConfig;

#[test]
fn from_kiln_configs() {
    let a = Arch::from(GptConfig::llama(100, 64, 64, 2, 8, 2, 96));
    assert_eq!(
        (a.family, a.position, a.norm, a.mlp),
        (Family::Decoder, PositionKind::Rope, NormKind::RmsNorm, MlpKind::SwiGlu)
    );
    assert_eq!((a.n_heads, a.n_kv_heads, a.head_dim(), a.kv_dim(), a.d_ff), (8, 2, 8, 16, 96));
    assert!(!a.bias && !a.tied_head);
    let g = Arch::from(GptConfig::gpt2_small());
    assert_eq!(g, Arch::preset("gpt2-small").unwrap().named(&g.name));
    let b = Arch::from(BertConfig::new(30522, 768, 12, 12, 3072));
    assert_eq!(b, Arch::preset("bert-base").unwrap().named(&b.name));
    assert!(b.pooler && b.type_vocab_size == 2 && b.family == Family::Encoder);
    assert!(!b.clone().with_pooler(false).pooler);
}

#[test]
fn presets() {
    assert_eq!(PRESETS.len(), 13);
    for p in PRESETS {
        Arch::preset(p).unwrap().validate().unwrap();
    }
    let e = Arch::preset("llama-70b").unwrap_err().to_string();
    assert!(e.contains("unknown preset \"llama-70b\"") && e.contains("gpt2-small"), "{e}");
}

#[test]
fn inconsistent_configs_are_refused() {
    let base = Arch::preset("llama-7b").unwrap();
    let msg = |a: Arch| a.validate().unwrap_err().to_string();
    let e = msg(Arch { n_heads: 30, ..base.clone() });
    assert!(e.contains("n_heads") && e.contains("do not divide d_model 4096"), "{e}");
    let e = msg(Arch { n_kv_heads: 5, ..base.clone() });
    assert!(e.contains("5 kv heads do not divide 32 heads"), "{e}");
    for field in ["vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "max_positions"] {
        let mut a = base.clone();
        match field {
            "vocab_size" => a.vocab_size = 0,
            "d_model" => a.d_model = 0,
            "n_layers" => a.n_layers = 0,
            "n_heads" => a.n_heads = 0,
            "n_kv_heads" => a.n_kv_heads = 0,
            "d_ff" => a.d_ff = 0,
            _ => a.max_positions = 0,
        }
        let e = msg(a);
        assert!(e.contains(&format!("{field}: must be at least 1")), "{e}");
    }
    let e = msg(Arch { d_model: 1 << 20, n_heads: 1, n_kv_heads: 1, ..base.clone() });
    assert!(e.contains("exceeds kiln's limit"), "{e}");
    let e = msg(Arch { d_model: 4100, ..base.clone() }.named("odd"));
    assert!(e.contains("\"odd\""), "{e}");
    let e = msg(Arch { type_vocab_size: 2, ..base.clone() });
    assert!(e.contains("decoders have no token-type table"), "{e}");
    let e = msg(Arch { type_vocab_size: 0, ..Arch::preset("bert-base").unwrap() });
    assert!(e.contains("at least one token type"), "{e}");
    // RoPE needs an even head dim: C = 36, H = 4 → D = 9
    let e = msg(Arch::llama("r", 10, 8, 36, 1, 4, 4, 16, true));
    assert!(e.contains("even head dim"), "{e}");
    // every analysis validates first
    let bad = Arch { n_kv_heads: 3, ..base };
    assert!(kiln_analysis::param_count(&bad).is_err());
    assert!(kiln_analysis::forward_flops(&bad, 1, 1).is_err());
    assert!(kiln_analysis::kv_cache(&bad, 1, 1, kiln_analysis::Dtype::F16).is_err());
}
