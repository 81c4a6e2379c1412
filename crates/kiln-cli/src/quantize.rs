//! `kiln quantize`: a trained run's (or a Hugging Face checkpoint's) weight matrices rounded to
//! a [`WeightFormat`] — by round-to-nearest, or by GPTQ calibrated on the run's training split or
//! on a text file — and written as a run directory that `generate`, `perplexity` and `serve` load.

use crate::{generate, train};
use anyhow::Context;
use kiln_core::{Device, Tensor};
use kiln_data::Tokenizer;
use kiln_formats::quant::WeightFormat;
use std::path::{Path, PathBuf};

/// Longest calibration window taken from a text file (GPTQ's reference uses 2048 on large
/// models; a few hundred tokens already give the Hessians their shape on small ones).
const CALIB_CTX_MAX: usize = 512;

/// `seqs` windows of `ctx` tokens of `file` (tokenized with `tok`), evenly spaced over it, in
/// batches of up to 8: GPTQ's calibration inputs for a model without a training split.
fn calibration_from_text(
    tok: &Tokenizer,
    file: &Path,
    seqs: usize,
    ctx: usize,
    dev: &Device,
) -> anyhow::Result<Vec<Tensor>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let ids = tok.encode(&text)?;
    anyhow::ensure!(
        ids.len() > ctx,
        "{}: {} tokens, fewer than one calibration window of {ctx}",
        file.display(),
        ids.len()
    );
    let span = ids.len() - ctx;
    let starts: Vec<usize> = (0..seqs).map(|i| i * span / seqs.max(1)).collect();
    starts
        .chunks(8)
        .map(|batch| {
            let v: Vec<i64> = batch.iter().flat_map(|&s| ids[s..s + ctx].iter().map(|&t| t as i64)).collect();
            Ok(Tensor::from_vec(v, &[batch.len(), ctx], dev)?)
        })
        .collect()
}

/// GPTQ settings of `kiln quantize`.
pub struct Gptq {
    /// Calibration windows.
    pub seqs: usize,
    /// Relative dampening.
    pub damp: f64,
    /// A text file to calibrate on (`--model`); a run calibrates on its training split.
    pub file: Option<PathBuf>,
}

/// What `kiln quantize` reads.
#[derive(Clone, Copy)]
pub enum QuantSource<'a> {
    /// A kiln run directory.
    Run(&'a Path),
    /// A Hugging Face checkpoint directory.
    Hf(&'a Path),
}

/// `kiln quantize`: a trained run's (or a Hugging Face checkpoint's) weights quantized into a
/// new run directory.
pub fn run(source: QuantSource, ty: &str, embed_ty: &str, out: &Path, gptq: Option<Gptq>) -> anyhow::Result<()> {
    use kiln_core::Module;
    let parse = |flag: &str, name: &str| {
        WeightFormat::from_name(name)
            .with_context(|| format!("{flag} {name:?}: expected one of {}", WeightFormat::NAMES))
    };
    let (ty, embed_ty) = (parse("--type", ty)?, parse("--embed-type", embed_ty)?);
    anyhow::ensure!(!out.join("config.json").exists(), "{} already holds a model: choose another --out", out.display());
    let dev = kiln_cpu::cpu();
    let (mut model, tok) = match source {
        QuantSource::Run(run) => generate::load_run(run, &dev)?,
        QuantSource::Hf(dir) => {
            anyhow::ensure!(
                dir.is_dir() && !generate::is_run_dir(dir),
                "--model {}: expected a Hugging Face checkpoint directory (a kiln run goes in --run)",
                dir.display()
            );
            generate::load_hf(dir, &dev)?
        }
    };
    let f32_bytes: usize = model.named_parameters().iter().map(|(_, p)| p.numel() * 4).sum();
    let start = std::time::Instant::now();
    let q = match gptq {
        None => model.quantize_weights(ty, embed_ty)?,
        Some(Gptq { seqs, damp, file }) => {
            anyhow::ensure!(seqs > 0, "--calib-seqs must be positive");
            anyhow::ensure!(damp.is_finite() && damp >= 0.0, "--damp must be a non-negative number");
            let (calib, ctx) = match (source, file) {
                (QuantSource::Run(run), None) => {
                    (train::calibration_batches(run, seqs, model.cfg.n_positions, &dev)?, model.cfg.n_positions)
                }
                (_, Some(file)) => {
                    let ctx = model.cfg.n_positions.min(CALIB_CTX_MAX);
                    (calibration_from_text(&tok, &file, seqs, ctx, &dev)?, ctx)
                }
                (QuantSource::Hf(_), None) => {
                    anyhow::bail!("--gptq on a Hugging Face checkpoint needs calibration text: --calib-file")
                }
            };
            let q = model.quantize_gptq(ty, embed_ty, &calib, damp)?;
            eprintln!("GPTQ: {seqs} calibration windows of {ctx} tokens, {:.1} s", start.elapsed().as_secs_f64());
            q
        }
    };
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // a run directory: kiln's config and tokenizer (and, from a Hugging Face checkpoint, its
    // tokenizer_config.json: chat template and end-of-sequence token)
    train::write_json(&out.join("config.json"), &model.cfg)?;
    tok.save(&out.join("tokenizer.json"))?;
    if let QuantSource::Hf(dir) = source {
        let extra = dir.join(generate::TOKENIZER_CONFIG);
        if extra.is_file() {
            std::fs::copy(&extra, out.join(generate::TOKENIZER_CONFIG))
                .with_context(|| format!("copying {}", extra.display()))?;
        }
    }
    kiln_models::gpt::save_quantized(&model, &q, &out.join(generate::QUANTIZED_FILE))?;
    // weight matrices that stayed f32 (learned positions aside): rows not a whole number of groups
    let left: Vec<String> = model
        .named_parameters()
        .into_iter()
        .filter(|(n, p)| p.rank() == 2 && !n.contains("wpe"))
        .map(|(n, _)| n)
        .collect();
    if let Some(first) = left.first() {
        eprintln!(
            "warning: {} weight matrices stay f32 (rows not a multiple of {}'s {}), e.g. {first}",
            left.len(),
            ty.name(),
            ty.row_multiple()
        );
    }
    let rest: usize = model.named_parameters().iter().map(|(_, p)| p.numel() * 4).sum();
    let qbytes: usize = q.iter().map(|(_, m)| kiln_core::quant::QuantMatrix::bytes(m.as_ref())).sum();
    println!(
        "{} matrices to {} (embeddings/head {}): weights {:.2} MB → {:.2} MB ({} f32 parameters left: norms, biases, positions); wrote {}",
        q.len(),
        ty.name(),
        embed_ty.name(),
        f32_bytes as f64 / 1e6,
        (qbytes + rest) as f64 / 1e6,
        model.named_parameters().len(),
        out.join(generate::QUANTIZED_FILE).display()
    );
    Ok(())
}
