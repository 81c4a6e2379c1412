//! Beam search against greedy decoding, exhaustive search, and its own scoring rule; the KV
//! cache's row gather that it relies on.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::{no_grad, DType, Tensor};
use kiln_infer::{beam_search, generate_until, BeamSearch, Sampler};
use kiln_models::gpt::{Gpt, GptConfig};
use kiln_nn::attention::KvCache;

/// log P(seq | prompt) by one uncached forward pass over prompt + seq.
fn logprob(m: &Gpt, prompt: &[u32], seq: &[u32]) -> f64 {
    let dev = kiln_cpu::cpu();
    let all: Vec<i64> = prompt.iter().chain(seq).map(|&t| t as i64).collect();
    let x = Tensor::from_vec(all.clone(), &[1, all.len()], &dev).unwrap();
    let logits = no_grad(|| m.forward(&x, None, false, 0)).unwrap().to_vec::<f32>().unwrap();
    let v = m.cfg.vocab_size;
    (0..seq.len())
        .map(|i| {
            let row = &logits[(prompt.len() - 1 + i) * v..][..v];
            let mx = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
            let lse = mx + row.iter().map(|&x| (x as f64 - mx).exp()).sum::<f64>().ln();
            row[seq[i] as usize] as f64 - lse
        })
        .sum()
}

fn cfg(beams: usize, max_new: usize) -> BeamSearch {
    BeamSearch { beams, length_penalty: 0.0, early_stopping: false, max_new }
}

#[test]
fn one_beam_is_greedy() {
    let dev = kiln_cpu::cpu();
    let m = Gpt::new(GptConfig::llama(30, 32, 32, 2, 4, 2, 64), 3, &dev).unwrap();
    let greedy = Sampler { temperature: 0.0, ..Default::default() };
    for prompt in [vec![1u32, 2, 3], vec![7]] {
        let want = generate_until(&m, &prompt, 12, &greedy, &[], &dev, |_| Ok(())).unwrap();
        let got = beam_search(&m, &prompt, &cfg(1, 12), &[], &dev).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].tokens, want);
        assert!((got[0].logprob - logprob(&m, &prompt, &want)).abs() < 1e-4);
    }
}

#[test]
fn enough_beams_find_the_most_probable_sequence() {
    let dev = kiln_cpu::cpu();
    let v = 5;
    let m = Gpt::new(GptConfig::gpt2(v, 16, 16, 1, 2), 8, &dev).unwrap();
    let prompt = [2u32, 4];
    // exhaustive: all 125 continuations of length 3
    let mut all: Vec<(f64, Vec<u32>)> = Vec::new();
    for s in 0..v * v * v {
        let seq = vec![(s / 25) as u32, (s / 5 % 5) as u32, (s % 5) as u32];
        all.push((logprob(&m, &prompt, &seq), seq));
    }
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    // 25 beams keep every length-2 prefix, so the search is exact
    let got = beam_search(&m, &prompt, &cfg(25, 3), &[], &dev).unwrap();
    assert_eq!(got.len(), 25);
    for (h, (lp, seq)) in got.iter().zip(&all) {
        assert_eq!(&h.tokens, seq);
        assert!((h.logprob - lp).abs() < 1e-4 && (h.score - h.logprob).abs() < 1e-12);
    }
    // fewer beams: best-first, each hypothesis scored by its true log-probability
    let few = beam_search(&m, &prompt, &cfg(3, 3), &[], &dev).unwrap();
    assert_eq!(few.len(), 3);
    assert!(few.windows(2).all(|w| w[0].score >= w[1].score));
    assert!(few.iter().all(|h| (h.logprob - logprob(&m, &prompt, &h.tokens)).abs() < 1e-4));
    // (log-probabilities from the engine's f32 log_softmax: equal to the f64 recomputation within 1e-4)
    assert!(few[0].logprob <= all[0].0 + 1e-4);
}

#[test]
fn stop_tokens_and_the_gnmt_length_penalty() {
    let dev = kiln_cpu::cpu();
    let m = Gpt::new(GptConfig::gpt2(12, 32, 16, 1, 2), 5, &dev).unwrap();
    let prompt = [1u32];
    let stop = [3u32, 7];
    for (alpha, early) in [(0.0, false), (1.0, false), (0.6, true)] {
        let c = BeamSearch { beams: 4, length_penalty: alpha, early_stopping: early, max_new: 8 };
        let hyps = beam_search(&m, &prompt, &c, &stop, &dev).unwrap();
        assert!(!hyps.is_empty() && hyps.len() <= 4);
        assert!(hyps.windows(2).all(|w| w[0].score >= w[1].score));
        for h in &hyps {
            let ended = h.tokens.last().is_some_and(|t| stop.contains(t));
            // a hypothesis ends at its first stop token, or runs to max_new
            assert!(ended || h.tokens.len() == 8, "{h:?}");
            assert!(h.tokens[..h.tokens.len() - 1].iter().all(|t| !stop.contains(t)), "{h:?}");
            assert!((h.logprob - logprob(&m, &prompt, &h.tokens)).abs() < 1e-4);
            let lp = ((5.0 + h.tokens.len() as f64) / 6.0).powf(alpha);
            assert!((h.score - h.logprob / lp).abs() < 1e-9);
        }
    }
    // bad settings are errors
    assert!(beam_search(&m, &prompt, &cfg(0, 4), &[], &dev).is_err());
    assert!(beam_search(&m, &[], &cfg(2, 4), &[], &dev).is_err());
    assert!(beam_search(&m, &prompt, &cfg(2, 40), &[], &dev).unwrap_err().to_string().contains("context"));
}

#[test]
fn kv_cache_rows_follow_the_beams() {
    let dev = kiln_cpu::cpu();
    let mut c = KvCache::new(2, 1, 4, 2, DType::F32, &dev).unwrap();
    // row b, token t, dim d holds 100b + 10t + d
    let fill = |base: f32| {
        Tensor::from_vec(
            (0..2 * 3 * 2).map(|i| base + (i / 6 * 100 + i / 2 % 3 * 10 + i % 2) as f32).collect::<Vec<f32>>(),
            &[2, 1, 3, 2],
            &dev,
        )
        .unwrap()
    };
    c.append(&fill(0.0), &fill(0.5)).unwrap();
    c.select_rows(&[1, 1, 0]).unwrap();
    assert_eq!(c.len(), 3);
    assert_eq!(c.max_len(), 4);
    let (k, v) = c
        .append(
            &Tensor::zeros(&[3, 1, 1, 2], DType::F32, &dev).unwrap(),
            &Tensor::zeros(&[3, 1, 1, 2], DType::F32, &dev).unwrap(),
        )
        .unwrap();
    let (k, v) = (k.contiguous().unwrap().to_vec::<f32>().unwrap(), v.contiguous().unwrap().to_vec::<f32>().unwrap());
    for (b, src) in [1usize, 1, 0].iter().enumerate() {
        for t in 0..3 {
            for d in 0..2 {
                let want = (src * 100 + t * 10 + d) as f32;
                assert_eq!(k[(b * 4 + t) * 2 + d], want);
                assert_eq!(v[(b * 4 + t) * 2 + d], want + 0.5);
            }
        }
        assert_eq!(&k[(b * 4 + 3) * 2..][..2], &[0.0, 0.0]);
    }
    assert!(c.select_rows(&[3]).is_err());
    assert!(c.truncate(5).is_err());
    c.truncate(1).unwrap();
    assert_eq!(c.len(), 1);
}
