#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

//! Data parallelism's training-loop half (the NCCL half is tested in kiln-cuda): two replicas,
//! each on its own shard, averaging gradients after backward, must train exactly like one
//! replica with two micro-batches of gradient accumulation — same batches (replica r takes
//! batch i·2 + r, accumulation takes i·2 + micro), same dropout masks, same mean gradient.
//!
//! The replicas run in two threads and meet in a test-only in-memory all-reduce (a barrier and a
//! sum): it stands in for NCCL, which needs GPUs.

use kiln_core::Tensor;
use kiln_data::{Batcher, TokenFile};
use kiln_models::gpt::{Gpt, GptConfig};
use kiln_train::run::{Compression, TrainConfig, Trainer};
use kiln_train::GradSync;
use std::sync::{Arc, Barrier, Mutex};

/// The in-memory all-reduce: each replica adds its gradients into a shared sum, waits for the
/// others, and reads back the mean.
struct LocalAllReduce {
    rank: usize,
    world: usize,
    sum: Arc<Mutex<Vec<Vec<f32>>>>,
    barrier: Arc<Barrier>,
}

impl GradSync for LocalAllReduce {
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn all_reduce_mean(&self, grads: &[Tensor]) -> kiln_core::Result<()> {
        {
            let mut sum = self.sum.lock().unwrap();
            if sum.is_empty() {
                *sum = grads.iter().map(|g| vec![0.0; g.numel()]).collect();
            }
            for (s, g) in sum.iter_mut().zip(grads) {
                s.iter_mut().zip(g.to_vec::<f32>()?).for_each(|(a, b)| *a += b);
            }
        }
        self.barrier.wait();
        let mean: Vec<Vec<f32>> =
            self.sum.lock().unwrap().iter().map(|s| s.iter().map(|v| v / self.world as f32).collect()).collect();
        for (g, m) in grads.iter().zip(mean) {
            g.assign_(&Tensor::from_vec(m, g.dims(), g.device())?)?;
        }
        if self.barrier.wait().is_leader() {
            self.sum.lock().unwrap().clear();
        }
        self.barrier.wait();
        Ok(())
    }
}

/// The token file, written once before any replica starts.
fn write_tokens(dir: &std::path::Path) {
    let toks: Vec<u32> = (0..5000u32).map(|i| (i * 7 + i / 13) % 40).collect();
    TokenFile::write(&dir.join("tokens.bin"), &toks).unwrap();
}

fn setup(accum: usize) -> (GptConfig, TrainConfig) {
    let mut model = GptConfig::gpt2(40, 16, 32, 2, 4);
    model.dropout = 0.1;
    let train = TrainConfig {
        steps: 6,
        batch_size: 4,
        grad_accum: accum,
        max_lr: 3e-3,
        min_lr: 3e-4,
        warmup_steps: 2,
        weight_decay: 0.1,
        grad_clip: 1.0,
        eval_every: 100,
        eval_batches: 1,
        val_fraction: 0.1,
        seed: 7,
        compress: Compression::default(),
        precision: kiln_train::Precision::F32,
    };
    (model, train)
}

fn weights(m: &Gpt) -> Vec<Vec<f32>> {
    kiln_core::Module::named_parameters(m).into_iter().map(|(_, t)| t.to_vec::<f32>().unwrap()).collect()
}

fn train(dir: &std::path::Path, accum: usize, sync: Option<LocalAllReduce>) -> (Vec<Vec<f32>>, Vec<f64>) {
    let dev = kiln_cpu::cpu();
    let (mcfg, tcfg) = setup(accum);
    let mut batcher = Batcher::new(TokenFile::open(&dir.join("tokens.bin")).unwrap(), 0.1, 4, 16, tcfg.seed).unwrap();
    let mut t = Trainer::new(Gpt::new(mcfg, tcfg.seed, &dev).unwrap(), tcfg.clone()).unwrap();
    if let Some(s) = sync {
        t.set_grad_sync(Box::new(s));
    }
    let losses = (0..tcfg.steps).map(|_| t.step(&mut batcher, &dev).unwrap().grad_norm).collect();
    (weights(&t.model), losses)
}

#[test]
fn two_replicas_equal_two_accumulated_micro_batches() {
    let dir = tempfile::tempdir().unwrap();
    write_tokens(dir.path());
    let (want, want_norms) = train(dir.path(), 2, None);
    let (sum, barrier) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Barrier::new(2)));
    let replicas: Vec<_> = (0..2)
        .map(|rank| {
            let (sum, barrier, dir) = (sum.clone(), barrier.clone(), dir.path().to_path_buf());
            std::thread::spawn(move || train(&dir, 1, Some(LocalAllReduce { rank, world: 2, sum, barrier })))
        })
        .collect();
    let got: Vec<_> = replicas.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(got[0].0, got[1].0, "the replicas hold identical weights after every step");
    for ((g, w), name) in got[0].0.iter().zip(&want).zip(0..) {
        let scale = w.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let err = g.iter().zip(w).fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
        assert!(err < 1e-5, "parameter {name}: replicas vs accumulation differ by {err:.2e}");
    }
    for (a, b) in got[0].1.iter().zip(&want_norms) {
        assert!((a - b).abs() / b < 1e-5, "gradient norms {a} vs {b}");
    }
}
