//! Continuous batching against one-at-a-time generation: every request generates exactly what
//! `generate_until` generates alone — greedy and seeded sampling, with chunked prefill, a pool so
//! small that sequences are preempted and recomputed, prefix caching on and off, f16 KV — and
//! no block leaks.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::DType;
use kiln_infer::{generate_until, BatchEngine, BatchRequest, FinishReason, Sampler, SchedulerConfig, StepEvent};
use kiln_models::gpt::{Gpt, GptConfig};

fn requests(n: usize, vocab: u32) -> Vec<BatchRequest> {
    (0..n)
        .map(|i| {
            // Prompts share a 12-token prefix (prefix-cache hits) and differ in length.
            let prompt: Vec<u32> = (0..12)
                .map(|j| (j * 5 + 1) % vocab)
                .chain((0..(3 + 7 * i % 19) as u32).map(|j| (j * 11 + i as u32) % vocab))
                .collect();
            let sampler = if i % 2 == 0 {
                Sampler { temperature: 0.0, ..Sampler::default() }
            } else {
                Sampler {
                    temperature: 0.9,
                    top_k: 20,
                    seed: 100 + i as u64,
                    repetition_penalty: 1.1,
                    ..Sampler::default()
                }
            };
            BatchRequest {
                prompt,
                max_new: 6 + 5 * (i % 4),
                sampler,
                stop: vec![],
                constraint: None,
                logprobs: None,
                prompt_logprobs: None,
            }
        })
        .collect()
}

fn alone(model: &Gpt, reqs: &[BatchRequest]) -> Vec<Vec<u32>> {
    let dev = kiln_cpu::cpu();
    reqs.iter()
        .map(|r| generate_until(model, &r.prompt, r.max_new, &r.sampler, &r.stop, &dev, |_| Ok(())).unwrap())
        .collect()
}

#[test]
fn batched_generation_equals_generating_each_request_alone() {
    let dev = kiln_cpu::cpu();
    for cfg in [GptConfig::gpt2(64, 96, 32, 2, 4), GptConfig::llama(64, 96, 32, 2, 4, 2, 64)] {
        let model = Gpt::new(cfg, 11, &dev).unwrap();
        let reqs = requests(10, 64);
        let want = alone(&model, &reqs);
        let base = SchedulerConfig { num_blocks: 64, block_size: 4, ..SchedulerConfig::default() };
        for (what, cfg) in [
            ("roomy", base),
            ("no prefix caching", SchedulerConfig { prefix_caching: false, ..base }),
            ("chunked prefill", SchedulerConfig { max_tokens_per_step: 7, ..base }),
            ("preemption", SchedulerConfig { num_blocks: 14, ..base }),
            ("few sequences", SchedulerConfig { max_num_seqs: 3, ..base }),
        ] {
            let mut engine = BatchEngine::new(&model, cfg, &dev).unwrap();
            let got = engine.run_all(reqs.clone()).unwrap();
            assert_eq!(got, want, "{what}");
            let st = engine.stats();
            assert_eq!(engine.cache().blocks_in_use(), 0, "{what}: blocks leaked");
            assert_eq!(st.sampled_tokens as usize, want.iter().map(Vec::len).sum::<usize>(), "{what}");
            match what {
                "roomy" => {
                    assert!(st.prefix_hit_tokens >= 8 * 9, "{what}: {st:?}");
                    assert!(st.steps < 40, "{what}: sequences were not batched: {st:?}");
                }
                "no prefix caching" => assert_eq!(st.prefix_hit_tokens, 0),
                "preemption" => assert!(st.preemptions > 0, "{what}: the small pool never preempted: {st:?}"),
                _ => {}
            }
        }
        // f16 keys and values: the same greedy tokens up to rounding is not guaranteed, so only
        // check that it runs to completion with the same lengths and frees everything.
        let mut engine = BatchEngine::new(
            &model,
            SchedulerConfig { kv_dtype: DType::F16, num_blocks: 64, block_size: 4, ..base },
            &dev,
        )
        .unwrap();
        let got = engine.run_all(reqs.clone()).unwrap();
        assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), want.iter().map(Vec::len).collect::<Vec<_>>());
        assert_eq!(engine.cache().blocks_in_use(), 0);
    }
}

#[test]
fn stop_tokens_abort_and_bad_requests() {
    let dev = kiln_cpu::cpu();
    let model = Gpt::new(GptConfig::gpt2(32, 40, 16, 1, 2), 2, &dev).unwrap();
    let greedy = Sampler { temperature: 0.0, ..Sampler::default() };
    let prompt = vec![1, 2, 3];
    let free = generate_until(&model, &prompt, 5, &greedy, &[], &dev, |_| Ok(())).unwrap();
    let mut engine =
        BatchEngine::new(&model, SchedulerConfig { num_blocks: 32, block_size: 4, ..Default::default() }, &dev)
            .unwrap();
    // Stopping on the third generated token: three tokens, then Finished(Stop).
    let a = engine
        .add(BatchRequest {
            prompt: prompt.clone(),
            max_new: 5,
            sampler: greedy,
            stop: vec![free[2]],
            constraint: None,
            logprobs: None,
            prompt_logprobs: None,
        })
        .unwrap();
    let b = engine
        .add(BatchRequest {
            prompt: prompt.clone(),
            max_new: 30,
            sampler: greedy,
            stop: vec![],
            constraint: None,
            logprobs: None,
            prompt_logprobs: None,
        })
        .unwrap();
    let mut events = vec![];
    for _ in 0..3 {
        events.extend(engine.step().unwrap());
    }
    let a_tokens: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            StepEvent::Token { id, token, .. } if *id == a => Some(*token),
            _ => None,
        })
        .collect();
    let first_stop = free.iter().position(|&t| t == free[2]).unwrap();
    assert_eq!(a_tokens, free[..=first_stop].to_vec());
    assert!(events.contains(&StepEvent::Finished { id: a, reason: FinishReason::Stop }));
    // Aborting a running sequence frees its blocks at once.
    assert!(engine.cache().blocks_in_use() > 0);
    assert!(engine.abort(b));
    assert!(!engine.abort(b), "a second abort finds nothing");
    assert_eq!(engine.cache().blocks_in_use(), 0);
    assert!(!engine.has_work());
    // The context bounds a sequence: it finishes with Length at n_positions.
    let id = engine
        .add(BatchRequest {
            prompt: vec![1; 36],
            max_new: 100,
            sampler: greedy,
            stop: vec![],
            constraint: None,
            logprobs: None,
            prompt_logprobs: None,
        })
        .unwrap();
    let events: Vec<StepEvent> = (0..10).flat_map(|_| engine.step().unwrap()).collect();
    assert_eq!(events.iter().filter(|e| matches!(e, StepEvent::Token { .. })).count(), 4);
    assert_eq!(events.last(), Some(&StepEvent::Finished { id, reason: FinishReason::Length }));
    // Requests that can never run are refused up front.
    let bad = |prompt: Vec<u32>, max_new: usize, sampler: Sampler| BatchRequest {
        prompt,
        max_new,
        sampler,
        stop: vec![],
        constraint: None,
        logprobs: None,
        prompt_logprobs: None,
    };
    assert!(engine.add(bad(vec![], 4, greedy)).is_err(), "empty prompt");
    assert!(engine.add(bad(vec![1; 40], 4, greedy)).is_err(), "prompt fills the context");
    assert!(engine.add(bad(vec![99], 4, greedy)).is_err(), "token outside the vocabulary");
    assert!(engine.add(bad(vec![1], 4, Sampler { top_p: 0.0, ..greedy })).is_err(), "bad sampler");
    let mut tiny =
        BatchEngine::new(&model, SchedulerConfig { num_blocks: 2, block_size: 4, ..Default::default() }, &dev).unwrap();
    assert!(tiny.add(bad(vec![1; 5], 10, greedy)).is_err(), "needs more blocks than the pool has");
    assert!(BatchEngine::new(&model, SchedulerConfig { max_num_seqs: 0, ..Default::default() }, &dev).is_err());
}

/// Constrained sequences in a batch generate what `generate_constrained` generates alone, and a
/// stop token is allowed only once the text is a whole match.
#[test]
fn constrained_sequences_in_a_batch_match_constrained_generation_alone() {
    use kiln_infer::{generate_constrained, RegexConstraint};
    use std::sync::Arc;
    let dev = kiln_cpu::cpu();
    let model = Gpt::new(GptConfig::llama(40, 64, 32, 2, 4, 2, 64), 4, &dev).unwrap();
    // Token i spells one byte: digits, then letters; 39 is the end-of-sequence token.
    let bytes: Vec<Option<Vec<u8>>> = (0..40u8)
        .map(|i| match i {
            0..=9 => Some(vec![b'0' + i]),
            10..=35 => Some(vec![b'a' + i - 10]),
            36 => Some(b"{".to_vec()),
            37 => Some(b"}".to_vec()),
            38 => Some(b"\"".to_vec()),
            _ => None,
        })
        .collect();
    let eos = 39;
    let patterns = [r"[a-e]{2,6}[0-9]", r"\{[0-9]{1,3}\}", r"(ab|cd)+"];
    let mut reqs = vec![];
    let mut want = vec![];
    for (i, p) in patterns.iter().enumerate() {
        let c = Arc::new(RegexConstraint::new(p, bytes.clone()).unwrap());
        for (j, temperature) in [0.0, 1.0].into_iter().enumerate() {
            let sampler = Sampler { temperature, seed: (i * 7 + j) as u64, ..Sampler::default() };
            let prompt: Vec<u32> = (0..3 + i as u32).map(|t| (t * 5 + j as u32) % 39).collect();
            let (alone, _) =
                generate_constrained(&model, &prompt, 12, &sampler, &c, Some(eos), &dev, |_| Ok(())).unwrap();
            want.push(alone);
            reqs.push(BatchRequest {
                prompt,
                max_new: 12,
                sampler,
                stop: vec![eos],
                constraint: Some(c.clone()),
                logprobs: None,
                prompt_logprobs: None,
            });
        }
    }
    let mut engine =
        BatchEngine::new(&model, SchedulerConfig { num_blocks: 32, block_size: 4, ..Default::default() }, &dev)
            .unwrap();
    let got = engine.run_all(reqs).unwrap();
    for ((g, w), p) in got.iter().zip(&want).zip(patterns.iter().flat_map(|p| [p, p])) {
        let g: Vec<u32> = g.iter().copied().filter(|&t| t != eos).collect();
        assert_eq!(&g, w, "{p}");
        let text: Vec<u8> = g.iter().flat_map(|&t| bytes[t as usize].clone().unwrap()).collect();
        let re = regex_automata::meta::Regex::new(&format!("^(?:{p})")).unwrap();
        assert!(re.is_match(&text), "{p}: {:?}", String::from_utf8_lossy(&text));
    }
    assert_eq!(engine.cache().blocks_in_use(), 0);
}

/// Log-probabilities come from the raw logits at each sampled position: equal to a full
/// forward's log-softmax over prompt + generated tokens, the top list sorted, greedy's choice
/// its first entry.
#[test]
fn logprobs_match_the_full_forward() {
    use kiln_core::{no_grad, Tensor};
    let dev = kiln_cpu::cpu();
    let model = Gpt::new(GptConfig::llama(64, 96, 32, 2, 4, 2, 64), 3, &dev).unwrap();
    let mut engine =
        BatchEngine::new(&model, SchedulerConfig { num_blocks: 32, block_size: 4, ..Default::default() }, &dev)
            .unwrap();
    let prompt: Vec<u32> = (0..9).map(|i| (i * 7 + 2) % 64).collect();
    let greedy = Sampler { temperature: 0.0, ..Sampler::default() };
    let hot = Sampler { temperature: 1.3, seed: 5, ..Sampler::default() };
    for sampler in [greedy, hot] {
        let id = engine
            .add(BatchRequest {
                prompt: prompt.clone(),
                max_new: 6,
                sampler,
                stop: vec![],
                constraint: None,
                logprobs: Some(4),
                prompt_logprobs: None,
            })
            .unwrap();
        let mut got = vec![];
        while engine.has_work() {
            for e in engine.step().unwrap() {
                if let StepEvent::Token { id: i, token, logprobs } = e {
                    assert_eq!(i, id);
                    got.push((token, logprobs.unwrap()));
                }
            }
        }
        assert_eq!(got.len(), 6);
        let all: Vec<i64> = prompt.iter().chain(got.iter().map(|g| &g.0)).map(|&t| t as i64).collect();
        let x = Tensor::from_vec(all.clone(), &[1, all.len()], &dev).unwrap();
        let logits = no_grad(|| model.forward(&x, None, false, 0)).unwrap().to_vec::<f32>().unwrap();
        for (i, (token, lp)) in got.iter().enumerate() {
            assert_eq!(lp.token, *token);
            let row = &logits[(prompt.len() - 1 + i) * 64..(prompt.len() + i) * 64];
            let lse = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
            assert!((lp.logprob as f64 - (row[*token as usize] as f64 - lse)).abs() < 1e-4, "position {i}");
            assert_eq!(lp.top.len(), 4);
            assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
            if sampler.temperature == 0.0 {
                assert_eq!(lp.top[0], (*token, lp.logprob));
            }
        }
    }
}

/// Prompt log-probabilities: every prompt token after the first scored exactly once, in order,
/// equal to a full forward's log-softmax — with chunked prefill, with preemption, and when the
/// prompt's prefix blocks are in the cache (a scoring sequence recomputes them) — and
/// `max_new: 0` ends after the prompt without sampling.
#[test]
fn prompt_logprobs_score_every_prompt_token_once() {
    use kiln_core::{no_grad, Tensor};
    let dev = kiln_cpu::cpu();
    let model = Gpt::new(GptConfig::gpt2(64, 96, 32, 2, 4), 8, &dev).unwrap();
    let prompt: Vec<u32> = (0..23).map(|i| (i * 5 + 3) % 64).collect();
    let x = Tensor::from_vec(prompt.iter().map(|&t| t as i64).collect(), &[1, prompt.len()], &dev).unwrap();
    let full = no_grad(|| model.forward(&x, None, false, 0)).unwrap().to_vec::<f32>().unwrap();
    let want = |t: usize| {
        let row = &full[(t - 1) * 64..t * 64];
        let lse = row.iter().map(|&v| (v as f64).exp()).sum::<f64>().ln();
        row[prompt[t] as usize] as f64 - lse
    };
    let greedy = Sampler { temperature: 0.0, ..Sampler::default() };
    let req = |max_new: usize, scored: bool| BatchRequest {
        prompt: prompt.clone(),
        max_new,
        sampler: greedy,
        stop: vec![],
        constraint: None,
        logprobs: None,
        prompt_logprobs: scored.then_some(2),
    };
    let base = SchedulerConfig { num_blocks: 64, block_size: 4, ..SchedulerConfig::default() };
    for (what, cfg) in [
        ("roomy", base),
        ("chunked prefill", SchedulerConfig { max_tokens_per_step: 5, ..base }),
        ("preemption", SchedulerConfig { num_blocks: 9, ..base }),
    ] {
        let mut engine = BatchEngine::new(&model, cfg, &dev).unwrap();
        // A plain request first fills the prefix cache with the prompt's blocks.
        engine.run_all(vec![req(2, false)]).unwrap();
        let ids: Vec<u64> =
            [req(0, true), req(12, true), req(12, false)].into_iter().map(|r| engine.add(r).unwrap()).collect();
        let (mut scored, mut tokens, mut finished) = (vec![vec![]; 3], vec![0; 3], vec![None; 3]);
        while engine.has_work() {
            for e in engine.step().unwrap() {
                let at = |id: u64| ids.iter().position(|&i| i == id).unwrap();
                match e {
                    StepEvent::PromptLogprobs { id, first, logprobs } => {
                        let s: &mut Vec<(usize, f32)> = &mut scored[at(id)];
                        assert_eq!(first, s.len() + 1, "{what}: chunks arrive in order, once");
                        s.extend(logprobs.iter().enumerate().map(|(j, l)| (first + j, l.logprob)));
                        assert!(logprobs.iter().all(|l| l.top.len() == 2));
                    }
                    StepEvent::Token { id, .. } => tokens[at(id)] += 1,
                    StepEvent::Finished { id, reason } => finished[at(id)] = Some(reason),
                }
            }
        }
        for (k, s) in scored.iter().enumerate().take(2) {
            assert_eq!(s.len(), prompt.len() - 1, "{what}: request {k} scores tokens 1..");
            for &(t, lp) in s {
                assert!((lp as f64 - want(t)).abs() < 1e-4, "{what}: token {t}");
            }
        }
        assert!(scored[2].is_empty(), "{what}: not asked for");
        assert_eq!(tokens, vec![0, 12, 12], "{what}");
        assert_eq!(finished[0], Some(FinishReason::Length), "{what}");
        assert_eq!(engine.cache().blocks_in_use(), 0, "{what}: blocks leaked");
    }
}

/// A sliding-window model (window 6): batched generation over the paged cache — which releases
/// the blocks that leave the window — equals generating each request alone, in a pool too small
/// to hold the sequences' whole contexts.
#[test]
fn sliding_window_sequences_hold_only_their_window() {
    let dev = kiln_cpu::cpu();
    let cfg = GptConfig { sliding_window: Some(6), ..GptConfig::llama(64, 96, 32, 2, 4, 2, 64) };
    let model = Gpt::new(cfg, 5, &dev).unwrap();
    let reqs: Vec<BatchRequest> = requests(6, 64)
        .into_iter()
        .map(|mut r| {
            r.max_new = 40;
            r
        })
        .collect();
    let want = alone(&model, &reqs);
    // 6 sequences of up to 70 tokens would need 6 × 18 blocks of 4 without the window.
    let cfg = SchedulerConfig { num_blocks: 40, block_size: 4, max_tokens_per_step: 8, ..SchedulerConfig::default() };
    let mut engine = BatchEngine::new(&model, cfg, &dev).unwrap();
    let ids: Vec<u64> = reqs.iter().map(|r| engine.add(r.clone()).unwrap()).collect();
    let mut got = vec![vec![]; ids.len()];
    let mut peak = 0;
    while engine.has_work() {
        for e in engine.step().unwrap() {
            if let StepEvent::Token { id, token, .. } = e {
                got[(id - ids[0]) as usize].push(token);
            }
        }
        peak = peak.max(engine.cache().blocks_in_use());
    }
    assert_eq!(got, want);
    assert_eq!(engine.stats().preemptions, 0, "the windows fit the pool");
    assert!(peak <= 6 * 5, "at most (6 + 1) / 4 + 2 blocks per sequence; peak {peak}");
    assert_eq!(engine.cache().blocks_in_use(), 0);
}
