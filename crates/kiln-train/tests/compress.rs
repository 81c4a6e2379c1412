//! Compression during training: magnitude pruning reaches its exact sparsity on every block
//! matrix and leaves embeddings, norms and biases dense; 2:4 pruning leaves at most 2 non-zeros
//! in every group of 4; quantization-aware training evaluates the fake-quantized weights and
//! keeps full-precision masters; bad settings are errors.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::Module;
use kiln_data::{Batcher, TokenFile};
use kiln_models::gpt::{Gpt, GptConfig};
use kiln_train::run::{evaluate, Compression, TrainConfig, Trainer};
use kiln_train::{FakeQuant, Pruning};

fn setup(dir: &std::path::Path, compress: Compression) -> (GptConfig, TrainConfig, Batcher) {
    let toks: Vec<u32> = (0..6000u32).map(|i| (i * 7 + i / 13) % 40).collect();
    TokenFile::write(&dir.join("tokens.bin"), &toks).unwrap();
    let train = TrainConfig {
        steps: 24,
        batch_size: 4,
        grad_accum: 1,
        max_lr: 3e-3,
        min_lr: 3e-4,
        warmup_steps: 2,
        weight_decay: 0.1,
        grad_clip: 1.0,
        eval_every: 8,
        eval_batches: 2,
        val_fraction: 0.1,
        seed: 3,
        compress,
        precision: kiln_train::Precision::F32,
    };
    let b = Batcher::new(TokenFile::open(&dir.join("tokens.bin")).unwrap(), 0.1, 4, 16, 3).unwrap();
    (GptConfig::llama(40, 16, 32, 2, 4, 2, 64), train, b)
}

fn zeros(v: &[f32]) -> usize {
    v.iter().filter(|x| **x == 0.0).count()
}

#[test]
fn magnitude_pruning_reaches_its_sparsity_on_block_matrices_only() {
    let dev = kiln_cpu::cpu();
    let dir = tempfile::tempdir().unwrap();
    let c = Compression { prune: Some(Pruning::Magnitude { sparsity: 0.6 }), ..Compression::default() };
    let (mcfg, tcfg, mut b) = setup(dir.path(), c);
    let mut t = Trainer::new(Gpt::new(mcfg, 1, &dev).unwrap(), tcfg).unwrap();
    let mut seen = vec![];
    for _ in 0..24 {
        let m = t.step(&mut b, &dev).unwrap();
        seen.push((m.sparsity.unwrap(), m.loss));
    }
    // 0 before the ramp (steps 1..6), rising, then 0.6 from 75 % of the run
    assert_eq!(seen[3].0, 0.0);
    assert!(seen[10].0 > 0.0 && seen[10].0 < 0.6, "{seen:?}");
    assert!((seen[23].0 - 0.6).abs() < 1e-3, "{seen:?}");
    assert!(seen[23].1 < seen[0].1, "the loss still falls: {seen:?}");
    for (name, p) in t.model.named_parameters() {
        let v = p.to_vec::<f32>().unwrap();
        if name.starts_with("transformer.h.") && p.rank() == 2 {
            assert_eq!(zeros(&v), (0.6 * v.len() as f64).round() as usize, "{name}");
        } else if !name.ends_with("bias") {
            assert_eq!(zeros(&v), 0, "{name} is not pruned");
        }
    }
}

#[test]
fn two_of_four_pruning() {
    let dev = kiln_cpu::cpu();
    let dir = tempfile::tempdir().unwrap();
    let c = Compression { prune: Some(Pruning::NOfM { n: 2, m: 4 }), prune_start: 0.5, ..Compression::default() };
    let (mcfg, tcfg, mut b) = setup(dir.path(), c);
    let mut t = Trainer::new(Gpt::new(mcfg, 1, &dev).unwrap(), tcfg).unwrap();
    let sparsity: Vec<f64> = (0..24).map(|_| t.step(&mut b, &dev).unwrap().sparsity.unwrap()).collect();
    assert_eq!(sparsity[10], 0.0, "dense before the start: {sparsity:?}");
    assert!(sparsity[12] >= 0.5 && sparsity[23] >= 0.5, "{sparsity:?}");
    for (name, p) in t.model.named_parameters() {
        if name.starts_with("transformer.h.") && p.rank() == 2 {
            for g in p.to_vec::<f32>().unwrap().chunks(4) {
                assert!(zeros(g) >= 2, "{name}: {g:?}");
            }
        }
    }
}

#[test]
fn qat_trains_masters_and_evaluates_the_quantized_model() {
    let dev = kiln_cpu::cpu();
    let dir = tempfile::tempdir().unwrap();
    let c = Compression { qat: Some("q4_0".into()), ..Compression::default() };
    let (mcfg, tcfg, mut b) = setup(dir.path(), c);
    let mut t = Trainer::new(Gpt::new(mcfg, 1, &dev).unwrap(), tcfg.clone()).unwrap();
    let losses: Vec<f64> = (0..24).map(|_| t.step(&mut b, &dev).unwrap().loss).collect();
    assert!(losses[23] < losses[0] - 0.3, "QAT still learns: {losses:?}");
    // The masters are full precision: not on the Q4_0 grid.
    let fq = FakeQuant::parse("q4_0").unwrap();
    let w = &t.model.named_parameters().into_iter().find(|(n, _)| n.ends_with("h.0.attn.c_attn.weight")).unwrap().1;
    assert_ne!(w.to_vec::<f32>().unwrap(), fq.fake(w).unwrap().to_vec::<f32>().unwrap());
    // Trainer::evaluate is the validation loss of the fake-quantized model.
    let qat_val = t.evaluate(&mut b, &dev).unwrap();
    let float_val = evaluate(&t.model, &mut b, &tcfg, &dev).unwrap();
    let quantized = t.model.clone();
    for (name, p) in quantized.named_parameters() {
        if name.starts_with("transformer.h.") && p.rank() == 2 {
            let fake = fq.fake(&p.copy().unwrap()).unwrap();
            p.assign_(&fake).unwrap();
        }
    }
    assert_eq!(qat_val, evaluate(&quantized, &mut b, &tcfg, &dev).unwrap());
    assert_ne!(qat_val, float_val);
}

#[test]
fn bad_settings_are_errors() {
    let dev = kiln_cpu::cpu();
    let dir = tempfile::tempdir().unwrap();
    for c in [
        Compression { qat: Some("q6_k".into()), ..Compression::default() },
        Compression { prune: Some(Pruning::Magnitude { sparsity: 1.5 }), ..Compression::default() },
        Compression { prune_start: 0.8, prune_end: 0.2, ..Compression::default() },
        Compression { qat_start: -1.0, ..Compression::default() },
    ] {
        let (mcfg, tcfg, _) = setup(dir.path(), c);
        assert!(Trainer::new(Gpt::new(mcfg, 1, &dev).unwrap(), tcfg).is_err());
    }
    // 2:4 on a matrix whose rows are not whole groups of 4
    let w = kiln_core::Tensor::from_vec(vec![1f32; 6], &[2, 3], &dev).unwrap();
    assert!(Pruning::NOfM { n: 2, m: 4 }.apply_(&w, 0.5).is_err());
}
