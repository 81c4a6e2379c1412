//! GPT/LLaMA models: parameter counts against the book's numbers, cached decoding, learning,
//! config errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::ops::CrossEntropyOpts;
use kiln_core::{Module, Tensor};
use kiln_models::gpt::{Gpt, GptConfig};
use kiln_train::{AdamW, AdamWConfig};

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    a.to_vec_f64().unwrap().iter().zip(b.to_vec_f64().unwrap()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

#[test]
fn gpt2_small_has_the_reference_parameter_count() {
    // REFERENCE.md: GPT-2 small with biases and a tied head, V = 50257, ctx 1024.
    assert_eq!(GptConfig::gpt2_small().num_params(), 124_439_808);
}

#[test]
fn built_models_match_the_size_table() {
    let dev = kiln_cpu::cpu();
    for cfg in [GptConfig::gpt2(65, 32, 48, 2, 4), GptConfig::llama(70, 32, 48, 2, 6, 2, 128)] {
        let m = Gpt::new(cfg.clone(), 1, &dev).unwrap();
        assert_eq!(m.num_params(), cfg.num_params(), "{cfg:?}");
    }
    let m = Gpt::new(GptConfig::gpt2(65, 32, 48, 2, 4), 1, &dev).unwrap();
    let names: Vec<String> = m.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[0], "transformer.wte.weight");
    assert!(names.contains(&"transformer.h.1.attn.c_attn.bias".to_string()));
    assert_eq!(names.last().unwrap(), "transformer.ln_f.bias");
}

#[test]
fn cached_decoding_matches_the_full_forward() {
    let dev = kiln_cpu::cpu();
    for cfg in [GptConfig::gpt2(50, 32, 32, 2, 4), GptConfig::llama(50, 32, 32, 2, 4, 2, 64)] {
        let m = Gpt::new(cfg, 3, &dev).unwrap();
        let ids: Vec<i64> = (0..12).map(|i| (i * 7 % 50) as i64).collect();
        let tokens = Tensor::from_vec(ids, &[1, 12], &dev).unwrap();
        let full = m.forward(&tokens, None, false, 0).unwrap();
        let mut caches = m.new_caches(1, 32, &dev).unwrap();
        let mut outs = vec![m.forward(&tokens.narrow(1, 0, 5).unwrap(), Some(&mut caches), false, 0).unwrap()];
        for t in 5..12 {
            outs.push(m.forward(&tokens.narrow(1, t, 1).unwrap(), Some(&mut caches), false, 0).unwrap());
        }
        let cached = Tensor::cat(&outs.iter().collect::<Vec<_>>(), 1).unwrap();
        assert!(max_diff(&full, &cached) < 1e-4, "{}", max_diff(&full, &cached));
    }
}

#[test]
fn a_tiny_model_learns_a_pattern() {
    let dev = kiln_cpu::cpu();
    let m = Gpt::new(GptConfig::gpt2(16, 32, 32, 2, 4), 5, &dev).unwrap();
    let seq: Vec<i64> = (0..33).map(|i| (i % 8) as i64).collect();
    let x = Tensor::from_vec(seq[..32].to_vec(), &[1, 32], &dev).unwrap();
    let y = Tensor::from_vec(seq[1..].to_vec(), &[1, 32], &dev).unwrap();
    let mut opt = AdamW::new(m.named_parameters(), AdamWConfig::default()).unwrap();
    let loss = |m: &Gpt| m.forward(&x, None, true, 0).unwrap().cross_entropy(&y, CrossEntropyOpts::default()).unwrap();
    let first = loss(&m).to_scalar().unwrap();
    assert!((first - 16f64.ln()).abs() < 0.3, "initial loss ≈ ln V, got {first}");
    for _ in 0..60 {
        opt.zero_grad();
        loss(&m).backward().unwrap();
        opt.step(3e-3).unwrap();
    }
    let last = loss(&m).to_scalar().unwrap();
    assert!(last < 0.2, "loss {first} → {last}");
}

#[test]
fn invalid_configs_and_inputs_are_errors() {
    let dev = kiln_cpu::cpu();
    let e = Gpt::new(GptConfig::gpt2(50, 32, 30, 2, 4), 0, &dev).unwrap_err();
    assert!(e.to_string().contains("n_head 4 does not divide n_embd 30"), "{e}");
    let e = Gpt::new(GptConfig::llama(50, 32, 32, 2, 4, 3, 64), 0, &dev).unwrap_err();
    assert!(e.to_string().contains("n_kv_head 3"), "{e}");
    let m = Gpt::new(GptConfig::gpt2(50, 8, 16, 1, 2), 0, &dev).unwrap();
    let long = Tensor::from_vec(vec![1i64; 9], &[1, 9], &dev).unwrap();
    assert!(m.forward(&long, None, false, 0).is_err(), "longer than the context");
    let bad = Tensor::from_vec(vec![50i64], &[1, 1], &dev).unwrap();
    assert!(m.forward(&bad, None, false, 0).is_err(), "token id out of the vocabulary");
    let cfg: GptConfig = serde_json::from_str(&serde_json::to_string(&GptConfig::gpt2_small()).unwrap()).unwrap();
    assert_eq!(cfg, GptConfig::gpt2_small());
}

/// The traced forward (explicit attention) gives the fused forward's logits; its attention rows
/// are causal distributions; the logit lens of the last residual is the model's output.
#[test]
fn traced_forward_matches_and_exposes_attention() {
    let dev = kiln_cpu::cpu();
    let mistral = GptConfig { sliding_window: Some(4), ..GptConfig::llama(50, 32, 32, 2, 4, 2, 64) };
    for cfg in [GptConfig::gpt2(50, 32, 32, 2, 4), GptConfig::llama(50, 32, 32, 2, 4, 2, 64), mistral] {
        let model = Gpt::new(cfg.clone(), 9, &dev).unwrap();
        let ids: Vec<u32> = (0..11).map(|i| (i * 7 % 50) as u32).collect();
        let trace = model.trace(&ids).unwrap();
        let x = Tensor::from_vec(ids.iter().map(|&t| t as i64).collect(), &[1, 11], &dev).unwrap();
        let want = kiln_core::no_grad(|| model.forward(&x, None, false, 0)).unwrap().reshape(&[11, 50]).unwrap();
        assert!(max_diff(&trace.logits, &want) < 1e-4, "{:?}", cfg.position);
        assert_eq!(trace.residual.len(), 3);
        assert_eq!(trace.attention.len(), 2);
        let lens = model.logit_lens(&trace.residual[2]).unwrap();
        assert!(max_diff(&lens, &want) < 1e-4);
        let a = trace.attention[1].to_vec::<f32>().unwrap(); // (H,T,T)
        for (r, row) in a.chunks(11).enumerate() {
            let i = r % 11;
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert!(row[i + 1..].iter().all(|&p| p == 0.0), "row {i} attends to the future");
            if let Some(w) = cfg.sliding_window {
                assert!(row[..(i + 1).saturating_sub(w)].iter().all(|&p| p == 0.0), "row {i} sees past the window");
            }
        }
    }
    let model = Gpt::new(GptConfig::gpt2(50, 8, 16, 1, 2), 0, &dev).unwrap();
    assert!(model.trace(&[]).is_err());
    assert!(model.trace(&[1; 9]).is_err());
}

/// A sliding-window model decoding through rolling caches much smaller than the sequence (they
/// drop keys and move the last w − 1 to the front many times) gives the full forward's logits at
/// every position, token by token and in chunks; rolled-back positions are refused.
#[test]
fn rolling_caches_match_the_full_forward() {
    use kiln_nn::attention::KvCache;
    let dev = kiln_cpu::cpu();
    let (w, t) = (5, 40);
    let cfg = GptConfig { sliding_window: Some(w), ..GptConfig::llama(50, 64, 32, 2, 4, 2, 64) };
    let model = Gpt::new(cfg.clone(), 3, &dev).unwrap();
    let ids: Vec<i64> = (0..t).map(|i| (i * 11 % 50) as i64).collect();
    let x = Tensor::from_vec(ids.clone(), &[1, t], &dev).unwrap();
    let want = kiln_core::no_grad(|| model.forward(&x, None, false, 0)).unwrap().reshape(&[t, 50]).unwrap();
    let want = want.to_vec::<f32>().unwrap();
    for (chunk, cap) in [(1, w + 1), (3, w + 4), (7, 2 * w + 7)] {
        let mut caches: Vec<KvCache> = (0..cfg.n_layer)
            .map(|_| {
                KvCache::new(1, cfg.n_kv_head, cap, cfg.head_dim(), kiln_core::DType::F32, &dev).unwrap().with_window(w)
            })
            .collect();
        let mut got = Vec::new();
        for s in (0..t).step_by(chunk) {
            let n = chunk.min(t - s);
            let xs = Tensor::from_vec(ids[s..s + n].to_vec(), &[1, n], &dev).unwrap();
            let y = kiln_core::no_grad(|| model.forward(&xs, Some(&mut caches), false, 0)).unwrap();
            got.extend(y.to_vec::<f32>().unwrap());
        }
        assert_eq!(caches[0].position(), t);
        assert!(caches[0].len() < t, "the buffer rolled");
        let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(err < 1e-4, "chunks of {chunk}, capacity {cap}: max error {err}");
        assert!(caches[0].truncate(1).is_err(), "positions before the buffer cannot be restored");
    }
    // new_caches gives a windowed model rolling buffers: appends past the capacity roll
    let mut caches = model.new_caches(1, w + 2, &dev).unwrap();
    let xs = Tensor::from_vec(ids.clone(), &[1, t], &dev).unwrap();
    for s in 0..t {
        kiln_core::no_grad(|| model.forward(&xs.narrow(1, s, 1)?, Some(&mut caches), false, 0)).unwrap();
    }
    assert_eq!((caches[0].position(), caches[0].max_len()), (t, w + 2));
}
