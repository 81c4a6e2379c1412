//! `kiln analyze`: the accounting formulas of `kiln-analysis` (parameters, FLOPs, memory, KV
//! cache, training time, scaling laws, roofline) for a preset, a `config.json`, an HF directory, a kiln run
//! or a GGUF file, as a table or `--json`.

use anyhow::{Context, Result};
use kiln_analysis::memory::TrainingSetup;
use kiln_analysis::report::{self, Report};
use kiln_analysis::{Arch, Dtype, Optimizer, Phase, Precision, Recompute, ZeroStage};
use std::path::Path;

/// What to compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    /// Parameters per component and per layer.
    Params,
    /// Forward/backward FLOPs per layer and per token, closed forms, MFU from a throughput.
    Flops,
    /// Weights, gradients, optimizer state, activations, ZeRO; what fits a budget.
    Memory,
    /// KV-cache bytes (MHA/MQA/GQA, paged), largest decode batch for a budget.
    KvCache,
    /// Training time from tokens, devices, peak FLOP/s and MFU.
    TrainTime,
    /// Chinchilla/Kaplan compute-optimal sizes and predicted loss.
    Scaling,
    /// Arithmetic intensity of each op of a prefill or decode step against a machine balance.
    Roofline,
}

/// Options of `kiln analyze` (each analysis reads the ones it needs).
#[derive(Clone, Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// The analysis.
    #[arg(value_enum)]
    pub what: What,
    /// A preset (gpt2-small, llama-7b, bert-base, smollm2-135m, …), a config.json, an HF or kiln
    /// run directory, or a .gguf file.
    #[arg(long, default_value = "gpt2-small")]
    pub config: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Batch size.
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    /// Sequence length (default: the model's context, at most 2048).
    #[arg(long)]
    pub seq: Option<u64>,
    /// Activation recomputation: none, selective or full.
    #[arg(long, default_value = "none")]
    pub recompute: String,
    /// Measured training throughput (tokens/s) for MFU/HFU.
    #[arg(long)]
    pub tokens_per_s: Option<f64>,
    /// Peak FLOP/s per device: a number or a name (a100-bf16, h100-bf16, …).
    #[arg(long, default_value = "a100-bf16")]
    pub peak: String,
    /// Devices.
    #[arg(long, default_value_t = 1)]
    pub devices: u64,
    /// Weight precision for training memory: mixed or fp32.
    #[arg(long, default_value = "mixed")]
    pub precision: String,
    /// Optimizer: adam, sgd-momentum or sgd.
    #[arg(long, default_value = "adam")]
    pub optimizer: String,
    /// ZeRO stage 0–3 over --devices.
    #[arg(long, default_value_t = 0)]
    pub zero: u8,
    /// Memory budget in bytes (suffixes K/M/G/GiB accepted) for "what fits".
    #[arg(long)]
    pub budget: Option<String>,
    /// KV-cache element type (f32, f16, bf16, int8, …) and tokens cached.
    #[arg(long, default_value = "f16")]
    pub dtype: String,
    /// Tokens in the KV cache (default: --seq).
    #[arg(long)]
    pub tokens: Option<f64>,
    /// Paged KV-cache block size in tokens.
    #[arg(long)]
    pub block: Option<u64>,
    /// Model FLOP utilisation for training time.
    #[arg(long, default_value_t = 0.4)]
    pub mfu: f64,
    /// Compute budget in FLOPs for scaling laws.
    #[arg(long)]
    pub compute: Option<f64>,
    /// Memory bandwidth for the roofline: bytes/s or a name (a100, h100-sxm, h200, …).
    #[arg(long, default_value = "a100")]
    pub bandwidth: String,
    /// Roofline phase: prefill (B×S tokens at once) or decode (one token per sequence over S).
    #[arg(long, default_value = "decode")]
    pub phase: String,
}

/// Bytes from "80GiB", "512M", "1e9".
fn bytes(s: &str) -> Result<u64> {
    let t = s.trim();
    let (num, mul) =
        [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("G", 1_000_000_000), ("M", 1_000_000), ("K", 1000)]
            .iter()
            .find_map(|(suf, m)| t.strip_suffix(suf).map(|n| (n, *m)))
            .unwrap_or((t, 1));
    let v: f64 = num.trim().parse().with_context(|| format!("--budget {s:?} is not a size"))?;
    anyhow::ensure!(v >= 0.0 && v.is_finite(), "--budget {s:?} must be a non-negative size");
    Ok((v * mul as f64) as u64)
}

/// The architecture named by `--config`.
fn arch_of(spec: &str) -> Result<Arch> {
    let p = Path::new(spec);
    if p.is_file() && p.extension().is_some_and(|e| e == "gguf") {
        let g = kiln_formats::GgufFile::open(p).with_context(|| format!("opening {spec}"))?;
        return Ok(Arch::from(&kiln_models::gpt::config_from_gguf(&g)?));
    }
    Ok(Arch::resolve(spec)?)
}

/// Runs the analysis and prints it.
pub fn run(a: &AnalyzeArgs) -> Result<()> {
    let arch = arch_of(&a.config)?;
    let seq = a.seq.unwrap_or(arch.max_positions.min(2048) as u64);
    anyhow::ensure!(a.batch > 0 && seq > 0 && a.devices > 0, "--batch, --seq and --devices must be positive");
    let recompute = match a.recompute.as_str() {
        "none" => Recompute::None,
        "selective" => Recompute::Selective,
        "full" => Recompute::Full,
        o => anyhow::bail!("--recompute {o:?}: expected none, selective or full"),
    };
    let peak = kiln_analysis::train_time::peak_flops(&a.peak)?;
    let budget = a.budget.as_deref().map(bytes).transpose()?;
    let out = match a.what {
        What::Params => render(report::params(&arch)?, a.json)?,
        What::Flops => {
            let measured = a.tokens_per_s.map(|t| (t, peak * a.devices as f64));
            render(report::flops(&arch, a.batch, seq, recompute, measured)?, a.json)?
        }
        What::Memory => {
            let precision = match a.precision.as_str() {
                "mixed" => Precision::Mixed,
                "fp32" => Precision::Fp32,
                o => anyhow::bail!("--precision {o:?}: expected mixed or fp32"),
            };
            let mut setup = TrainingSetup::new(precision);
            setup.optimizer = match a.optimizer.as_str() {
                "adam" => Optimizer::Adam,
                "sgd-momentum" => Optimizer::SgdMomentum,
                "sgd" => Optimizer::Sgd,
                o => anyhow::bail!("--optimizer {o:?}: expected adam, sgd-momentum or sgd"),
            };
            setup.zero = ZeroStage::from_number(a.zero)?;
            setup.data_parallel = a.devices;
            setup.activations.recompute = recompute;
            render(report::memory(&arch, a.batch, seq, &setup, budget)?, a.json)?
        }
        What::KvCache => {
            let dtype: Dtype = a.dtype.parse()?;
            let tokens = a.tokens.unwrap_or(seq as f64) as u64;
            render(report::kv_cache(&arch, tokens, a.batch, dtype, a.block, Dtype::Bf16, budget)?, a.json)?
        }
        What::TrainTime => {
            let tokens = a.tokens.context("train-time needs --tokens (training tokens, e.g. 1.4e12)")?;
            render(report::train_time(&arch, tokens, a.devices, peak, a.mfu, None, Some(seq))?, a.json)?
        }
        What::Scaling => render(report::scaling(Some(&arch), a.compute)?, a.json)?,
        What::Roofline => {
            let phase = match a.phase.as_str() {
                "prefill" => Phase::Prefill,
                "decode" => Phase::Decode,
                o => anyhow::bail!("--phase {o:?}: expected prefill or decode"),
            };
            let dtype: Dtype = a.dtype.parse()?;
            let bw = kiln_analysis::roofline::bandwidth(&a.bandwidth)?;
            render(kiln_analysis::roofline(&arch, phase, a.batch, seq, dtype.bits() / 8.0, peak, bw)?, a.json)?
        }
    };
    println!("{out}");
    Ok(())
}

/// A report as text or JSON.
fn render(r: impl Report, json: bool) -> Result<String> {
    Ok(if json { r.json()? } else { r.text() })
}
