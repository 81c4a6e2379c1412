//! Speculative decoding: the acceptance rule reproduces the target's distribution, greedy
//! speculative output equals the target's greedy output, and sampled speculative generations
//! follow the target model's own distribution over whole continuations.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::{no_grad, Tensor};
use kiln_infer::{accept_or_resample, generate_speculative, generate_until, Sampler};
use kiln_models::gpt::{Gpt, GptConfig};

/// splitmix64 as a uniform in [0, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Every observed frequency within 5 standard errors of its expected probability.
fn assert_follows(counts: &[usize], p: &[f64], what: &str) {
    let n: usize = counts.iter().sum();
    for (i, (&c, &pi)) in counts.iter().zip(p).enumerate() {
        let f = c as f64 / n as f64;
        let se = (pi * (1.0 - pi) / n as f64).sqrt();
        assert!(
            (f - pi).abs() <= 5.0 * se + 1e-12,
            "{what}: outcome {i}: frequency {f:.5} vs probability {pi:.5} (n = {n})"
        );
    }
}

#[test]
fn acceptance_rule_reproduces_the_target_distribution() {
    // q puts mass where p has none (token 4) and none where p has some (token 0)
    let p = [0.10, 0.35, 0.05, 0.50, 0.00];
    let q = [0.00, 0.20, 0.30, 0.30, 0.20];
    let mut rng = Rng(7);
    let n = 200_000;
    let mut counts = [0usize; 5];
    let mut kept = 0;
    for _ in 0..n {
        // x ~ q
        let mut u = rng.next();
        let x = q.iter().position(|&w| {
            u -= w;
            u < 0.0
        });
        let x = x.unwrap_or(3) as u32;
        let (y, k) = accept_or_resample(&p, &q, x, rng.next(), rng.next());
        counts[y as usize] += 1;
        kept += k as usize;
    }
    assert_follows(&counts, &p, "accept/resample");
    // acceptance probability = Σ min(p, q)
    let want: f64 = p.iter().zip(&q).map(|(a, b)| a.min(*b)).sum();
    let got = kept as f64 / n as f64;
    assert!((got - want).abs() < 0.005, "acceptance rate {got} vs Σ min(p, q) = {want}");
    // identical distributions: always kept
    assert!((0..5).all(|x| accept_or_resample(&p, &p, x, 0.999, 0.5).1 || p[x as usize] == 0.0));
}

fn models(vocab: usize) -> (Gpt, Gpt) {
    let dev = kiln_cpu::cpu();
    let target = Gpt::new(GptConfig::llama(vocab, 64, 32, 2, 4, 2, 64), 11, &dev).unwrap();
    let draft = Gpt::new(GptConfig::gpt2(vocab, 64, 16, 1, 2), 12, &dev).unwrap();
    (target, draft)
}

#[test]
fn greedy_speculative_equals_target_greedy() {
    let dev = kiln_cpu::cpu();
    let (target, draft) = models(40);
    let greedy = Sampler { temperature: 0.0, ..Default::default() };
    for (prompt, k) in [(vec![3u32, 9, 1], 1), (vec![5], 3), (vec![7, 7, 2, 30, 11], 4)] {
        let want = generate_until(&target, &prompt, 20, &greedy, &[], &dev, |_| Ok(())).unwrap();
        let mut streamed = vec![];
        let (got, stats) = generate_speculative(&target, &draft, &prompt, 20, k, &greedy, &[], &dev, |t| {
            streamed.push(t);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, want, "prompt {prompt:?}, k = {k}");
        assert_eq!(streamed, got);
        assert!(stats.target_passes <= 20 && stats.accepted <= stats.drafted, "{stats:?}");
        // the draft is the target itself: every drafted token is kept, k + 1 tokens per pass
        let (same, stats) =
            generate_speculative(&target, &target, &prompt, 20, k, &greedy, &[], &dev, |_| Ok(())).unwrap();
        assert_eq!(same, want);
        assert_eq!(stats.accepted, stats.drafted, "{stats:?}");
        assert_eq!(stats.target_passes, 20usize.div_ceil(k + 1));
    }
    // a stop token ends the generation after it is emitted
    let want = generate_until(&target, &[5], 20, &greedy, &[], &dev, |_| Ok(())).unwrap();
    let stop = want[4];
    let first = want.iter().position(|&t| t == stop).unwrap();
    let (got, _) = generate_speculative(&target, &draft, &[5], 20, 3, &greedy, &[stop], &dev, |_| Ok(())).unwrap();
    assert_eq!(got, want[..=first].to_vec());
}

#[test]
fn sampled_speculative_continuations_follow_the_target_model() {
    let dev = kiln_cpu::cpu();
    let v = 5;
    let (target, draft) = models(v);
    let prompt = [1u32, 3];
    let sampler = Sampler { temperature: 1.0, top_k: 4, ..Default::default() };
    // The target's exact distribution over two-token continuations: p(a)·p(b | a).
    let probs = |ids: &[u32]| -> Vec<f64> {
        let x = Tensor::from_vec(ids.iter().map(|&t| t as i64).collect(), &[1, ids.len()], &dev).unwrap();
        let logits = no_grad(|| target.forward_last(&x, None)).unwrap().to_vec::<f32>().unwrap();
        sampler.probs(&logits).unwrap()
    };
    let p1 = probs(&prompt);
    let mut joint = vec![0.0; v * v];
    for a in 0..v {
        if p1[a] > 0.0 {
            let p2 = probs(&[prompt[0], prompt[1], a as u32]);
            (0..v).for_each(|b| joint[a * v + b] = p1[a] * p2[b]);
        }
    }
    let n = 6000;
    let mut counts = vec![0usize; v * v];
    let mut drafted = 0;
    for seed in 0..n {
        let s = Sampler { seed, ..sampler };
        let (out, stats) = generate_speculative(&target, &draft, &prompt, 2, 2, &s, &[], &dev, |_| Ok(())).unwrap();
        counts[out[0] as usize * v + out[1] as usize] += 1;
        drafted += stats.drafted;
    }
    assert!(drafted >= n as usize * 2, "every run drafts at least its first round");
    assert_follows(&counts, &joint, "speculative continuations");
}

#[test]
fn bad_requests_are_errors() {
    let dev = kiln_cpu::cpu();
    let (target, draft) = models(40);
    let other = Gpt::new(GptConfig::gpt2(41, 64, 16, 1, 2), 1, &dev).unwrap();
    let s = Sampler::default();
    let run = |t: &Gpt, d: &Gpt, prompt: &[u32], max_new: usize, k: usize, s: &Sampler| {
        generate_speculative(t, d, prompt, max_new, k, s, &[], &dev, |_| Ok(())).map(|_| ()).unwrap_err().to_string()
    };
    assert!(run(&target, &other, &[1], 4, 2, &s).contains("vocabulary"));
    assert!(run(&target, &draft, &[], 4, 2, &s).contains("prompt"));
    assert!(run(&target, &draft, &[1], 4, 0, &s).contains("k ≥ 1"));
    assert!(run(&target, &draft, &[1], 70, 2, &s).contains("context"));
    let penalised = Sampler { repetition_penalty: 1.3, ..s };
    assert!(run(&target, &draft, &[1], 4, 2, &penalised).contains("penalties"));
}
