//! `kiln`: the command-line interface.

mod bench;

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
        /// Rows of the activation matrices (batch × context).
        #[arg(long, default_value_t = 2048)]
        rows: usize,
        /// Seconds of timing per shape.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Info => {
            let dev = kiln_cpu::cpu();
            println!("kiln {} — device {}, {} threads", env!("CARGO_PKG_VERSION"), dev.name(), kiln_cpu::num_threads());
        }
        Cmd::Bench { what: BenchCmd::Gemm { rows, seconds } } => {
            anyhow::ensure!(rows > 0 && seconds > 0.0, "--rows and --seconds must be positive");
            bench::gemm::run(rows, seconds)?;
        }
    }
    Ok(())
}
