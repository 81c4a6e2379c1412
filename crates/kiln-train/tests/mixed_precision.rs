#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Mixed-precision training (bf16 and f16 autocast, f32 masters, dynamic loss scaling for f16)
//! learns like f32: the same run's final training loss within 3 % of f32's. On the CPU the
//! half-precision products are emulated exactly (autocast's rounding), so this checks the
//! training loop's half; the GPU runs the same arithmetic on tensor cores.

use kiln_data::{Batcher, TokenFile};
use kiln_models::gpt::{Gpt, GptConfig};
use kiln_train::run::{Compression, TrainConfig, Trainer};
use kiln_train::Precision;

fn run(dir: &std::path::Path, precision: Precision) -> (f64, f64, Trainer) {
    let dev = kiln_cpu::cpu();
    let tcfg = TrainConfig {
        steps: 60,
        batch_size: 8,
        grad_accum: 1,
        max_lr: 1e-2,
        min_lr: 1e-3,
        warmup_steps: 5,
        weight_decay: 0.1,
        grad_clip: 1.0,
        eval_every: 1000,
        eval_batches: 1,
        val_fraction: 0.1,
        seed: 11,
        compress: Compression::default(),
        precision,
    };
    let mut b = Batcher::new(TokenFile::open(&dir.join("tokens.bin")).unwrap(), 0.1, 8, 32, 11).unwrap();
    let mut t = Trainer::new(Gpt::new(GptConfig::llama(40, 32, 64, 2, 4, 2, 128), 11, &dev).unwrap(), tcfg).unwrap();
    let losses: Vec<f64> = (0..60).map(|_| t.step(&mut b, &dev).unwrap().loss).collect();
    let tail = losses[50..].iter().sum::<f64>() / 10.0;
    (losses[0], tail, t)
}

#[test]
fn bf16_and_f16_train_like_f32() {
    let dir = tempfile::tempdir().unwrap();
    let toks: Vec<u32> = (0..20000u32).map(|i| (i * 7 + i / 13 + (i / 97) * 3) % 40).collect();
    TokenFile::write(&dir.path().join("tokens.bin"), &toks).unwrap();
    let (first, f32_tail, _) = run(dir.path(), Precision::F32);
    assert!(f32_tail < 0.6 * first, "the f32 run learns ({first} -> {f32_tail})");
    for p in [Precision::Bf16, Precision::F16] {
        let (_, tail, t) = run(dir.path(), p);
        let rel = (tail - f32_tail).abs() / f32_tail;
        eprintln!(
            "{p:?}: final loss {tail:.4} vs f32 {f32_tail:.4} ({:+.2}%), skipped steps {}, loss scale {:?}",
            100.0 * (tail - f32_tail) / f32_tail,
            t.state.skipped_steps,
            t.state.loss_scaler.as_ref().map(|s| s.scale)
        );
        assert!(rel < 0.03, "{p:?} ends within 3% of f32 ({tail} vs {f32_tail})");
        assert_eq!(t.state.loss_scaler.is_some(), p == Precision::F16, "only f16 scales the loss");
    }
}
