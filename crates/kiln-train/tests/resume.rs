//! 10 steps + save + resume + 10 steps equals 20 straight steps, bit for bit; an interrupted
//! save leaves the previous checkpoint usable.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use kiln_core::Module;
use kiln_data::{Batcher, TokenFile};
use kiln_models::gpt::{Gpt, GptConfig};
use kiln_train::run::{checkpoint_dir, Compression, TrainConfig, Trainer};
use kiln_train::Pruning;

fn setup(dir: &std::path::Path) -> (GptConfig, TrainConfig) {
    let toks: Vec<u32> = (0..5000u32).map(|i| (i * 7 + i / 13) % 40).collect();
    TokenFile::write(&dir.join("tokens.bin"), &toks).unwrap();
    let mut model = GptConfig::gpt2(40, 16, 32, 2, 4);
    model.dropout = 0.1;
    let train = TrainConfig {
        steps: 20,
        batch_size: 4,
        grad_accum: 2,
        max_lr: 3e-3,
        min_lr: 3e-4,
        warmup_steps: 5,
        weight_decay: 0.1,
        grad_clip: 1.0,
        eval_every: 10,
        eval_batches: 2,
        val_fraction: 0.1,
        seed: 7,
        compress: Compression::default(),
        precision: kiln_train::Precision::F32,
    };
    (model, train)
}

fn batcher(dir: &std::path::Path, t: &TrainConfig) -> Batcher {
    Batcher::new(TokenFile::open(&dir.join("tokens.bin")).unwrap(), t.val_fraction, t.batch_size, 16, t.seed).unwrap()
}

fn weights(m: &Gpt) -> Vec<Vec<f32>> {
    m.named_parameters().into_iter().map(|(_, t)| t.to_vec::<f32>().unwrap()).collect()
}

/// 10 steps + save + resume + 10 steps equals 20 straight steps — also with magnitude pruning
/// ramping and quantization-aware training switching on mid-run, and with f16 mixed precision
/// (its dynamic loss scale is part of the saved state).
#[test]
fn resume_is_bit_exact() {
    let dev = kiln_cpu::cpu();
    let dir = tempfile::tempdir().unwrap();
    let (mcfg, plain) = setup(dir.path());
    let compressed = TrainConfig {
        compress: Compression {
            prune: Some(Pruning::Magnitude { sparsity: 0.5 }),
            qat: Some("q4_0".into()),
            qat_start: 0.3,
            ..Compression::default()
        },
        ..plain.clone()
    };
    // f16 autocast carries the loss scaler's state through the checkpoint
    let mixed = TrainConfig { precision: kiln_train::Precision::F16, ..plain.clone() };
    for tcfg in [plain, compressed, mixed] {
        let _ = std::fs::remove_dir_all(dir.path().join("checkpoint"));
        resume_matches_straight(dir.path(), &mcfg, &tcfg, &dev);
    }
}

fn resume_matches_straight(dir: &std::path::Path, mcfg: &GptConfig, tcfg: &TrainConfig, dev: &kiln_core::Device) {
    let dev = dev.clone();
    let (mcfg, tcfg) = (mcfg.clone(), tcfg.clone());

    let mut straight = Trainer::new(Gpt::new(mcfg.clone(), tcfg.seed, &dev).unwrap(), tcfg.clone()).unwrap();
    let mut b = batcher(dir, &tcfg);
    let losses: Vec<f64> = (0..20).map(|_| straight.step(&mut b, &dev).unwrap().loss).collect();
    assert!(losses[19] < losses[0], "training reduces the loss: {losses:?}");

    let mut first = Trainer::new(Gpt::new(mcfg.clone(), tcfg.seed, &dev).unwrap(), tcfg.clone()).unwrap();
    let mut b = batcher(dir, &tcfg);
    for _ in 0..10 {
        first.step(&mut b, &dev).unwrap();
    }
    first.save(dir).unwrap();
    drop(first);
    // A different seed proves the weights really come from the checkpoint.
    let mut resumed = Trainer::new(Gpt::new(mcfg.clone(), 999, &dev).unwrap(), tcfg.clone()).unwrap();
    resumed.load(dir, &dev).unwrap();
    assert_eq!(resumed.state.step, 10);
    let mut b = batcher(dir, &tcfg);
    let tail: Vec<f64> = (0..10).map(|_| resumed.step(&mut b, &dev).unwrap().loss).collect();
    assert_eq!(tail, losses[10..].to_vec());
    assert_eq!(weights(&resumed.model), weights(&straight.model));
}

#[test]
fn interrupted_save_keeps_the_last_good_checkpoint() {
    let dev = kiln_cpu::cpu();
    let dir = tempfile::tempdir().unwrap();
    let (mcfg, tcfg) = setup(dir.path());
    let mut t = Trainer::new(Gpt::new(mcfg.clone(), 1, &dev).unwrap(), tcfg.clone()).unwrap();
    let mut b = batcher(dir.path(), &tcfg);
    t.step(&mut b, &dev).unwrap();
    t.save(dir.path()).unwrap();
    // Simulate a crash after the old checkpoint was moved aside but before the new one landed.
    std::fs::rename(dir.path().join("checkpoint"), dir.path().join("checkpoint.old")).unwrap();
    std::fs::create_dir_all(dir.path().join("checkpoint.tmp")).unwrap();
    assert_eq!(checkpoint_dir(dir.path()).unwrap(), dir.path().join("checkpoint.old"));
    let mut r = Trainer::new(Gpt::new(mcfg, 2, &dev).unwrap(), tcfg).unwrap();
    r.load(dir.path(), &dev).unwrap();
    assert_eq!(r.state.step, 1);
    assert!(Trainer::load(&mut r, &dir.path().join("nowhere"), &dev).is_err());
}
