//! `kiln`: the command-line interface.

mod bench;

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Info => {
            let dev = kiln_cpu::cpu();
            println!("kiln {} — device {}, {} threads", env!("CARGO_PKG_VERSION"), dev.name(), kiln_cpu::num_threads());
        }
        Cmd::Bench { what: BenchCmd::Gemm { rows, threads, seconds, iters } } => {
            anyhow::ensure!(!rows.is_empty() && rows.iter().all(|&r| r > 0), "--rows must be positive");
            anyhow::ensure!(seconds > 0.0, "--seconds must be positive");
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
            bench::gemm::run(&rows, threads, budget)?;
        }
    }
    Ok(())
}
