//! Sampling rules and cached generation against uncached greedy decoding.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::Tensor;
use kiln_infer::{generate, Sampler};
use kiln_models::gpt::{Gpt, GptConfig};

#[test]
fn sampler_rules() {
    let logits = [1.0f32, 3.0, 2.0, -1.0];
    let greedy = Sampler { temperature: 0.0, ..Default::default() };
    assert_eq!(greedy.sample(&logits, 0).unwrap(), 1);
    let top1 = Sampler { top_k: 1, ..Default::default() };
    assert!((0..50).all(|i| top1.sample(&logits, i).unwrap() == 1));
    let top2 = Sampler { top_k: 2, seed: 3, ..Default::default() };
    let picks: Vec<u32> = (0..200).map(|i| top2.sample(&logits, i).unwrap()).collect();
    assert!(picks.iter().all(|&t| t == 1 || t == 2) && picks.contains(&2));
    // top-p 0.5: token 1 alone holds > 50 % of the mass.
    let nucleus = Sampler { top_p: 0.5, ..Default::default() };
    assert!((0..50).all(|i| nucleus.sample(&logits, i).unwrap() == 1));
    // Frequencies follow the softmax at temperature 1.
    let s = Sampler::default();
    let n = 20_000;
    let ones = (0..n).filter(|&i| s.sample(&logits, i).unwrap() == 1).count() as f64 / n as f64;
    let z: f64 = logits.iter().map(|&l| (l as f64).exp()).sum();
    assert!((ones - 3f64.exp() / z).abs() < 0.02, "{ones}");
    assert!(Sampler { top_p: 0.0, ..Default::default() }.sample(&logits, 0).is_err());
}

#[test]
fn cached_greedy_generation_matches_recomputing_everything() {
    let dev = kiln_cpu::cpu();
    let m = Gpt::new(GptConfig::gpt2(30, 24, 32, 2, 4), 9, &dev).unwrap();
    let prompt = [3u32, 7, 1];
    let greedy = Sampler { temperature: 0.0, ..Default::default() };
    let mut streamed = vec![];
    let fast = generate(&m, &prompt, 10, &greedy, &dev, |t| {
        streamed.push(t);
        Ok(())
    })
    .unwrap();
    assert_eq!(fast, streamed);
    // Uncached: run the whole sequence each step.
    let mut seq: Vec<i64> = prompt.iter().map(|&t| t as i64).collect();
    for _ in 0..10 {
        let x = Tensor::from_vec(seq.clone(), &[1, seq.len()], &dev).unwrap();
        let logits = m.forward(&x, None, false, 0).unwrap();
        let last = logits.narrow(1, seq.len() - 1, 1).unwrap().to_vec::<f32>().unwrap();
        seq.push(greedy.sample(&last, 0).unwrap() as i64);
    }
    let slow: Vec<u32> = seq[3..].iter().map(|&t| t as u32).collect();
    assert_eq!(fast, slow);
    // Past the context of 24 the window slides instead of failing.
    let long = generate(&m, &prompt, 100, &greedy, &dev, |_| Ok(())).unwrap();
    assert_eq!(long.len(), 100);
    assert_eq!(&long[..10], &fast[..]);
    assert!(generate(&m, &[], 5, &greedy, &dev, |_| Ok(())).is_err());
}

/// Penalties and min-p on hand-made logits: each one changes the pick exactly as its formula says.
#[test]
fn penalties_and_min_p() {
    let logits = [2.0f32, 1.9, -1.0, 0.5];
    let greedy = Sampler { temperature: 0.0, ..Default::default() };
    // no penalties: token 0
    assert_eq!(greedy.sample_in_context(&logits, &[0, 0, 3], 1, 0).unwrap(), 0);
    // repetition 1.2 over the context {0, 3}: 2.0/1.2 = 1.67 < 1.9 → token 1
    let rep = Sampler { repetition_penalty: 1.2, ..greedy };
    assert_eq!(rep.sample_in_context(&logits, &[0, 3], 2, 0).unwrap(), 1);
    // presence 0.05 counts only generated tokens (from index 1): token 0 appears once there → 1.95 > 1.9 → 0
    let pres = Sampler { presence_penalty: 0.05, ..greedy };
    assert_eq!(pres.sample_in_context(&logits, &[1, 0], 1, 0).unwrap(), 0);
    // frequency 0.05 × 3 occurrences of token 0 → 1.85 < 1.9 → token 1; prompt occurrences don't count
    let freq = Sampler { frequency_penalty: 0.05, ..greedy };
    assert_eq!(freq.sample_in_context(&logits, &[5, 0, 0, 0], 1, 0).unwrap(), 1);
    assert_eq!(freq.sample_in_context(&logits, &[0, 0, 0, 5], 3, 0).unwrap(), 0);
    // negative logits are multiplied by the repetition penalty (pushed further down)
    let neg = [-1.0f32, -1.1];
    assert_eq!(Sampler { repetition_penalty: 1.2, ..greedy }.sample_in_context(&neg, &[0], 1, 0).unwrap(), 1);
    // min-p 0.5 at temperature 1: only tokens with p ≥ 0.5·p_max survive ({0, 1}); token 3 and 2 never drawn
    let minp = Sampler { min_p: 0.5, seed: 9, ..Default::default() };
    let mut seen = [0usize; 4];
    for d in 0..400 {
        seen[minp.sample(&logits, d).unwrap() as usize] += 1;
    }
    assert!(seen[2] == 0 && seen[3] == 0 && seen[0] > 100 && seen[1] > 100, "{seen:?}");
    // bad settings are errors
    for bad in [
        Sampler { min_p: 1.5, ..Default::default() },
        Sampler { repetition_penalty: 0.0, ..Default::default() },
        Sampler { presence_penalty: f64::NAN, ..Default::default() },
    ] {
        assert!(bad.sample_in_context(&logits, &[0], 0, 0).is_err(), "{bad:?}");
    }
}

#[test]
fn zero_probability_tokens_are_never_drawn() {
    // seed 0, draw 0 gives u = 0 exactly: the draw must still skip the impossible tokens
    let mut logits = vec![f32::NEG_INFINITY; 10];
    logits[3] = 0.5;
    logits[7] = -0.2;
    for seed in 0..50 {
        let s = Sampler { temperature: 1.5, seed, ..Default::default() };
        for draw in 0..20 {
            let t = s.sample(&logits, draw).unwrap();
            assert!(t == 3 || t == 7, "seed {seed} draw {draw}: {t}");
        }
    }
}

/// A sliding-window model's prompt longer than `PREFILL_CHUNK` goes through its rolling caches in
/// pieces, and greedy generation equals the argmax of full (uncached) forwards.
#[test]
fn sliding_window_long_prompt_generates_like_the_full_forward() {
    let dev = kiln_cpu::cpu();
    let cfg = GptConfig { sliding_window: Some(8), ..GptConfig::llama(30, 1024, 16, 1, 2, 1, 32) };
    let model = Gpt::new(cfg, 5, &dev).unwrap();
    let prompt: Vec<u32> = (0..kiln_models::gpt::PREFILL_CHUNK as u32 + 150).map(|i| (i * 7 + i / 5) % 30).collect();
    let greedy = Sampler { temperature: 0.0, ..Sampler::default() };
    let got = generate(&model, &prompt, 4, &greedy, &dev, |_| Ok(())).unwrap();
    let mut seq = prompt.clone();
    for &tok in &got {
        let x = Tensor::from_vec(seq.iter().map(|&t| t as i64).collect(), &[1, seq.len()], &dev).unwrap();
        let logits = kiln_core::no_grad(|| model.forward_last(&x, None)).unwrap().to_vec::<f32>().unwrap();
        let best = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
        assert_eq!(tok, best, "greedy token after {} tokens", seq.len());
        seq.push(tok);
    }
}
