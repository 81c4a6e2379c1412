//! Prints every report for one architecture: `cargo run --release -p kiln-analysis --example
//! analyze -- gpt2-small` (a preset, a `config.json` or an HF directory). The `kiln analyze`
//! subcommand does the same with flags.

use kiln_analysis::memory::{Precision, TrainingSetup};
use kiln_analysis::report::{self, Report};
use kiln_analysis::{Arch, Dtype, Recompute};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let spec = std::env::args().nth(1).unwrap_or_else(|| "gpt2-small".into());
    let arch = Arch::resolve(&spec)?;
    let seq = arch.max_positions.min(2048);
    println!("{}", report::params(&arch)?.text());
    println!("{}", report::flops(&arch, 1, seq, Recompute::None, None)?.text());
    println!("{}", report::memory(&arch, 1, seq, &TrainingSetup::new(Precision::Mixed), Some(80 << 30))?.text());
    if arch.family == kiln_analysis::Family::Decoder {
        println!("{}", report::kv_cache(&arch, seq, 1, Dtype::F16, Some(16), Dtype::Bf16, Some(80 << 30))?.text());
    }
    println!(
        "{}",
        report::train_time(&arch, 20.0 * kiln_analysis::num_params(&arch)? as f64, 8, 312e12, 0.4, None, Some(seq))?
            .text()
    );
    println!("{}", report::scaling(Some(&arch), None)?.text());
    Ok(())
}
