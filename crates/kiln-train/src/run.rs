//! A training run: the loop (gradient accumulation, clipping, warmup + cosine, periodic
//! validation) and its checkpoints.
//!
//! A run directory holds `config.json` (the model), `train.json` (this loop's settings),
//! `tokenizer.json`, `tokens.bin`, `metrics.jsonl`, and `checkpoint/` with `model.safetensors`,
//! `optimizer.safetensors` and `state.json`. A checkpoint is written to `checkpoint.tmp/` and
//! swapped in by renames, so a crash mid-save leaves the previous checkpoint intact. Batches are
//! indexed by step and dropout is seeded by step, so resuming continues bit-exactly.

use crate::{clip_grad_norm, AdamW, AdamWConfig, DynamicLossScaler, FakeQuant, LrSchedule, Pruning, WarmupCosine};
use kiln_core::ops::CrossEntropyOpts;
use kiln_core::{no_grad, safetensors, Device, Error, Module, Result, Tensor};
use kiln_data::{Batcher, Split};
use kiln_models::gpt::Gpt;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Settings of the training loop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// Sequences per micro-batch.
    pub batch_size: usize,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub max_lr: f64,
    /// Floor of the cosine decay.
    pub min_lr: f64,
    /// Linear warmup steps.
    pub warmup_steps: u64,
    /// AdamW decoupled weight decay (matrices only).
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 disables).
    pub grad_clip: f64,
    /// Validate every this many steps (and at the end).
    pub eval_every: u64,
    /// Validation batches per evaluation.
    pub eval_batches: u64,
    /// Held-out fraction of the tokens.
    pub val_fraction: f64,
    /// Seed of initialisation, batches and dropout.
    pub seed: u64,
    /// Pruning and quantization-aware training of the blocks' weight matrices (none by default).
    #[serde(default)]
    pub compress: Compression,
    /// Arithmetic of the matrix products (f32 by default; see [`Precision`]).
    #[serde(default)]
    pub precision: Precision,
}

/// Mixed-precision training (book: "mixed precision"): the matrix products of forward and
/// backward run in bf16 or f16 under [`kiln_core::autocast()`], with f32 master weights,
/// optimizer state and everything else; f16 adds [`DynamicLossScaler`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// bf16 products (f32's exponent range: no loss scaling).
    Bf16,
    /// f16 products with dynamic loss scaling.
    F16,
}

impl Precision {
    /// Parses `f32`, `bf16` or `f16`.
    pub fn parse(s: &str) -> Result<Precision> {
        match s {
            "f32" | "fp32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            "f16" | "fp16" => Ok(Precision::F16),
            _ => Err(Error::Invalid { op: "precision", msg: format!("{s:?}: expected f32, bf16 or f16") }),
        }
    }

    /// The autocast type (`None` for f32).
    pub fn autocast(self) -> Option<kiln_core::DType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(kiln_core::DType::BF16),
            Precision::F16 => Some(kiln_core::DType::F16),
        }
    }
}

/// Model compression during training, applied to the blocks' weight matrices (attention and MLP
/// projections; not embeddings, norms or biases). Fractions are of the run's `steps`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Compression {
    /// Pruning after every optimizer step ([`Pruning`]).
    pub prune: Option<Pruning>,
    /// Where pruning starts (magnitude: where its cubic ramp starts).
    pub prune_start: f64,
    /// Where magnitude pruning reaches its final sparsity.
    pub prune_end: f64,
    /// Fake quantization with straight-through gradients to this ggml type (`q8_0`, `q4_0`,
    /// `q4_1`; [`FakeQuant`]).
    pub qat: Option<String>,
    /// Where quantization-aware training starts.
    pub qat_start: f64,
}

impl Default for Compression {
    /// Nothing pruned or fake-quantized; pruning would ramp over the middle half of the run.
    fn default() -> Self {
        Compression { prune: None, prune_start: 0.25, prune_end: 0.75, qat: None, qat_start: 0.0 }
    }
}

impl Compression {
    /// Errors for bad fractions, a bad pruning or an unknown QAT type.
    pub fn validate(&self) -> Result<()> {
        let frac = |f: f64| (0.0..=1.0).contains(&f);
        if !(frac(self.prune_start) && frac(self.prune_end) && frac(self.qat_start))
            || self.prune_start > self.prune_end
        {
            return Err(Error::Invalid {
                op: "Compression",
                msg: format!(
                    "prune_start {} ≤ prune_end {} and qat_start {} must be fractions of the run in [0, 1]",
                    self.prune_start, self.prune_end, self.qat_start
                ),
            });
        }
        if let Some(p) = &self.prune {
            p.validate()?;
        }
        self.fake_quant().map(drop)
    }

    fn fake_quant(&self) -> Result<Option<FakeQuant>> {
        self.qat.as_deref().map(FakeQuant::parse).transpose()
    }
}

/// Progress of a run, saved with each checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: u64,
    /// Last validation loss.
    pub val_loss: Option<f64>,
    /// The f16 loss scaler's state (f16 precision only).
    #[serde(default)]
    pub loss_scaler: Option<DynamicLossScaler>,
    /// Steps skipped because a scaled gradient overflowed.
    #[serde(default)]
    pub skipped_steps: u64,
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize)]
pub struct StepMetrics {
    /// Step just completed.
    pub step: u64,
    /// Mean training loss over the step's micro-batches.
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Validation loss, on evaluation steps.
    pub val_loss: Option<f64>,
    /// Training tokens per second over this step.
    pub tok_per_s: f64,
    /// Fraction of zeros in the pruned matrices after this step, when pruning.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<f64>,
}

fn io(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Invalid { op: "checkpoint", msg: format!("{}: {e}", path.display()) }
}

/// The learning-rate schedule of a config.
pub fn schedule(cfg: &TrainConfig) -> WarmupCosine {
    WarmupCosine { max_lr: cfg.max_lr, min_lr: cfg.min_lr, warmup: cfg.warmup_steps, total: cfg.steps }
}

/// Mean validation loss over `cfg.eval_batches` fixed batches.
pub fn evaluate(model: &Gpt, batcher: &mut Batcher, cfg: &TrainConfig, device: &Device) -> Result<f64> {
    no_grad(|| {
        let mut total = 0.0;
        for i in 0..cfg.eval_batches.max(1) {
            let (x, y) = batcher
                .batch(Split::Val, i, device)
                .map_err(|e| Error::Invalid { op: "evaluate", msg: e.to_string() })?;
            total += model.forward(&x, None, false, 0)?.cross_entropy(&y, CrossEntropyOpts::default())?.to_scalar()?;
        }
        Ok(total / cfg.eval_batches.max(1) as f64)
    })
}

/// A model with its optimizer and progress.
pub struct Trainer {
    /// The model being trained.
    pub model: Gpt,
    /// Its optimizer.
    pub opt: AdamW,
    /// Loop settings.
    pub cfg: TrainConfig,
    /// Progress.
    pub state: TrainState,
    /// The matrices pruning and QAT act on (the blocks' 2-d weights).
    compressed: Vec<Tensor>,
    /// Data parallelism: how gradients are combined across replicas (none: one replica).
    sync: Option<Box<dyn GradSync>>,
}

/// Data parallelism (seed 003 "data parallelism"): each replica trains on its own shard of the
/// batches and, after backward and before clipping, replaces its gradients by the mean over all
/// replicas, so every replica takes the same step. `kiln --device cuda train` plugs in
/// kiln-cuda's NCCL communicator when `KILN_WORLD_SIZE` > 1.
pub trait GradSync: Send {
    /// This replica's index.
    fn rank(&self) -> usize;
    /// Number of replicas.
    fn world_size(&self) -> usize;
    /// Replaces each gradient by its mean over all replicas, in place.
    fn all_reduce_mean(&self, grads: &[Tensor]) -> Result<()>;
}

impl Trainer {
    /// A fresh trainer for `model`.
    pub fn new(model: Gpt, cfg: TrainConfig) -> Result<Trainer> {
        cfg.compress.validate()?;
        let opt =
            AdamW::new(model.named_parameters(), AdamWConfig { weight_decay: cfg.weight_decay, ..Default::default() })?;
        let compressed = model
            .named_parameters()
            .into_iter()
            .filter(|(n, p)| n.starts_with("transformer.h.") && p.rank() == 2)
            .map(|(_, p)| p)
            .collect();
        Ok(Trainer { model, opt, cfg, state: TrainState::default(), compressed, sync: None })
    }

    /// Makes this trainer one replica of a data-parallel run: micro-batch `i` of replica `r`
    /// becomes batch `i·world + r` of the data (disjoint shards), and gradients are averaged
    /// through `sync` before clipping. With one replica nothing changes.
    pub fn set_grad_sync(&mut self, sync: Box<dyn GradSync>) {
        self.sync = Some(sync);
    }

    /// The step index where a fraction of the run starts.
    fn at(&self, fraction: f64) -> u64 {
        (fraction * self.cfg.steps as f64).round() as u64
    }

    /// The fake quantization in force at `step` (0-based), if any.
    fn qat_at(&self, step: u64) -> Result<Option<FakeQuant>> {
        let c = &self.cfg.compress;
        Ok(c.fake_quant()?.filter(|_| step >= self.at(c.qat_start)))
    }

    /// Runs `f` with the compressed matrices fake-quantized when QAT is in force at `step`
    /// (master weights restored afterwards, also on error).
    fn with_qat<T>(&self, step: u64, f: impl FnOnce(&Self) -> Result<T>) -> Result<T> {
        let Some(fq) = self.qat_at(step)? else { return f(self) };
        let masters = fq.swap_in(&self.compressed)?;
        let out = f(self);
        FakeQuant::restore(&self.compressed, &masters)?;
        out
    }

    /// Validation loss ([`evaluate`]) of the model as training sees it at the current step
    /// (fake-quantized weights once QAT is in force).
    pub fn evaluate(&self, batcher: &mut Batcher, device: &Device) -> Result<f64> {
        self.with_qat(self.state.step.saturating_sub(1), |t| evaluate(&t.model, batcher, &t.cfg, device))
    }

    /// Prunes the compressed matrices to the schedule's sparsity at `step` (1-based, after its
    /// update); returns the fraction of zeros, or `None` when not pruning.
    fn prune(&self, step: u64) -> Result<Option<f64>> {
        let c = &self.cfg.compress;
        let Some(p) = c.prune else { return Ok(None) };
        let s = p.sparsity_at(step, self.at(c.prune_start).max(1), self.at(c.prune_end).max(1));
        if s == 0.0 {
            return Ok(Some(0.0));
        }
        let (mut zeros, mut total) = (0, 0);
        for w in &self.compressed {
            zeros += p.apply_(w, s)?;
            total += w.numel();
        }
        Ok(Some(zeros as f64 / total.max(1) as f64))
    }

    /// One optimizer step (with gradient accumulation); returns its metrics.
    pub fn step(&mut self, batcher: &mut Batcher, device: &Device) -> Result<StepMetrics> {
        let start = std::time::Instant::now();
        let step = self.state.step;
        let accum = self.cfg.grad_accum.max(1);
        let (rank, world) = self.sync.as_ref().map_or((0, 1), |s| (s.rank() as u64, s.world_size() as u64));
        let half = self.cfg.precision.autocast();
        if self.cfg.precision == Precision::F16 && self.state.loss_scaler.is_none() {
            self.state.loss_scaler = Some(DynamicLossScaler::default());
        }
        let loss_scale = self.state.loss_scaler.as_ref().map_or(1.0, |s| s.scale);
        let (loss_sum, tokens) = self.with_qat(step, |t| {
            let (mut loss_sum, mut tokens) = (0.0, 0);
            for micro in 0..accum {
                let index = (step * accum as u64 + micro as u64) * world + rank;
                let (x, y) = batcher
                    .batch(Split::Train, index, device)
                    .map_err(|e| Error::Invalid { op: "train", msg: e.to_string() })?;
                tokens += x.numel();
                let seed = t.cfg.seed ^ index.wrapping_mul(0x2545_F491_4F6C_DD1D);
                let loss = kiln_core::autocast(half, || {
                    t.model.forward(&x, None, true, seed)?.cross_entropy(&y, CrossEntropyOpts::default())
                })?;
                loss_sum += loss.to_scalar()?;
                // backward's products run in the same precision as forward's
                kiln_core::autocast(half, || loss.scale(loss_scale / accum as f64)?.backward())?;
            }
            if let Some(sync) = &t.sync {
                let grads: Vec<Tensor> = t.opt.params().iter().filter_map(|p| p.grad()).collect();
                sync.all_reduce_mean(&grads)?;
            }
            Ok((loss_sum, tokens * world as usize))
        })?;
        if let Some(scaler) = &mut self.state.loss_scaler {
            let grads: Vec<Tensor> = self.opt.params().iter().filter_map(|p| p.grad()).collect();
            if !scaler.unscale(&grads)? {
                // an overflowed f16 gradient: skip the update, the scale has backed off
                self.opt.zero_grad();
                self.state.step += 1;
                self.state.skipped_steps += 1;
                let secs = start.elapsed().as_secs_f64();
                return Ok(StepMetrics {
                    step: self.state.step,
                    loss: loss_sum / accum as f64,
                    lr: 0.0,
                    grad_norm: f64::INFINITY,
                    val_loss: None,
                    tok_per_s: tokens as f64 / secs,
                    sparsity: None,
                });
            }
        }
        let grad_norm = clip_grad_norm(
            &self.opt.params(),
            if self.cfg.grad_clip > 0.0 { self.cfg.grad_clip } else { f64::INFINITY },
        )?;
        let lr = schedule(&self.cfg).lr(step + 1);
        self.opt.step(lr)?;
        self.opt.zero_grad();
        self.state.step += 1;
        let sparsity = self.prune(self.state.step)?;
        let secs = start.elapsed().as_secs_f64();
        Ok(StepMetrics {
            step: self.state.step,
            loss: loss_sum / accum as f64,
            lr,
            grad_norm,
            val_loss: None,
            tok_per_s: tokens as f64 / secs,
            sparsity,
        })
    }

    /// Writes `dir/checkpoint/` atomically (temp dir + renames).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join("checkpoint.tmp");
        let final_dir = dir.join("checkpoint");
        let old = dir.join("checkpoint.old");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        safetensors::save(&tmp.join("model.safetensors"), &self.model.named_parameters(), None)?;
        let (opt_state, opt_step) = self.opt.state();
        let meta = HashMap::from([("step".to_string(), opt_step.to_string())]);
        safetensors::save(&tmp.join("optimizer.safetensors"), &opt_state, Some(meta))?;
        let state = serde_json::to_string_pretty(&self.state).map_err(|e| io(&tmp, e))?;
        std::fs::write(tmp.join("state.json"), state).map_err(|e| io(&tmp, e))?;
        if final_dir.exists() {
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(&final_dir, &old).map_err(|e| io(&final_dir, e))?;
        }
        std::fs::rename(&tmp, &final_dir).map_err(|e| io(&final_dir, e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// Restores model weights, optimizer state and progress from `dir/checkpoint/` (or the
    /// previous checkpoint left by an interrupted save).
    pub fn load(&mut self, dir: &Path, device: &Device) -> Result<()> {
        let ck = checkpoint_dir(dir).ok_or_else(|| io(dir, "no checkpoint/ to resume from"))?;
        let (weights, _) = safetensors::load(&ck.join("model.safetensors"), device)?;
        for (name, p) in self.model.named_parameters() {
            let w =
                weights.iter().find(|(n, _)| *n == name).ok_or_else(|| io(&ck, format!("missing tensor {name}")))?;
            p.assign_(&w.1)?;
        }
        let (opt_state, meta) = safetensors::load(&ck.join("optimizer.safetensors"), device)?;
        let step = meta.get("step").and_then(|s| s.parse().ok()).ok_or_else(|| io(&ck, "optimizer step missing"))?;
        self.opt.load_state(&opt_state, step)?;
        let text = std::fs::read_to_string(ck.join("state.json")).map_err(|e| io(&ck, e))?;
        self.state = serde_json::from_str(&text).map_err(|e| io(&ck, e))?;
        Ok(())
    }
}

/// The usable checkpoint folder of a run, if any.
pub fn checkpoint_dir(dir: &Path) -> Option<PathBuf> {
    [dir.join("checkpoint"), dir.join("checkpoint.old")].into_iter().find(|p| p.join("state.json").exists())
}
