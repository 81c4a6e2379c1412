//! Batched decoding over the paged KV cache against the plain full forward: ragged batches that
//! mix prefill chunks and decode tokens of several sequences, for GPT-2 (learned positions) and
//! LLaMA (RoPE, GQA); f16 caches; shared prefixes and forks; and the cache-size formula.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::{DType, Tensor};
use kiln_models::gpt::{Gpt, GptConfig};
use kiln_nn::attention::PagedKvCache;

fn ids(v: &[i64]) -> Tensor {
    Tensor::from_vec(v.to_vec(), &[v.len()], &kiln_cpu::cpu()).unwrap()
}

/// Logits (T, V) of every position of `seq` by the uncached forward.
fn full_logits(model: &Gpt, seq: &[u32]) -> Vec<Vec<f32>> {
    let x = Tensor::from_vec(seq.iter().map(|&t| t as i64).collect(), &[1, seq.len()], &kiln_cpu::cpu()).unwrap();
    let v = model.cfg.vocab_size;
    let all = kiln_core::no_grad(|| model.forward(&x, None, false, 0)).unwrap().to_vec::<f32>().unwrap();
    all.chunks(v).map(<[f32]>::to_vec).collect()
}

/// Runs one step: `items` are (sequence id, its tokens for this step); returns the logits of
/// each item's last token.
fn step(model: &Gpt, cache: &mut PagedKvCache, items: &[(u64, Vec<u32>)]) -> Vec<Vec<f32>> {
    let dev = kiln_cpu::cpu();
    for (id, toks) in items {
        assert!(cache.reserve(*id, toks.len()).unwrap(), "pool too small");
    }
    let plan: Vec<(u64, usize)> = items.iter().map(|(id, t)| (*id, t.len())).collect();
    let batch = cache.batch(&plan, &dev).unwrap();
    let flat: Vec<i64> = items.iter().flat_map(|(_, t)| t.iter().map(|&x| x as i64)).collect();
    let mut rows = vec![];
    let mut at = 0i64;
    for (_, t) in items {
        at += t.len() as i64;
        rows.push(at - 1);
    }
    let logits = model.forward_paged(&ids(&flat), &batch, cache, &ids(&rows)).unwrap();
    for (id, toks) in items {
        cache.commit(*id, toks).unwrap();
    }
    logits.to_vec::<f32>().unwrap().chunks(model.cfg.vocab_size).map(<[f32]>::to_vec).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn ragged_paged_batches_match_the_full_forward() {
    let dev = kiln_cpu::cpu();
    for cfg in [GptConfig::gpt2(50, 48, 32, 2, 4), GptConfig::llama(50, 48, 32, 2, 4, 2, 64)] {
        let model = Gpt::new(cfg.clone(), 3, &dev).unwrap();
        for (dtype, tol) in [(DType::F32, 1e-5), (DType::F16, 1e-4), (DType::U8, 2e-3)] {
            let mut cache = model.new_paged_cache(24, 4, dtype, false, &dev).unwrap();
            let seqs: Vec<Vec<u32>> =
                (0..3).map(|s| (0..20 + 5 * s).map(|i| ((i * 7 + s * 13 + 1) % 50) as u32).collect()).collect();
            let want: Vec<Vec<Vec<f32>>> = seqs.iter().map(|s| full_logits(&model, s)).collect();
            for id in 0..3u64 {
                assert_eq!(cache.add_sequence(id, &seqs[id as usize][..5]).unwrap(), 0);
            }
            // Step 1: sequence 0 prefills 5 tokens, sequence 1 a first chunk of 3, sequence 2
            // waits. Step 2: 0 decodes, 1 finishes its chunked prefill, 2 prefills 9.
            // Then all three decode together until each is done.
            let (mut done, mut worst) = ([0usize; 3], 0f32);
            let mut plan: Vec<Vec<(u64, usize)>> = vec![vec![(0, 5), (1, 3)], vec![(0, 1), (1, 2), (2, 9)]];
            plan.extend((0..16).map(|_| (0..3).map(|s| (s, 1)).collect()));
            for items in plan {
                let items: Vec<(u64, Vec<u32>)> = items
                    .into_iter()
                    .filter(|&(s, n)| done[s as usize] + n <= seqs[s as usize].len())
                    .map(|(s, n)| (s, seqs[s as usize][done[s as usize]..done[s as usize] + n].to_vec()))
                    .collect();
                let got = step(&model, &mut cache, &items);
                for ((s, toks), logits) in items.iter().zip(&got) {
                    let s = *s as usize;
                    done[s] += toks.len();
                    let d = max_diff(logits, &want[s][done[s] - 1]);
                    assert!(d < tol, "{:?} {dtype}: sequence {s} at {}: {d}", cfg.position, done[s]);
                    worst = worst.max(d);
                }
            }
            assert_eq!(done, [20, 21, 25]);
            println!("{:?} {dtype}: max |logit difference| {worst:.2e}", cfg.position);
            for id in 0..3 {
                cache.free(id);
            }
            assert_eq!(cache.blocks_in_use(), 0, "blocks leaked");
        }
    }
}

#[test]
fn prefix_caching_and_forks_reuse_blocks_without_changing_logits() {
    let dev = kiln_cpu::cpu();
    let model = Gpt::new(GptConfig::llama(40, 64, 32, 2, 4, 2, 64), 5, &dev).unwrap();
    let mut cache = model.new_paged_cache(16, 4, DType::F32, true, &dev).unwrap();
    let shared: Vec<u32> = (0..10).map(|i| (i * 3 % 40) as u32).collect();
    let a: Vec<u32> = shared.iter().copied().chain([7, 8]).collect();
    let b: Vec<u32> = shared.iter().copied().chain([9, 1, 2]).collect();
    assert_eq!(cache.add_sequence(1, &a).unwrap(), 0);
    step(&model, &mut cache, &[(1, a.clone())]);
    let used = cache.blocks_in_use();
    // b starts with a's first two full blocks (8 tokens): they are reused, not recomputed.
    let hit = cache.add_sequence(2, &b).unwrap();
    assert_eq!(hit, 8);
    assert_eq!(cache.blocks_in_use(), used, "shared blocks are not copies");
    let got = step(&model, &mut cache, &[(2, b[hit..].to_vec())]);
    assert!(max_diff(&got[0], full_logits(&model, &b).last().unwrap()) < 1e-4);
    // A fork shares a's partly filled last block; each branch's first write copies it.
    cache.fork(1, 3).unwrap();
    let (ga, gc) = (step(&model, &mut cache, &[(1, vec![5])]), step(&model, &mut cache, &[(3, vec![6])]));
    let with = |t: u32| a.iter().copied().chain([t]).collect::<Vec<_>>();
    assert!(max_diff(&ga[0], full_logits(&model, &with(5)).last().unwrap()) < 1e-4);
    assert!(max_diff(&gc[0], full_logits(&model, &with(6)).last().unwrap()) < 1e-4);
    // Freed prefixes stay cached: a new sequence with a's prompt hits them again.
    for id in [1, 2, 3] {
        cache.free(id);
    }
    assert_eq!(cache.blocks_in_use(), 0);
    assert_eq!(cache.add_sequence(4, &a).unwrap(), 8);
    cache.free(4);
    // Once the pool is needed for other work, cached prefixes are evicted, never lost blocks.
    cache.add_sequence(5, &[1]).unwrap();
    assert!(cache.reserve(5, 64).unwrap());
    assert_eq!(cache.blocks_available(), 0);
    assert!(!cache.reserve(5, 65).unwrap(), "over-reservation reports no room");
    cache.free(5);
    assert_eq!(cache.add_sequence(6, &a).unwrap(), 0, "evicted prefixes no longer match");
}

#[test]
fn cache_size_is_two_layers_tokens_heads_dim_bytes() {
    let dev = kiln_cpu::cpu();
    let model = Gpt::new(GptConfig::llama(40, 64, 48, 3, 6, 2, 64), 0, &dev).unwrap();
    for (dtype, bytes) in [(DType::F32, 4), (DType::F16, 2), (DType::BF16, 2)] {
        let cache = model.new_paged_cache(10, 16, dtype, false, &dev).unwrap();
        // 2 · layers · tokens · kv_heads · head_dim · bytes
        assert_eq!(cache.bytes(), 2 * 3 * (10 * 16) * 2 * 8 * bytes);
        assert_eq!(cache.bytes_per_token(), 2 * 3 * 2 * 8 * bytes);
    }
    // int8 rows: head_dim codes and a 4-byte scale per (token, head)
    let cache = model.new_paged_cache(10, 16, DType::U8, false, &dev).unwrap();
    assert_eq!(cache.bytes(), 2 * 3 * (10 * 16) * 2 * (8 + 4));
    assert_eq!(cache.bytes_per_token(), 2 * 3 * 2 * (8 + 4));
    assert!(model.new_paged_cache(10, 16, DType::I64, false, &dev).is_err());
    assert!(model.new_paged_cache(0, 16, DType::F32, false, &dev).is_err());
}

/// Blocks released behind a sliding window are not released twice (free, fork), and cannot be
/// truncated back into.
#[test]
fn released_window_blocks_are_accounted_once() {
    let dev = kiln_cpu::cpu();
    let model = Gpt::new(GptConfig::llama(40, 64, 48, 1, 6, 2, 64), 0, &dev).unwrap();
    let mut cache = model.new_paged_cache(10, 4, DType::F32, false, &dev).unwrap();
    let toks: Vec<u32> = (0..18).collect();
    cache.add_sequence(1, &[]).unwrap();
    assert!(cache.reserve(1, 18).unwrap());
    cache.commit(1, &toks).unwrap();
    assert_eq!(cache.blocks_in_use(), 5);
    assert_eq!(cache.release_before(1, 9).unwrap(), 2, "blocks 0 and 1 hold tokens 0..8");
    assert_eq!(cache.release_before(1, 9).unwrap(), 0, "already released");
    assert_eq!(cache.blocks_in_use(), 3);
    cache.fork(1, 2).unwrap();
    assert_eq!(cache.blocks_in_use(), 3, "the fork shares the live blocks only");
    assert!(cache.truncate(2, 7).is_err(), "tokens before 8 are gone");
    cache.truncate(2, 10).unwrap();
    cache.free(1);
    cache.free(2);
    assert_eq!(cache.blocks_in_use(), 0);
    assert_eq!(cache.blocks_available(), 10);
}
