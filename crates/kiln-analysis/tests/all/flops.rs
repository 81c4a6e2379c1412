//! FLOPs: the book's BERT-base example to the FLOP, the closed forms, Megatron-LM's formula
//! for full recomputation, and 6·N·D.

use kiln_analysis::flops::{
    decode_flops_per_token, forward_flops, layer_flops, layer_flops_closed_form, six_n_d, training_flops,
    training_flops_closed_form, Recompute,
};
use kiln_analysis::{num_params, Arch};

#[test]
fn bert_base_forward_at_512_is_the_books() {
    let a = Arch::preset("bert-base").unwrap();
    let l = layer_flops(&a, 1, 512).unwrap();
    // book Example 12.1, eqs. 12.27–12.35
    assert_eq!(l.q + l.k + l.v, 1_811_939_328);
    assert_eq!(l.scores, 402_653_184);
    assert_eq!(l.weighted, 402_653_184);
    assert_eq!(l.o, 603_979_776);
    assert_eq!(l.mlp, 4_831_838_208);
    assert_eq!(l.total(), 8_053_063_680);
    let f = forward_flops(&a, 1, 512).unwrap();
    // REFERENCE.md: encoder only, 2 FLOPs per MAC
    assert_eq!(f.layers, 96_636_764_160);
    assert_eq!(f.layers, 12 * layer_flops_closed_form(1, 512, 768).unwrap());
    // the pooler is counted separately (one token per sequence)
    assert_eq!(f.pooler, 2 * 768 * 768);
    assert_eq!(f.total, f.layers + f.pooler);
    // training ≈ 3× forward (book eq. 12.37)
    let t = training_flops(&a, 1, 512, Recompute::None).unwrap();
    assert_eq!(t.model, 3 * f.total);
    assert_eq!(t.backward, 2 * f.total);
}

#[test]
fn closed_form_matches_every_textbook_layer() {
    for name in ["gpt2-small", "gpt2-xl", "gpt3-175b", "bert-large", "minilm-l6"] {
        let a = Arch::preset(name).unwrap();
        assert!(a.is_textbook_layer());
        for (b, s) in [(1, 1), (3, 128), (2, 512)] {
            let l = layer_flops(&a, b, s).unwrap();
            assert_eq!(l.total(), layer_flops_closed_form(b, s, a.d_model).unwrap(), "{name} {b} {s}");
            // the S² term is 4·B·S²·C
            assert_eq!(l.attention_core(), 4 * b as u128 * (s as u128).pow(2) * a.d_model as u128);
        }
    }
}

#[test]
fn gqa_and_swiglu_counts() {
    // SmolLM2: 9 heads, 3 kv heads, D = 64, SwiGLU 1536
    let a = Arch::preset("smollm2-135m").unwrap();
    let l = layer_flops(&a, 1, 10).unwrap();
    assert_eq!(l.q, 2 * 10 * 576 * 576);
    assert_eq!(l.k, 2 * 10 * 576 * 192);
    assert_eq!(l.v, l.k);
    assert_eq!(l.mlp, 3 * 2 * 10 * 576 * 1536);
    assert_eq!(l.scores, 2 * 9 * 10 * 10 * 64);
    assert!(!a.is_textbook_layer());
}

/// A mixture of experts costs FLOPs for the k experts a token uses (and the router), not all E:
/// Mixtral's forward ≈ 2 × its 12.9 B active parameters per token (less the embedding lookup),
/// far below 2 × 46.7 B.
#[test]
fn mixture_of_experts_flops_follow_active_parameters() {
    let a = Arch::preset("mixtral-8x7b").unwrap();
    let l = layer_flops(&a, 1, 10).unwrap();
    assert_eq!(l.mlp, 2 * 3 * 10 * 4096 * 14336 * 2 + 2 * 10 * 4096 * 8);
    let p = kiln_analysis::param_count(&a).unwrap();
    let f = forward_flops(&a, 1, 1).unwrap(); // one token: no S² to speak of
                                              // 2 FLOPs per active weight, except the embedding table (a lookup, not a product)
    let matrices = (p.active - p.token_embedding) as f64;
    assert!((f.per_token() / (2.0 * matrices) - 1.0).abs() < 1e-4, "{} vs {}", f.per_token(), 2.0 * matrices);
    assert!(f.per_token() < 0.3 * 2.0 * p.total as f64);
}

#[test]
fn megatron_full_recompute_formula() {
    // Narayanan et al. 2021: 96·B·S·L·h²·(1 + S/(6h) + V/(16·L·h)) with full recomputation
    // = 96·B·S·L·h² + 16·B·S²·L·h + 6·B·S·h·V
    let a = Arch::preset("gpt3-175b").unwrap();
    let (b, s, l, h, v) = (4u128, 2048u128, 96u128, 12288u128, 50257u128);
    let t = training_flops(&a, 4, 2048, Recompute::Full).unwrap();
    assert_eq!(t.hardware, 96 * b * s * l * h * h + 16 * b * s * s * l * h + 6 * b * s * h * v);
    assert_eq!(t.hardware, t.model + t.forward.layers);
    // seed 003 eq. 4.2: model FLOPs of the layers 12·B·C·L·S·(S + 6C)
    let closed = training_flops_closed_form(4, 2048, 12288, 96, 4.0);
    assert_eq!(3 * t.forward.layers, closed as u128);
    let sel = training_flops(&a, 4, 2048, Recompute::Selective).unwrap();
    assert_eq!(sel.recompute, l * t.forward.layer.attention_core());
}

#[test]
fn six_nd_approximates_the_exact_count() {
    // model FLOPs per token = 6N·(1 + O(S/C)); for GPT-3 at S = 2048 within 5 %
    let a = Arch::preset("gpt3-175b").unwrap();
    let n = num_params(&a).unwrap() as f64;
    let t = training_flops(&a, 1, 2048, Recompute::None).unwrap();
    let per_token = t.model as f64 / 2048.0;
    let ratio = per_token / six_n_d(n, 1.0);
    assert!(ratio > 1.0 && ratio < 1.05, "{ratio}");
}

#[test]
fn decode_per_token() {
    let a = Arch::preset("gpt2-small").unwrap();
    // no context: the same as a one-token forward
    assert_eq!(decode_flops_per_token(&a, 0).unwrap(), forward_flops(&a, 1, 1).unwrap().total);
    // each cached token adds 4·H·D·L = 4·C·L FLOPs (QKᵀ and PV)
    let d = decode_flops_per_token(&a, 100).unwrap() - decode_flops_per_token(&a, 99).unwrap();
    assert_eq!(d, 4 * 768 * 12);
}

#[test]
fn errors() {
    let a = Arch::preset("gpt2-small").unwrap();
    assert!(forward_flops(&a, 0, 10).unwrap_err().to_string().contains("batch"));
    let e = forward_flops(&a, 1, 1025).unwrap_err().to_string();
    assert!(e.contains("1024 rows"), "{e}");
    let e = layer_flops_closed_form(u64::MAX, u64::MAX, u64::MAX).unwrap_err().to_string();
    assert!(e.contains("overflows"), "{e}");
    let big = Arch::preset("llama-65b").unwrap();
    assert!(forward_flops(&big, u64::MAX, 1 << 24).unwrap_err().to_string().contains("overflows"));
}

/// The engine's op-level counter (`kiln_core::count_flops`) on real forward and training steps
/// of kiln's models equals the formulas to the FLOP: GPT-2 (fused QKV, GELU MLP, tied head) and
/// LLaMA (GQA, SwiGLU, untied head).
#[test]
fn engine_flop_counter_equals_the_formulas() {
    use kiln_core::{count_flops, no_grad, Tensor};
    use kiln_models::gpt::{Gpt, GptConfig};
    let dev = kiln_cpu::cpu();
    for cfg in [GptConfig::gpt2(50, 32, 64, 2, 4), GptConfig::llama(50, 32, 64, 3, 4, 2, 96)] {
        let (b, t) = (2usize, 24usize);
        let model = Gpt::new(cfg.clone(), 1, &dev).unwrap();
        let ids: Vec<i64> = (0..b * t).map(|i| (i * 13 % 50) as i64).collect();
        let x = Tensor::from_vec(ids.clone(), &[b, t], &dev).unwrap();
        let y = Tensor::from_vec(ids.iter().map(|&i| (i + 1) % 50).collect(), &[b, t], &dev).unwrap();
        let arch = Arch::from(&cfg);
        let want = training_flops(&arch, b as u64, t as u64, Recompute::None).unwrap();

        let (_, fwd) = count_flops(|| no_grad(|| model.forward(&x, None, false, 0).unwrap()));
        assert_eq!(fwd, want.forward.total, "forward of {cfg:?}");

        let (_, step) = count_flops(|| {
            let logits = model.forward(&x, None, true, 0).unwrap();
            let loss = logits
                .reshape(&[b * t, 50])
                .unwrap()
                .cross_entropy(&y.reshape(&[b * t]).unwrap(), kiln_core::ops::CrossEntropyOpts::default())
                .unwrap();
            loss.backward().unwrap();
        });
        assert_eq!(step, want.model, "forward + backward of {cfg:?}");
        assert_eq!(step, 3 * fwd);
        // nested scopes: the outer one sees the inner one's products
        let ((_, inner), outer) =
            count_flops(|| count_flops(|| no_grad(|| model.forward(&x, None, false, 0).unwrap())));
        assert_eq!((inner, outer), (fwd, fwd));
    }
}
