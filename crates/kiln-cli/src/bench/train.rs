//! `kiln bench train`: training throughput of a preset — tokens/s, achieved GFLOP/s and model
//! FLOPs utilisation (MFU) against the GEMM ceiling measured in the same run — and, when
//! `python3 -c 'import torch'` works, PyTorch eager on the same model, batch and optimizer,
//! measured in the same run, with the ratio.
//!
//! FLOPs per trained token (seed 004, Kaplan et al. 2020): `6·N + 6·L·T·C`, where `N` counts
//! the weights every token multiplies (all parameters but the position table; the tied head is
//! the embedding matrix, counted once) and `6·L·T·C` is attention's `QKᵀ` and `PV` (forward 2·2·T·C
//! per token and layer, backward twice that), with `T` the full context (no causal discount,
//! as in nanoGPT/PaLM's MFU).

use super::{gemm, median, Budget};
use crate::train::preset;
use anyhow::{Context, Result};
use kiln_core::{Device, Module};
use kiln_data::{corpus, Batcher, TokenFile};
use kiln_models::gpt::{Gpt, GptConfig};
use kiln_train::run::{TrainConfig, Trainer};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// The PyTorch reference model and the timing script, embedded so the benchmark runs from any
/// directory; written to a temporary folder when used.
const TORCH_GPT: &str = include_str!("../../../../tools/torch_gpt.py");
const TORCH_BENCH: &str = include_str!("../../../../tools/bench_train_torch.py");

/// Settings of one `kiln bench train` run.
pub struct TrainBench {
    /// Preset name (see `kiln train --preset`).
    pub preset: String,
    /// Sequences per step (default: the preset's).
    pub batch: Option<usize>,
    /// Timed steps.
    pub steps: usize,
    /// Untimed warm-up steps.
    pub warmup: usize,
    /// Threads for kiln and PyTorch.
    pub threads: usize,
    /// Skip the PyTorch baseline.
    pub no_torch: bool,
    /// Arithmetic of the matrix products (both sides).
    pub precision: kiln_train::Precision,
}

/// `6·N + 6·L·T·C` FLOPs per trained token (see the module doc).
pub fn flops_per_token(model: &Gpt) -> f64 {
    let c = &model.cfg;
    let n_pos = if model.wpe.is_some() { c.n_positions * c.n_embd } else { 0 };
    let n = (model.num_params() - n_pos) as f64;
    6.0 * n + 6.0 * (c.n_layer * c.n_positions * c.n_embd) as f64
}

/// A scratch folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir> {
        let p = std::env::temp_dir().join(format!("kiln-bench-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The preset's model (vocab from the shipped corpus's tokenizer) and loop settings.
fn setup(args: &TrainBench, dir: &Path) -> Result<(GptConfig, TrainConfig, TokenFile)> {
    let p = preset(&args.preset)?;
    let text = corpus::shipped()?;
    let tok = p.tokenizer_for(&text)?;
    let path = dir.join("tokens.bin");
    TokenFile::write(&path, &tok.encode(&text)?)?;
    let mut mcfg = p.model;
    mcfg.vocab_size = tok.vocab_size();
    let mut tcfg = p.train;
    tcfg.batch_size = args.batch.unwrap_or(tcfg.batch_size);
    tcfg.grad_accum = 1;
    tcfg.precision = args.precision;
    Ok((mcfg, tcfg, TokenFile::open(&path)?))
}

/// Median seconds per optimizer step of kiln's own training loop (`Trainer::step`: forward,
/// cross-entropy, backward, clipping, AdamW).
/// kiln's median seconds per step, the model, and the model FLOPs of one step as the engine's
/// op-level counter saw them (`kiln_core::count_flops`, one extra untimed step).
fn kiln_step_secs(
    mcfg: &GptConfig,
    tcfg: &TrainConfig,
    tokens: TokenFile,
    args: &TrainBench,
    device: &Device,
) -> Result<(f64, Gpt, u128)> {
    let mut batcher = Batcher::new(tokens, tcfg.val_fraction, tcfg.batch_size, mcfg.n_positions, tcfg.seed)?;
    let model = Gpt::new(mcfg.clone(), tcfg.seed, device)?;
    let mut trainer = Trainer::new(model, tcfg.clone())?;
    for _ in 0..args.warmup {
        trainer.step(&mut batcher, device)?;
    }
    let mut secs = Vec::with_capacity(args.steps);
    for _ in 0..args.steps {
        let t = Instant::now();
        let m = trainer.step(&mut batcher, device)?;
        secs.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(m.loss.is_finite(), "training diverged (loss {})", m.loss);
    }
    let (r, counted) = kiln_core::count_flops(|| trainer.step(&mut batcher, device));
    r?;
    Ok((median(&mut secs), trainer.model, counted))
}

/// Whether `python3 -c 'import torch'` works.
fn torch_available() -> bool {
    Command::new("python3").args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success())
}

/// PyTorch eager's median seconds per step on the same model and batch, or the reason it failed.
fn torch_step_secs(mcfg: &GptConfig, tcfg: &TrainConfig, args: &TrainBench, device: &str) -> Result<(f64, String)> {
    let dir = TempDir::new("torch")?;
    std::fs::write(dir.0.join("torch_gpt.py"), TORCH_GPT)?;
    let script = dir.0.join("bench_train_torch.py");
    std::fs::write(&script, TORCH_BENCH)?;
    let cfg = dir.0.join("config.json");
    std::fs::write(&cfg, serde_json::to_string(mcfg)?)?;
    let t = args.threads.to_string();
    let out = Command::new("python3")
        .arg(&script)
        .args(["--config", &cfg.to_string_lossy()])
        .args(["--batch", &tcfg.batch_size.to_string()])
        .args(["--device", device])
        .args([
            "--precision",
            match args.precision {
                kiln_train::Precision::F32 => "f32",
                kiln_train::Precision::Bf16 => "bf16",
                kiln_train::Precision::F16 => "f16",
            },
        ])
        .args(["--steps", &args.steps.to_string(), "--warmup", &args.warmup.to_string(), "--threads", &t])
        .args(["--lr", &tcfg.max_lr.to_string(), "--weight-decay", &tcfg.weight_decay.to_string()])
        .args(["--grad-clip", &tcfg.grad_clip.to_string()])
        .env("OMP_NUM_THREADS", &t)
        .env("MKL_NUM_THREADS", &t)
        .output()
        .context("running python3")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    match line {
        Some(v) if out.status.success() => {
            let secs = v["step_s"].as_f64().context("torch script printed no step_s")?;
            Ok((secs, v["torch"].as_str().unwrap_or("?").to_string()))
        }
        _ => anyhow::bail!("PyTorch baseline failed: {}", String::from_utf8_lossy(&out.stderr).trim()),
    }
}

/// Runs the benchmark and prints the report.
pub fn run(args: &TrainBench, device: &Device) -> Result<()> {
    let gpu = device.name() != "cpu";
    anyhow::ensure!(args.steps > 0, "--steps must be positive");
    let dir = TempDir::new("train")?;
    let (mcfg, tcfg, tokens) = setup(args, &dir.0)?;
    let tok_per_step = (tcfg.batch_size * mcfg.n_positions) as f64;
    println!(
        "kiln bench train — preset {}: {} layers, {} heads, width {}, context {}, vocab {}; batch {}; AdamW, clip {}; \
         {:?} on {} ({} CPU threads); median of {} steps after {} warm-up",
        args.preset,
        mcfg.n_layer,
        mcfg.n_head,
        mcfg.n_embd,
        mcfg.n_positions,
        mcfg.vocab_size,
        tcfg.batch_size,
        tcfg.grad_clip,
        args.precision,
        device.name(),
        args.threads,
        args.steps,
        args.warmup
    );
    let ceiling = if gpu {
        let p = crate::train::peak_gflops(device)?; // KILN_PEAK_GFLOPS, or H100 SXM dense fp32
        println!("peak: {p:.0} GFLOP/s");
        p
    } else {
        let c = gemm::ceiling_gflops(args.threads, Budget::Seconds(1.0))?;
        println!("GEMM ceiling (gemm crate, (2048×768)·(768×3072) and 2048³, measured now): {c:.0} GFLOP/s");
        c
    };
    let (kiln_secs, model, counted) = kiln_step_secs(&mcfg, &tcfg, tokens, args, device)?;
    let fpt = flops_per_token(&model);
    println!(
        "model: {:.2} M parameters; 6·N + 6·L·T·C = {:.1} MFLOP per token",
        model.num_params() as f64 / 1e6,
        fpt / 1e6
    );
    let arch = kiln_analysis::Arch::from(&mcfg);
    let (b, t) = (tcfg.batch_size as u64, mcfg.n_positions as u64);
    let formula = kiln_analysis::flops::training_flops(&arch, b, t, kiln_analysis::Recompute::None)?.model;
    println!(
        "model FLOPs per step: counted by the engine {:.4e}, kiln analyze's formula {:.4e} ({}), 6·N + 6·L·T·C {:.4e}",
        counted as f64,
        formula as f64,
        if counted == formula { "equal" } else { "DIFFERENT" },
        fpt * tok_per_step
    );
    let report = |who: &str, secs: f64| {
        let tps = tok_per_step / secs;
        let gf = tps * fpt / 1e9;
        println!(
            "{who:<14} {:>7.1} ms/step {:>9.0} tok/s {:>7.1} GFLOP/s   MFU {:>4.1}% of the ceiling above, {:>4.1}% of 475",
            1e3 * secs,
            tps,
            gf,
            100.0 * gf / ceiling,
            100.0 * gf / 475.0
        );
    };
    println!();
    report("kiln", kiln_secs);
    if args.no_torch {
        return Ok(());
    }
    if !torch_available() {
        println!("PyTorch: not importable (pip install torch to add the baseline)");
        return Ok(());
    }
    match torch_step_secs(&mcfg, &tcfg, args, if gpu { "cuda" } else { "cpu" }) {
        Ok((torch_secs, version)) => {
            report(&format!("PyTorch {version}"), torch_secs);
            println!();
            println!("kiln / PyTorch eager: {:.2}× tokens/s", torch_secs / kiln_secs);
        }
        Err(e) => println!("PyTorch: {e:#}"),
    }
    Ok(())
}
