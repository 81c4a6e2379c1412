//! `kiln`: the command-line interface.

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
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Info => {
            let dev = kiln_cpu::cpu();
            println!("kiln {} — device {}, {} threads", env!("CARGO_PKG_VERSION"), dev.name(), kiln_cpu::num_threads());
        }
    }
    Ok(())
}
