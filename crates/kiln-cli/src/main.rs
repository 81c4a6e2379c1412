//! `kiln`: the command-line interface.

mod bench;
mod generate;
mod plot;
mod train;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "kiln", version, about = "kiln: a transformer framework in Rust")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Train a GPT (default: a small char-level model on the shipped corpus), then sample from it.
    Train {
        /// char-tiny (default, ~minutes on 2 cores), char-small (6×384, context 256), bpe-small.
        #[arg(long, default_value = "char-tiny")]
        preset: String,
        /// Training text (UTF-8 or .gz); default: the shipped State of the Union corpus.
        #[arg(long)]
        data: Option<std::path::PathBuf>,
        /// Run directory (config, tokenizer, tokens, checkpoint, metrics).
        #[arg(long, default_value = "runs/default")]
        out: std::path::PathBuf,
        /// Override the preset's number of optimizer steps (with --resume: the new run length).
        #[arg(long)]
        steps: Option<u64>,
        /// Continue the run in --out from its checkpoint.
        #[arg(long)]
        resume: bool,
        /// Tokens to sample after training (0 to skip).
        #[arg(long, default_value_t = 400)]
        sample_tokens: usize,
    },
    /// Stream a continuation of a prompt from a trained run.
    Generate {
        /// Run directory written by `kiln train`.
        #[arg(long, default_value = "runs/default")]
        run: std::path::PathBuf,
        /// Prompt text.
        #[arg(long, default_value = "The")]
        prompt: String,
        /// Tokens to generate.
        #[arg(long, default_value_t = 300)]
        max_new_tokens: usize,
        /// Sampling temperature (0 = greedy).
        #[arg(long, default_value_t = 0.8)]
        temperature: f64,
        /// Keep only the k most likely tokens (0 = all).
        #[arg(long, default_value_t = 0)]
        top_k: usize,
        /// Nucleus sampling mass (1 = off).
        #[arg(long, default_value_t = 1.0)]
        top_p: f64,
        /// Sampling seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Print build and device information.
    Info,
    /// Benchmarks that print a baseline measured in the same run, and the ratio.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Matmul GFLOP/s on transformer shapes vs numpy/OpenBLAS and the FMA peak.
    Gemm {
        /// Rows of the activation matrices (batch × context), comma-separated.
        #[arg(long, value_delimiter = ',', default_values_t = [2048, 4096])]
        rows: Vec<usize>,
        /// Model width C of the shapes (the MLP is 4C wide).
        #[arg(long, default_value_t = 768)]
        width: usize,
        /// Worker threads (kiln's rayon pool, numpy's OpenBLAS, the FMA peak). Default: kiln's
        /// thread count (`KILN_NUM_THREADS`, else physical cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Seconds of timing per shape (ignored with --iters).
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Exact number of timed calls per shape (instead of --seconds).
        #[arg(long)]
        iters: Option<usize>,
    },
    /// Training tokens/s, GFLOP/s and MFU of a preset vs PyTorch eager on the same model.
    Train {
        /// Preset (see `kiln train --preset`).
        #[arg(long, default_value = "char-small")]
        preset: String,
        /// Sequences per step (default: the preset's).
        #[arg(long)]
        batch: Option<usize>,
        /// Timed steps (the median is reported).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// Untimed warm-up steps.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Threads for kiln and PyTorch (default: kiln's thread count).
        #[arg(long)]
        threads: Option<usize>,
        /// Skip the PyTorch baseline.
        #[arg(long)]
        no_torch: bool,
    },
}

/// Runs the command; a failure prints one line, `error: <what went wrong>: <cause>…` (no
/// backtrace, even with `RUST_BACKTRACE` set), and exits with status 1.
fn main() {
    if let Err(e) = run(Cli::parse()) {
        // The cause chain, skipping causes a message already quotes (library errors often
        // include their source's text).
        let mut line = String::new();
        for cause in e.chain().map(|c| c.to_string()) {
            if !line.contains(&cause) {
                line = if line.is_empty() { cause } else { format!("{line}: {cause}") };
            }
        }
        eprintln!("error: {line}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Train { preset, data, out, steps, resume, sample_tokens } => {
            train::run(train::TrainArgs { preset, data, out, steps, resume, sample_tokens }, &kiln_cpu::cpu())?;
        }
        Cmd::Generate { run, prompt, max_new_tokens, temperature, top_k, top_p, seed } => {
            let sampler = kiln_infer::Sampler { temperature, top_k, top_p, seed };
            generate::run(&run, &prompt, max_new_tokens, sampler, &kiln_cpu::cpu())?;
        }
        Cmd::Info => {
            let dev = kiln_cpu::cpu();
            println!("kiln {} — device {}, {} threads", env!("CARGO_PKG_VERSION"), dev.name(), kiln_cpu::num_threads());
        }
        Cmd::Bench { what: BenchCmd::Gemm { rows, width, threads, seconds, iters } } => {
            anyhow::ensure!(!rows.is_empty() && rows.iter().all(|&r| r > 0), "--rows must be positive");
            anyhow::ensure!(seconds > 0.0, "--seconds must be positive");
            anyhow::ensure!(width > 0, "--width must be positive");
            let threads = threads.unwrap_or_else(kiln_cpu::num_threads);
            anyhow::ensure!(threads > 0, "--threads must be positive");
            // Size rayon's global pool before kiln_cpu::cpu() would size it from KILN_NUM_THREADS.
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build_global()
                .context("building rayon's global thread pool")?;
            let budget = match iters {
                Some(n) if n > 0 => bench::Budget::Iters(n),
                Some(_) => anyhow::bail!("--iters must be positive"),
                None => bench::Budget::Seconds(seconds),
            };
            bench::gemm::run(&rows, width, threads, budget)?;
        }
        Cmd::Bench { what: BenchCmd::Train { preset, batch, steps, warmup, threads, no_torch } } => {
            let threads = threads.unwrap_or_else(kiln_cpu::num_threads);
            anyhow::ensure!(threads > 0, "--threads must be positive");
            anyhow::ensure!(batch != Some(0), "--batch must be positive");
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build_global()
                .context("building rayon's global thread pool")?;
            bench::train::run(&bench::train::TrainBench { preset, batch, steps, warmup, threads, no_torch })?;
        }
    }
    Ok(())
}
