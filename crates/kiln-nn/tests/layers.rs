//! Layers: KV-cached decoding equals the full forward, RoPE's relative-position property and
//! gradients, parameter names and counts, config errors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::cloned_ref_to_slice_refs)] // tests fail loudly by design

use kiln_core::gradcheck::{gradcheck, GradcheckOpts};
use kiln_core::{DType, Module, Tensor};
use kiln_nn::attention::{AttentionConfig, KvCache, MultiHeadAttention};
use kiln_nn::ffn::{Activation, Mlp, SwiGlu};
use kiln_nn::position::RotaryEmbedding;
use kiln_nn::{Embedding, Linear};

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    a.to_vec_f64().unwrap().iter().zip(b.to_vec_f64().unwrap()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn gqa() -> AttentionConfig {
    AttentionConfig { dim: 48, n_heads: 6, n_kv_heads: 2, bias: false, causal: true, dropout: 0.0, window: None }
}

#[test]
fn kv_cached_decoding_matches_the_full_forward() {
    let dev = kiln_cpu::cpu();
    let attn = MultiHeadAttention::new(gqa(), 0.1, 0.1, 7, &dev).unwrap();
    let rope = RotaryEmbedding::new(8, 64, 10_000.0, DType::F32, &dev).unwrap();
    let x = Tensor::randn(&[2, 10, 48], 0.0, 1.0, DType::F32, 1, &dev).unwrap();
    let full = attn.forward(&x, Some(&rope), None, false, 0).unwrap();
    // Prefill 4 tokens, then decode the other 6 one at a time.
    let mut cache = KvCache::new(2, 2, 16, 8, DType::F32, &dev).unwrap();
    let mut outs = vec![attn.forward(&x.narrow(1, 0, 4).unwrap(), Some(&rope), Some(&mut cache), false, 0).unwrap()];
    for t in 4..10 {
        outs.push(attn.forward(&x.narrow(1, t, 1).unwrap(), Some(&rope), Some(&mut cache), false, 0).unwrap());
    }
    assert_eq!(cache.len(), 10);
    let refs: Vec<&Tensor> = outs.iter().collect();
    let cached = Tensor::cat(&refs, 1).unwrap();
    assert!(max_diff(&full, &cached) < 1e-5, "{}", max_diff(&full, &cached));
    // Overflowing the cache is an error, not a panic.
    let too_long = Tensor::randn(&[2, 7, 48], 0.0, 1.0, DType::F32, 2, &dev).unwrap();
    assert!(attn.forward(&too_long, Some(&rope), Some(&mut cache), false, 0).is_err());
}

#[test]
fn rope_scores_depend_only_on_relative_position() {
    let dev = kiln_cpu::cpu();
    let rope = RotaryEmbedding::new(16, 64, 10_000.0, DType::F64, &dev).unwrap();
    let q = Tensor::randn(&[1, 1, 1, 16], 0.0, 1.0, DType::F64, 3, &dev).unwrap();
    let k = Tensor::randn(&[1, 1, 1, 16], 0.0, 1.0, DType::F64, 4, &dev).unwrap();
    let score = |m: usize, n: usize| {
        rope.forward(&q, m).unwrap().mul(&rope.forward(&k, n).unwrap()).unwrap().sum_all().unwrap().to_scalar().unwrap()
    };
    assert!((score(5, 2) - score(13, 10)).abs() < 1e-12);
    assert!((score(0, 0) - q.mul(&k).unwrap().sum_all().unwrap().to_scalar().unwrap()).abs() < 1e-12);
    assert!((score(5, 2) - score(5, 3)).abs() > 1e-6);
    // Norms are preserved (a rotation).
    let r = rope.forward(&q, 17).unwrap();
    assert!(
        (r.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap()
            - q.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap())
        .abs()
            < 1e-12
    );
    // Gradients through the rotation.
    let x = Tensor::randn(&[1, 2, 5, 16], 0.0, 1.0, DType::F64, 5, &dev).unwrap();
    gradcheck(|t| rope.forward(&t[0], 3), &[x], GradcheckOpts::default()).unwrap();
    assert!(rope.forward(&q, 64).is_err(), "past the table");
    assert!(RotaryEmbedding::new(7, 8, 1e4, DType::F32, &dev).is_err(), "odd head dim");
}

#[test]
fn parameters_have_canonical_names_and_counts() {
    let dev = kiln_cpu::cpu();
    let attn = MultiHeadAttention::new(gqa(), 0.02, 0.02, 1, &dev).unwrap();
    let names: Vec<(String, Vec<usize>)> =
        attn.named_parameters().into_iter().map(|(n, t)| (n, t.dims().to_vec())).collect();
    assert_eq!(
        names,
        vec![("c_attn.weight".to_string(), vec![(6 + 2 * 2) * 8, 48]), ("c_proj.weight".to_string(), vec![48, 48])]
    );
    let mlp = Mlp::new(48, 192, Activation::GeluTanh, true, (0.02, 0.02), 2, &dev).unwrap();
    assert_eq!(mlp.num_params(), 48 * 192 + 192 + 192 * 48 + 48);
    let sw = SwiGlu::new(48, 128, 0.02, 3, &dev).unwrap();
    let n: Vec<String> = sw.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(n, ["gate_proj.weight", "up_proj.weight", "down_proj.weight"]);
}

#[test]
fn layers_train_end_to_end() {
    let dev = kiln_cpu::cpu();
    let emb = Embedding::new(20, 16, 0.1, 1, &dev).unwrap();
    let mlp = SwiGlu::new(16, 32, 0.1, 2, &dev).unwrap();
    let head = Linear::new(16, 20, true, 0.1, 3, &dev).unwrap();
    let ids = Tensor::from_vec(vec![1i64, 5, 7, 5], &[1, 4], &dev).unwrap();
    let logits = head.forward(&mlp.forward(&emb.forward(&ids).unwrap()).unwrap()).unwrap();
    assert_eq!(logits.dims(), &[1, 4, 20]);
    logits.sum_all().unwrap().backward().unwrap();
    for (name, p) in emb.named_parameters().into_iter().chain(mlp.named_parameters()).chain(head.named_parameters()) {
        assert!(p.grad().is_some(), "{name} got no gradient");
    }
}

#[test]
fn bad_configs_are_errors() {
    let dev = kiln_cpu::cpu();
    let bad_heads = AttentionConfig { n_heads: 5, ..gqa() };
    assert!(MultiHeadAttention::new(bad_heads, 0.02, 0.02, 0, &dev).is_err());
    let bad_kv = AttentionConfig { n_kv_heads: 4, ..gqa() };
    let e = MultiHeadAttention::new(bad_kv, 0.02, 0.02, 0, &dev).unwrap_err();
    assert!(e.to_string().contains("n_kv_heads 4"), "{e}");
    let attn = MultiHeadAttention::new(gqa(), 0.02, 0.02, 0, &dev).unwrap();
    let x = Tensor::zeros(&[1, 3, 40], DType::F32, &dev).unwrap();
    assert!(attn.forward(&x, None, None, false, 0).is_err());
}

#[test]
fn skip_init_guard_zeroes_random_inits_on_this_thread_only() {
    let dev = kiln_cpu::cpu();
    let random = || kiln_nn::Init::Normal { std: 0.02 }.make(&[4, 4], 1, &dev).unwrap().to_vec::<f32>().unwrap();
    let before = random();
    assert!(before.iter().any(|&v| v != 0.0));
    {
        let _g = kiln_nn::SkipInitGuard::new();
        assert!(random().iter().all(|&v| v == 0.0));
        let ones = kiln_nn::Init::Ones.make(&[3], 0, &dev).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(ones, [1.0; 3], "only random inits are skipped");
        assert!(std::thread::scope(|s| s.spawn(|| random().iter().any(|&v| v != 0.0)).join().unwrap()));
    }
    assert_eq!(random(), before, "restored after the guard drops");
}
