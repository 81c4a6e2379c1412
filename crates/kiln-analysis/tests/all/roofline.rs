//! The roofline: GEMM intensity closed form, decode memory-bound and prefill compute-bound, a
//! decode step's time ≈ the bytes of weights and KV cache over the bandwidth.

use kiln_analysis::roofline::bandwidth;
use kiln_analysis::{num_params, roofline, Arch, Bound, Phase};

#[test]
fn decode_is_memory_bound_and_prefill_compute_bound() {
    let arch = Arch::resolve("gpt2-small").unwrap();
    let (peak, bw) = (312e12, bandwidth("a100").unwrap());
    let dec = roofline(&arch, Phase::Decode, 1, 1024, 2.0, peak, bw).unwrap();
    assert!((dec.balance - 312e12 / 2.039e12).abs() < 1e-9);
    assert!(dec.ops.iter().all(|o| o.bound == Bound::Memory), "{:?}", dec.ops);
    // qkv at batch 1: (1,768)·(768,2304) in f16: 2·768·2304 FLOPs over 2·(768 + 768·2304 + 2304) bytes.
    let qkv = &dec.ops[0];
    let want = (2.0 * 768.0 * 2304.0) / (2.0 * (768.0 + 768.0 * 2304.0 + 2304.0));
    assert!((qkv.intensity - want).abs() < 1e-12 && qkv.intensity < 1.0);
    // Memory-bound decode: time ≈ (weights + KV cache) bytes / bandwidth. The tied head reads
    // the embedding; position embeddings, norms and biases are outside the ops (< 2 %).
    let weights = 2.0 * num_params(&arch).unwrap() as f64;
    let kv = 2.0 * 2.0 * 12.0 * 1024.0 * 768.0;
    let t = (weights + kv) / bw;
    assert!((dec.seconds / t - 1.0).abs() < 0.02, "{} vs {t}", dec.seconds);
    // Prefill of 1024 tokens: every product is compute-bound; more sequences raise decode's
    // intensity in proportion (batching is how decode climbs the roofline).
    let pre = roofline(&arch, Phase::Prefill, 1, 1024, 2.0, peak, bw).unwrap();
    assert!(pre.ops.iter().filter(|o| o.name != "attention (fused)").all(|o| o.bound == Bound::Compute));
    let dec64 = roofline(&arch, Phase::Decode, 64, 1024, 2.0, peak, bw).unwrap();
    assert!(dec64.ops[0].intensity > 40.0 * dec.ops[0].intensity);
    assert!(pre.flops > 500.0 * dec.flops);
}

/// A mixture of experts at batch 1 reads the k experts a token is routed to, not all E; a large
/// batch touches them all.
#[test]
fn mixture_of_experts_decode_reads_the_routed_experts() {
    let arch = Arch::resolve("mixtral-8x7b").unwrap();
    let expert = |r: &kiln_analysis::Roofline| r.ops.iter().find(|o| o.name.starts_with("MoE experts")).unwrap().bytes;
    let one = roofline(&arch, Phase::Decode, 1, 512, 2.0, 312e12, 2e12).unwrap();
    let weights = 2.0 * 3.0 * 4096.0 * 14336.0; // one expert in f16
    assert!((expert(&one) / (2.0 * weights) - 1.0).abs() < 1e-3, "{}", expert(&one));
    let many = roofline(&arch, Phase::Decode, 256, 512, 2.0, 312e12, 2e12).unwrap();
    assert!(expert(&many) > 7.99 * weights);
}

#[test]
fn bad_roofline_inputs_are_errors() {
    let arch = Arch::resolve("gpt2-small").unwrap();
    assert!(roofline(&arch, Phase::Decode, 0, 8, 2.0, 1e12, 1e12).is_err());
    assert!(roofline(&arch, Phase::Decode, 1, 8, 0.0, 1e12, 1e12).is_err());
    assert!(roofline(&arch, Phase::Decode, 1, 8, 2.0, 1e12, -1.0).is_err());
    assert!(roofline(&arch, Phase::Decode, 1, 1 << 20, 2.0, 1e12, 1e12).is_err(), "beyond the context");
    assert!(bandwidth("warp-drive").unwrap_err().to_string().contains("a100"));
    assert_eq!(bandwidth("3e12").unwrap(), 3e12);
}
