//! `kiln train`: the default job — a small GPT trained on the shipped corpus, then sampled.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use kiln_core::{Device, Tensor};
use kiln_data::{corpus, Batcher, CharTokenizer, Split, TokenFile, Tokenizer};
use kiln_infer::{generate, Sampler};
use kiln_models::gpt::{Gpt, GptConfig};
use kiln_train::run::{checkpoint_dir, Compression, TrainConfig, Trainer};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Named model + loop settings.
pub struct Preset {
    /// Tokenizer kind: `"char"` or `"bpe"`.
    pub tokenizer: &'static str,
    /// BPE vocabulary size (ignored for char).
    pub bpe_vocab: usize,
    /// Model (vocab_size is set from the tokenizer).
    pub model: GptConfig,
    /// Loop.
    pub train: TrainConfig,
}

fn loop_cfg(steps: u64, batch_size: usize, max_lr: f64) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size,
        grad_accum: 1,
        max_lr,
        min_lr: max_lr / 10.0,
        warmup_steps: (steps / 20).max(1),
        weight_decay: 0.1,
        grad_clip: 1.0,
        eval_every: (steps / 5).max(1),
        eval_batches: 20,
        val_fraction: 0.05,
        seed: 1337,
        compress: Compression::default(),
        precision: kiln_train::Precision::F32,
    }
}

impl Preset {
    /// The preset's tokenizer trained on `text` (BPE on its first 2 M characters).
    pub fn tokenizer_for(&self, text: &str) -> Result<Tokenizer> {
        Ok(match self.tokenizer {
            "char" => Tokenizer::Char(CharTokenizer::train(text)),
            _ => Tokenizer::train_bpe(&text.chars().take(2_000_000).collect::<String>(), self.bpe_vocab)?,
        })
    }
}

/// The presets `--preset` accepts.
pub fn preset(name: &str) -> Result<Preset> {
    Ok(match name {
        // nanoGPT's CPU-sized char model: 4 layers, 4 heads, 128 wide, context 128.
        "char-tiny" => Preset {
            tokenizer: "char",
            bpe_vocab: 0,
            model: GptConfig::gpt2(0, 128, 128, 4, 4),
            train: loop_cfg(3000, 16, 2e-3),
        },
        // nanoGPT's Shakespeare-char shape: 6 layers, 6 heads, 384 wide, context 256 (10.8 M
        // parameters); 1000 steps of 8×256 tokens, ~25 minutes on 2 cores.
        "char-small" => Preset {
            tokenizer: "char",
            bpe_vocab: 0,
            model: GptConfig::gpt2(0, 256, 384, 6, 6),
            train: loop_cfg(1000, 8, 1e-3),
        },
        // Byte-level BPE with 4096 tokens.
        "bpe-small" => Preset {
            tokenizer: "bpe",
            bpe_vocab: 4096,
            model: GptConfig::gpt2(0, 128, 256, 4, 4),
            train: loop_cfg(1500, 16, 1e-3),
        },
        other => bail!("unknown preset {other:?} (char-tiny, char-small, bpe-small)"),
    })
}

/// Options of `kiln train`.
pub struct TrainArgs {
    /// Preset name.
    pub preset: String,
    /// Text file (UTF-8, or .gz); the shipped corpus when absent.
    pub data: Option<PathBuf>,
    /// Run directory.
    pub out: PathBuf,
    /// Override the preset's step count.
    pub steps: Option<u64>,
    /// Continue the run in `out`.
    pub resume: bool,
    /// Characters/tokens to sample at the end.
    pub sample_tokens: usize,
    /// Pruning / quantization-aware training for a new run (`None`: no such flag given).
    pub compress: Option<Compression>,
    /// Mixed precision for a new run (`None`: the preset's f32).
    pub precision: Option<kiln_train::Precision>,
}

pub(crate) fn write_json(path: &Path, v: &impl serde::Serialize) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(v)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Sets up (or reopens) the run directory; returns model config, loop config and tokenizer.
fn prepare(args: &TrainArgs) -> Result<(GptConfig, TrainConfig, Tokenizer)> {
    let out = &args.out;
    if args.resume {
        if args.compress.is_some() || args.precision.is_some() {
            bail!(
                "--prune/--qat/--precision are fixed when a run starts (they are in its train.json); --resume continues with them"
            );
        }
        let mcfg: GptConfig = read_json(&out.join("config.json"))?;
        let mut tcfg: TrainConfig = read_json(&out.join("train.json"))?;
        let tok = Tokenizer::load(&out.join("tokenizer.json"))?;
        if let Some(s) = args.steps.filter(|&s| s != tcfg.steps) {
            // A new length: the cosine now ends at `s` (later steps follow the new curve).
            eprintln!("run length changed from {} to {s} steps", tcfg.steps);
            tcfg.steps = s;
            tcfg.eval_every = tcfg.eval_every.min(s).max(1);
            write_json(&out.join("train.json"), &tcfg)?;
        }
        return Ok((mcfg, tcfg, tok));
    }
    if checkpoint_dir(out).is_some() || out.join("config.json").exists() {
        bail!("{} already holds a run: pass --resume to continue it, or choose another --out", out.display());
    }
    let p = preset(&args.preset)?;
    let (text, name) = match &args.data {
        Some(path) => (corpus::read_text(path)?, path.display().to_string()),
        None => (corpus::shipped()?, corpus::SOTU_NAME.to_string()),
    };
    eprintln!("corpus: {name}, {} characters", text.chars().count());
    let tok = p.tokenizer_for(&text)?;
    let ids = tok.encode(&text)?;
    let mut mcfg = p.model;
    mcfg.vocab_size = tok.vocab_size();
    mcfg.validate()?;
    let mut tcfg = p.train;
    if let Some(c) = &args.compress {
        c.validate()?;
        tcfg.compress = c.clone();
    }
    if let Some(p) = args.precision {
        tcfg.precision = p;
    }
    if let Some(s) = args.steps {
        tcfg.steps = s;
        tcfg.warmup_steps = (s / 20).max(1).min(tcfg.warmup_steps);
        tcfg.eval_every = (s / 5).max(1);
    }
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    TokenFile::write(&out.join("tokens.bin"), &ids)?;
    tok.save(&out.join("tokenizer.json"))?;
    write_json(&out.join("config.json"), &mcfg)?;
    write_json(&out.join("train.json"), &tcfg)?;
    eprintln!("tokenizer: {} ({} tokens), {} tokens of data", tok.kind(), tok.vocab_size(), ids.len());
    Ok((mcfg, tcfg, tok))
}

/// The FLOP/s that MFU is measured against: `KILN_PEAK_GFLOPS` when set, else this machine's
/// fp32 GEMM ceiling measured now (the `gemm` crate on a large MLP shape, ~1 s; see
/// `kiln bench gemm`).
/// On a GPU there is nothing to measure it with here: the dense fp32 peak of the H100 SXM
/// (67 TFLOP/s; set `KILN_PEAK_GFLOPS` for another card or for TF32/bf16 tensor-core peaks).
pub(crate) fn peak_gflops(device: &Device) -> Result<f64> {
    if let Ok(v) = std::env::var("KILN_PEAK_GFLOPS") {
        let p = v.trim().parse::<f64>().ok().filter(|p| *p > 0.0);
        return p.with_context(|| format!("KILN_PEAK_GFLOPS={v:?} is not a positive number of GFLOP/s"));
    }
    if device.name() != "cpu" {
        eprintln!(
            "MFU on {} is measured against 67,000 GFLOP/s (H100 SXM fp32); set KILN_PEAK_GFLOPS to change it",
            device.name()
        );
        return Ok(67_000.0);
    }
    let p = crate::bench::gemm::ceiling_gflops(kiln_cpu::num_threads(), crate::bench::Budget::Seconds(0.25))?;
    eprintln!(
        "GEMM ceiling of this machine (fp32, {} threads): {p:.0} GFLOP/s — MFU is measured against it",
        kiln_cpu::num_threads()
    );
    Ok(p)
}

/// A progress bar on stderr (hidden when stderr is not a terminal; the loop then logs lines).
fn progress_bar(steps: u64, done: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{bar:30.cyan/blue} step {pos}/{len} | {msg} | {elapsed_precise} eta {eta}")
    {
        bar.set_style(style.progress_chars("█▉▊▋▌▍▎▏ "));
    }
    bar.set_position(done);
    bar.reset_eta();
    bar
}

/// Ctrl-C: the first press asks the loop to save a checkpoint and stop after the current step;
/// a second press exits at once (the last complete checkpoint stays intact: saves are atomic).
mod interrupt {
    use std::sync::atomic::{AtomicBool, Ordering};

    static STOP: AtomicBool = AtomicBool::new(false);

    pub fn install() {
        let installed = ctrlc::set_handler(|| {
            if STOP.swap(true, Ordering::SeqCst) {
                eprintln!("\ninterrupted again: exiting without saving");
                std::process::exit(130);
            }
            eprintln!("\ninterrupt: saving a checkpoint after this step (Ctrl-C again to quit now)");
        });
        if let Err(e) = installed {
            eprintln!("warning: Ctrl-C will not save a checkpoint ({e})");
        }
    }

    pub fn requested() -> bool {
        STOP.load(Ordering::SeqCst)
    }
}

/// Joins a data-parallel run when `KILN_WORLD_SIZE` > 1 (CUDA devices, NCCL; see
/// `kiln_cuda::nccl` for the launch): returns this process's rank (0 when alone).
#[cfg(feature = "cuda")]
fn data_parallel(trainer: &mut Trainer, device: &Device) -> Result<usize> {
    struct Nccl(kiln_cuda::NcclComm);
    impl kiln_train::GradSync for Nccl {
        fn rank(&self) -> usize {
            self.0.rank()
        }
        fn world_size(&self) -> usize {
            self.0.world_size()
        }
        fn all_reduce_mean(&self, grads: &[kiln_core::Tensor]) -> kiln_core::Result<()> {
            self.0.all_reduce_mean_(grads)
        }
    }
    if device.name() == "cpu" {
        anyhow::ensure!(
            std::env::var("KILN_WORLD_SIZE").map_or(true, |w| w.trim() == "1"),
            "KILN_WORLD_SIZE > 1 needs --device cuda (data parallelism runs over NCCL)"
        );
        return Ok(0);
    }
    let Some(comm) = kiln_cuda::NcclComm::from_env(device)? else { return Ok(0) };
    let rank = comm.rank();
    eprintln!("data parallel: rank {rank} of {} (NCCL)", comm.world_size());
    trainer.set_grad_sync(Box::new(Nccl(comm)));
    Ok(rank)
}

#[cfg(not(feature = "cuda"))]
fn data_parallel(_trainer: &mut Trainer, _device: &Device) -> Result<usize> {
    anyhow::ensure!(
        std::env::var("KILN_WORLD_SIZE").map_or(true, |w| w.trim() == "1"),
        "KILN_WORLD_SIZE > 1 needs a kiln built with --features cuda (data parallelism runs over NCCL)"
    );
    Ok(0)
}

/// Runs `kiln train`.
pub fn run(args: TrainArgs, device: &Device) -> Result<()> {
    let peak = peak_gflops(device)?; // first: a bad KILN_PEAK_GFLOPS must not leave a half-made run
    let (mcfg, tcfg, tok) = prepare(&args)?;
    let out = &args.out;
    let tokens = TokenFile::open(&out.join("tokens.bin"))?;
    let mut batcher = Batcher::new(tokens, tcfg.val_fraction, tcfg.batch_size, mcfg.n_positions, tcfg.seed)?;
    let model = Gpt::new(mcfg.clone(), tcfg.seed, device)?;
    let n_params = kiln_core::Module::num_params(&model);
    let mut trainer = Trainer::new(model, tcfg.clone())?;
    if args.resume {
        trainer.load(out, device)?;
        eprintln!("resumed at step {}", trainer.state.step);
    }
    let rank = data_parallel(&mut trainer, device)?;
    eprintln!(
        "model: {} layers, {} heads, width {}, context {}, {:.2} M parameters; {} steps of {}×{} tokens",
        mcfg.n_layer,
        mcfg.n_head,
        mcfg.n_embd,
        mcfg.n_positions,
        n_params as f64 / 1e6,
        tcfg.steps,
        tcfg.batch_size,
        mcfg.n_positions
    );
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .with_context(|| format!("opening {}", metrics_path.display()))?;
    let fpt = crate::bench::train::flops_per_token(&trainer.model);
    interrupt::install();
    let bar = progress_bar(tcfg.steps, trainer.state.step);
    let say = |line: String| if bar.is_hidden() { eprintln!("{line}") } else { bar.println(line) };
    let start = std::time::Instant::now();
    let first_step = trainer.state.step;
    let mut tps_avg = 0.0;
    while trainer.state.step < tcfg.steps {
        let mut m = trainer.step(&mut batcher, device)?;
        let step = m.step;
        tps_avg = if step == first_step + 1 { m.tok_per_s } else { 0.9 * tps_avg + 0.1 * m.tok_per_s };
        let mfu = 100.0 * tps_avg * fpt / 1e9 / peak;
        let stopping = interrupt::requested();
        if step % tcfg.eval_every == 0 || step == tcfg.steps || stopping {
            let v = trainer.evaluate(&mut batcher, device)?;
            m.val_loss = Some(v);
            trainer.state.val_loss = Some(v);
            trainer.save(out)?;
        }
        writeln!(metrics, "{}", serde_json::to_string(&m)?)?;
        bar.set_position(step);
        bar.set_message(format!("loss {:.4} | {:.0} tok/s | MFU {mfu:.0}%", m.loss, tps_avg));
        if let Some(v) = m.val_loss {
            let sparsity = m.sparsity.map(|s| format!("  sparsity {:.1}%", 100.0 * s)).unwrap_or_default();
            say(format!(
                "step {step:>5}/{}  loss {:.4}  val {v:.4}  {:.0} tok/s  MFU {mfu:.0}%{sparsity}",
                tcfg.steps, m.loss, tps_avg
            ));
            crate::plot::loss_png(&metrics_path, &out.join("loss.png"))?;
        } else if bar.is_hidden() && (step % 25 == 0 || step == first_step + 1) {
            let done = (step - first_step) as f64;
            let eta = start.elapsed().as_secs_f64() / done * (tcfg.steps - step) as f64;
            eprintln!(
                "step {step:>5}/{}  loss {:.4}  lr {:.2e}  {:.0} tok/s  MFU {mfu:.0}%  eta {eta:.0}s",
                tcfg.steps, m.loss, m.lr, tps_avg
            );
        }
        if stopping {
            bar.abandon();
            eprintln!(
                "interrupted: checkpoint of step {step} saved in {}; continue with `kiln train --resume --out {}`",
                out.join("checkpoint").display(),
                out.display()
            );
            std::process::exit(130);
        }
    }
    bar.finish_and_clear();
    eprintln!(
        "trained in {:.1}s; checkpoint in {}; loss curves in {}",
        start.elapsed().as_secs_f64(),
        out.join("checkpoint").display(),
        out.join("loss.png").display()
    );
    if args.sample_tokens > 0 && rank == 0 {
        let prompt = tok.encode("\n").or_else(|_| tok.encode(" "))?;
        let sampler = Sampler { temperature: 0.8, top_p: 0.95, seed: 1, ..Default::default() };
        eprintln!("--- sample ---");
        let mut stdout = std::io::stdout();
        generate(&trainer.model, &prompt, args.sample_tokens, &sampler, device, |t| {
            let s = tok.decode(&[t]).map_err(|e| kiln_core::Error::Invalid { op: "decode", msg: e.to_string() })?;
            let _ = write!(stdout, "{s}");
            let _ = stdout.flush();
            Ok(())
        })?;
        println!();
    }
    Ok(())
}

/// The validation split of a run's token file: the last `val_fraction` of `tokens.bin` (the
/// split `kiln train` evaluates on, as `kiln_data::Batcher` cuts it).
pub fn validation_tokens(run: &Path) -> Result<Vec<u32>> {
    let tcfg: TrainConfig = read_json(&run.join("train.json"))?;
    let tokens = TokenFile::open(&run.join("tokens.bin"))?;
    let n = tokens.len();
    let split_at = ((n as f64) * (1.0 - tcfg.val_fraction)).round() as usize;
    Ok((split_at.min(n)..n).map(|i| tokens.get(i)).collect())
}

/// `seqs` calibration windows of `context` tokens from a run's training split (seeded random
/// windows, 8 per batch): what `kiln quantize --gptq` feeds the model.
pub fn calibration_batches(run: &Path, seqs: usize, context: usize, device: &Device) -> Result<Vec<Tensor>> {
    let tcfg: TrainConfig = read_json(&run.join("train.json"))?;
    let tokens = TokenFile::open(&run.join("tokens.bin"))?;
    let per = 8.min(seqs.max(1));
    let mut batcher = Batcher::new(tokens, tcfg.val_fraction, per, context, tcfg.seed ^ 0x6770_7471)?;
    (0..seqs.div_ceil(per) as u64).map(|i| Ok(batcher.batch(Split::Train, i, device)?.0)).collect()
}
