//! KV cache: the verified sizes, GQA/MQA savings, paged layouts, sliding windows against kiln's
//! paged cache.

use kiln_analysis::kv_cache::{kv_cache, kv_cache_bytes, max_decode_batch, max_kv_tokens, paged_kv_cache};
use kiln_analysis::{Arch, Dtype};

#[test]
fn verified_sizes() {
    let g = kv_cache(&Arch::preset("gpt2-small").unwrap(), 1024, 1, Dtype::F32).unwrap();
    assert_eq!(g.total, 75_497_472);
    assert_eq!(g.total, kv_cache_bytes(12, 1024, 12, 64, 1, 4).unwrap());
    let g3 = kv_cache(&Arch::preset("gpt3-175b").unwrap(), 2048, 1, Dtype::F16).unwrap();
    assert_eq!(g3.total, 9_663_676_416);
    // book eq. 12.94: GPT-2 fp16 costs 36,864 bytes per token
    let h = kv_cache(&Arch::preset("gpt2-small").unwrap(), 512, 1, Dtype::F16).unwrap();
    assert_eq!(h.per_token, 36_864);
    assert_eq!(h.total, 18_874_368);
    // batch scales linearly (eq. 12.100)
    assert_eq!(kv_cache(&Arch::preset("gpt3-175b").unwrap(), 2048, 8, Dtype::F16).unwrap().total, 8 * g3.total);
}

#[test]
fn gqa_and_mqa() {
    let s = kv_cache(&Arch::preset("smollm2-135m").unwrap(), 2048, 1, Dtype::F16).unwrap();
    assert_eq!(s.total, kv_cache_bytes(30, 2048, 3, 64, 1, 2).unwrap());
    assert_eq!(s.mha_total, 3 * s.total);
    let mut mqa = Arch::preset("llama-7b").unwrap();
    mqa.n_kv_heads = 1;
    let m = kv_cache(&mqa, 100, 2, Dtype::Bf16).unwrap();
    assert_eq!(m.mha_total, 32 * m.total);
    // quantized cache rows round to whole blocks: 128 elements of q8_0 = 4 blocks of 34 B
    let q = kv_cache(&mqa, 1, 1, Dtype::Q8_0).unwrap();
    assert_eq!(q.per_token_per_layer, 2 * 4 * 34);
}

#[test]
fn paged() {
    let a = Arch::preset("gpt2-small").unwrap();
    let per_token = kv_cache(&a, 1, 1, Dtype::F16).unwrap().per_token;
    let p = paged_kv_cache(&a, &[1, 16, 17, 40], 16, Dtype::F16).unwrap();
    assert_eq!(p.blocks, 1 + 1 + 2 + 3);
    assert_eq!(p.tokens, 74);
    assert_eq!(p.allocated, 7 * 16 * per_token);
    assert_eq!(p.used, 74 * per_token);
    assert_eq!(p.waste, (7 * 16 - 74) * per_token);
    assert!((p.waste_fraction - 38.0 / 112.0).abs() < 1e-12);
    // block size 1 wastes nothing
    assert_eq!(paged_kv_cache(&a, &[5, 9], 1, Dtype::F16).unwrap().waste, 0);
}

#[test]
fn what_fits() {
    let a = Arch::preset("llama-7b").unwrap();
    let per_seq = kv_cache(&a, 2048, 1, Dtype::F16).unwrap().total;
    let weights = 2 * kiln_analysis::num_params(&a).unwrap();
    let budget = 80u64 << 30;
    let b = max_decode_batch(&a, 2048, Dtype::Bf16, Dtype::F16, budget).unwrap().unwrap();
    assert!(weights + b * per_seq <= budget && weights + (b + 1) * per_seq > budget);
    assert_eq!(max_decode_batch(&a, 2048, Dtype::Bf16, Dtype::F16, weights).unwrap(), None);
    let per_token = kv_cache(&a, 1, 1, Dtype::F16).unwrap().per_token;
    assert_eq!(max_kv_tokens(&a, Dtype::F16, 10 * per_token + 1).unwrap(), 10);
}

#[test]
fn errors() {
    let bert = Arch::preset("bert-base").unwrap();
    assert!(kv_cache(&bert, 10, 1, Dtype::F16).unwrap_err().to_string().contains("encoder"));
    let g = Arch::preset("gpt2-small").unwrap();
    assert!(kv_cache(&g, 2048, 1, Dtype::F16).is_err());
    assert!(kv_cache(&g, 10, 0, Dtype::F16).is_err());
    assert!(paged_kv_cache(&g, &[], 16, Dtype::F16).is_err());
    assert!(paged_kv_cache(&g, &[3], 0, Dtype::F16).is_err());
    assert!(kv_cache_bytes(u64::MAX, 2, 1, 1, 1, 1).unwrap_err().to_string().contains("overflows"));
}

#[test]
fn equals_the_cache_kiln_allocates() {
    use kiln_core::{DType, Tensor};
    use kiln_models::gpt::{Gpt, GptConfig};
    // GQA LLaMA-style and MHA GPT-2-style decoders, batch 3, filled to max_len
    for cfg in [GptConfig::llama(50, 32, 64, 2, 8, 2, 96), GptConfig::gpt2(50, 32, 48, 3, 4)] {
        let arch = Arch::from(&cfg);
        let dev = kiln_cpu::cpu();
        let model = Gpt::new(cfg.clone(), 0, &dev).unwrap();
        let (b, t) = (3, 20);
        let mut caches = model.new_caches(b, t, &dev).unwrap();
        let mut bytes = 0u64;
        for c in &mut caches {
            assert_eq!(c.max_len(), t);
            let kv = Tensor::zeros(&[b, cfg.n_kv_head, t, cfg.head_dim()], DType::F32, &dev).unwrap();
            let (k, v) = c.append(&kv, &kv).unwrap();
            bytes += 4 * (k.numel() + v.numel()) as u64;
        }
        assert_eq!(bytes, kv_cache(&arch, t as u64, b as u64, Dtype::F32).unwrap().total, "{}", arch.name);
    }
}

/// A sliding window bounds the cache: the analysis's windowed counts are what kiln's paged cache
/// holds after releasing the blocks behind the window, and a contiguous cache keeps min(T, w).
#[test]
fn sliding_window_caches_match_kilns_paged_cache() {
    use kiln_models::gpt::GptConfig;
    let dev = kiln_cpu::cpu();
    let cfg = GptConfig { sliding_window: Some(10), ..GptConfig::llama(40, 64, 48, 2, 6, 2, 64) };
    let arch = Arch::from(&cfg);
    assert_eq!(arch.sliding_window, Some(10));
    let c = kv_cache(&arch, 50, 2, Dtype::F32).unwrap();
    assert_eq!(c.stored_tokens, 10);
    assert_eq!(c.total, 2 * 2 * 10 * 2 * 8 * 2 * 4);
    let model = kiln_models::gpt::Gpt::new(cfg, 0, &dev).unwrap();
    for n in [3usize, 9, 10, 11, 17, 40, 41] {
        let mut cache = model.new_paged_cache(32, 4, kiln_core::DType::F32, false, &dev).unwrap();
        cache.add_sequence(0, &[]).unwrap();
        assert!(cache.reserve(0, n).unwrap());
        cache.commit(0, &vec![1; n]).unwrap();
        cache.release_before(0, (n + 1).saturating_sub(10)).unwrap();
        let p = paged_kv_cache(&arch, &[n as u64], 4, Dtype::F32).unwrap();
        assert_eq!(p.blocks, cache.blocks_in_use() as u64, "n = {n}");
        assert_eq!(p.allocated, (cache.blocks_in_use() * 4 * cache.bytes_per_token()) as u64, "n = {n}");
    }
}
