//! Model states by precision, ZeRO sharding (the paper's Figure 1 numbers), what fits.

use kiln_analysis::memory::{
    max_batch, max_seq, model_states, state_bytes_per_param, training_memory, weight_bytes, Optimizer, Precision,
    TrainingSetup, ZeroStage,
};
use kiln_analysis::{num_params, Arch, Dtype, Recompute};

#[test]
fn bytes_per_param() {
    let mixed = state_bytes_per_param(Precision::Mixed, Optimizer::Adam);
    assert_eq!((mixed.weights, mixed.grads, mixed.master, mixed.optimizer), (2, 2, 4, 8));
    assert_eq!(mixed.total(), 16);
    assert_eq!(state_bytes_per_param(Precision::Fp32, Optimizer::Adam).total(), 16);
    assert_eq!(state_bytes_per_param(Precision::Fp32, Optimizer::SgdMomentum).total(), 12);
    assert_eq!(state_bytes_per_param(Precision::Mixed, Optimizer::Sgd).total(), 8);
}

#[test]
fn zero_stages_reproduce_the_paper() {
    // Rajbhandari et al. 2020, Fig. 1: Ψ = 7.5B, N = 64, K = 12
    let s = |z| model_states(7_500_000_000, Precision::Mixed, Optimizer::Adam, z, 64).unwrap().total;
    assert_eq!(s(ZeroStage::Stage0), 120_000_000_000);
    assert_eq!(s(ZeroStage::Stage1), 31_406_250_000);
    assert_eq!(s(ZeroStage::Stage2), 16_640_625_000);
    assert_eq!(s(ZeroStage::Stage3), 1_875_000_000);
    assert_eq!(ZeroStage::from_number(2).unwrap(), ZeroStage::Stage2);
    assert!(ZeroStage::from_number(4).is_err());
    assert!(model_states(10, Precision::Mixed, Optimizer::Adam, ZeroStage::Stage1, 0).is_err());
}

#[test]
fn gpt3_states() {
    // seed 003 §3.2: ≈ 2.8 TB of model states for GPT-3 at 16 B/param (book eq. 12.85)
    let a = Arch::preset("gpt3-175b").unwrap();
    let n = num_params(&a).unwrap();
    let m = training_memory(&a, 1, 2048, &TrainingSetup::new(Precision::Mixed)).unwrap();
    assert_eq!(m.states.total, 16 * n);
    assert_eq!(weight_bytes(n, Dtype::F16).unwrap(), 2 * n);
    assert_eq!(m.total, m.states.total + m.activations.total);
}

#[test]
fn what_fits_is_the_boundary() {
    let a = Arch::preset("gpt2-small").unwrap();
    let mut setup = TrainingSetup::new(Precision::Mixed);
    let budget = 24u64 << 30;
    let b = max_batch(&a, 1024, &setup, budget).unwrap().unwrap();
    let at = |b| training_memory(&a, b, 1024, &setup).unwrap().total;
    assert!(at(b) <= budget && at(b + 1) > budget, "{b}");
    // recomputation fits more
    setup.activations.recompute = Recompute::Full;
    let b_full = max_batch(&a, 1024, &setup, budget).unwrap().unwrap();
    assert!(b_full > 3 * b, "{b_full} vs {b}");
    // the longest context for batch 64 (learned positions cap it at P = 1024)
    setup.activations.recompute = Recompute::None;
    let s = max_seq(&a, 64, &setup, budget).unwrap().unwrap();
    let at_s = |s| training_memory(&a, 64, s, &setup).unwrap().total;
    assert!(at_s(s) <= budget && (s == 1024 || at_s(s + 1) > budget), "{s}");
    // nothing fits when the states alone exceed the budget
    assert_eq!(max_batch(&a, 1024, &setup, 1 << 30).unwrap(), None);
    // LLaMA-65B on one 80 GB device: not even the states
    let l = Arch::preset("llama-65b").unwrap();
    assert_eq!(max_batch(&l, 2048, &TrainingSetup::new(Precision::Mixed), 80 << 30).unwrap(), None);
    // ZeRO-3 over 512 devices, full recomputation: it fits
    let mut z = TrainingSetup::new(Precision::Mixed);
    z.zero = ZeroStage::Stage3;
    z.data_parallel = 512;
    z.activations.recompute = Recompute::Full;
    z.activations.dropout = false;
    assert!(max_batch(&l, 2048, &z, 80 << 30).unwrap().unwrap() >= 1);
}

#[test]
fn absurd_sizes_are_errors_not_panics() {
    let a = Arch::preset("llama-65b").unwrap();
    let setup = TrainingSetup::new(Precision::Mixed);
    let e = training_memory(&a, u64::MAX, 1 << 40, &setup).unwrap_err().to_string();
    assert!(e.contains("overflows"), "{e}");
    let e = kiln_analysis::training_flops(&a, u64::MAX, u64::MAX, Recompute::Full).unwrap_err().to_string();
    assert!(e.contains("overflows"), "{e}");
    // a RoPE model's longest context is bounded by the bisection, not by overflow
    assert!(max_seq(&a, 1, &setup, u64::MAX).unwrap().is_some());
    // convenience totals of hand-made structs saturate
    let p = kiln_analysis::params::LayerParams { attn_q: u64::MAX, attn_k: 1, ..Default::default() };
    assert_eq!(p.total(), u64::MAX);
    let mut setup = setup;
    setup.activations.bytes = u64::MAX;
    assert!(training_memory(&a, 1, 2048, &setup).unwrap_err().to_string().contains("overflows"));
}
